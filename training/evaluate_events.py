"""Model quality on any event log: a time split (and rolling-origin folds) of a contract log,
and the simulator's log with its churn truth. The same metrics as the CDNOW protocol
(``training.evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from decay.features import HOUR_MS, FeatureSpec
from training.baselines import Prediction
from training.data import collapse_same_day
from training.evaluate import LAPSE_SEEDS, alert_tables, run_models
from training.lapse import LapseConfig
from training.metrics import alert_metrics, metrics
from training.reports import iso_time, verdict
from training.splits import Split, fold_cuts, holdout_cut, make_split
from training.train import TrainConfig

SMALL_LSTM = TrainConfig(
    cut_every_h=24.0, refit=False, verbose=0, epochs=3, units=16, max_examples=5000
)


# on a generic log: days as the time unit, a landmark every day
EVENTS_LAPSE = LapseConfig(unit_h=24.0, landmark_every_h=24.0, min_window_h=24.0)


def _predict(
    split: Split,
    models: Sequence[str],
    config: TrainConfig | None,
    lapse_config: LapseConfig = EVENTS_LAPSE,
    lapse_seeds: Sequence[int] = LAPSE_SEEDS,
) -> list[Prediction]:
    spec = FeatureSpec(horizon_h=(split.end_ms - split.cut_ms) / HOUR_MS)
    cfg = config or TrainConfig(cut_every_h=24.0, refit=True, verbose=0, epochs=20)
    return run_models(split, models, spec, cfg, lapse_config, lapse_seeds)[0]


def rolling_origin(
    events: pd.DataFrame,
    folds: int = 3,
    holdout_fraction: float = 0.3,
    models: Sequence[str] = ("exp-decay", "bgnbd"),
    config: TrainConfig | None = SMALL_LSTM,
) -> dict[str, Any]:
    """The metrics and alert table on each rolling-origin fold, and their means."""
    ts = events["ts"].to_numpy()
    start, end = int(ts.min()), int(ts.max()) + 1
    out: list[dict[str, Any]] = []
    for cut, stop in fold_cuts(start, end, folds, holdout_fraction):
        split = make_split(events[events["ts"] < stop], cut, stop)
        preds = _predict(split, models, config, lapse_seeds=(0,))
        out.append(
            {
                "cut": iso_time(cut),
                "end": iso_time(stop),
                "customers": len(split.users),
                "actual_holdout_total": float(split.actual.sum()),
                "models": {p.name: metrics(p, split) for p in preds},
                "alerts": alert_tables(preds, split),
            }
        )
    mean: dict[str, dict[str, float]] = {}
    if out:
        for name, m in out[0]["models"].items():
            mean[name] = {k: float(np.nanmean([f["models"][name][k] for f in out])) for k in m}
    alert_mean: dict[str, dict[str, dict[str, float]]] = {}
    if out:
        for name, per in out[0]["alerts"].items():
            alert_mean[name] = {
                th: {k: float(np.nanmean([f["alerts"][name][th][k] for f in out])) for k in m}
                for th, m in per.items()
            }
    return {"folds": out, "mean": mean, "alerts_mean": alert_mean}


def run_events(
    events: pd.DataFrame,
    holdout_fraction: float = 0.3,
    models: Sequence[str] = ("exp-decay", "bgnbd", "lstm"),
    config: TrainConfig | None = None,
    folds: int = 0,
    fold_config: TrainConfig | None = SMALL_LSTM,
    per_day: bool = False,
    lapse_seeds: Sequence[int] = LAPSE_SEEDS,
    lapse_config: LapseConfig = EVENTS_LAPSE,
) -> dict[str, Any]:
    """The same metrics on a contract log: the last ``holdout_fraction`` of its time span is
    the holdout; calendar cuts every day for the neural models. With ``folds`` > 0, also a
    rolling-origin cross-validation (see :func:`fold_cuts`) in ``report["cv"]``.
    ``per_day``: one event per user and day first (active days; BG/NBD needs it on
    clickstreams)."""
    if per_day:
        events = collapse_same_day(events)
    ts = events["ts"].to_numpy()
    start, end = int(ts.min()), int(ts.max()) + 1
    cut = holdout_cut(start, end, holdout_fraction)
    split = make_split(events, cut, end)
    preds = _predict(split, models, config, lapse_config, lapse_seeds)
    rows = {p.name: metrics(p, split) for p in preds}
    report: dict[str, Any] = {
        "protocol": f"time split at {iso_time(cut)}",
        "customers": len(split.users),
        "actual_holdout_total": float(split.actual.sum()),
        "models": rows,
        "alerts": alert_tables(preds, split),
        "info": {p.name: p.info for p in preds},
        "verdict": verdict(rows),
    }
    if folds > 0:
        report["cv"] = rolling_origin(events, folds, holdout_fraction, models, fold_config)
    return report


def run_sim(
    n_users: int = 2000,
    days: float = 30.0,
    seed: int = 0,
    holdout_fraction: float = 0.3,
    models: Sequence[str] = ("exp-decay", "bgnbd"),
    config: TrainConfig | None = SMALL_LSTM,
) -> dict[str, Any]:
    """Simulate, split in time, score as :func:`run_events`; and compare each model's
    "dormant at the cut" alerts with the truth: the user churned for good (their final
    session, ``churn_ts``) before the end of the holdout."""
    from training.simulate import simulate

    log_ = simulate(n_users, days=days, seed=seed)
    # active days, as for CDNOW: the RFM summary is day-granular anyway, and BG/NBD does not
    # converge on raw clickstream counts (dozens of events with recency 0)
    events = collapse_same_day(log_.events)
    start, end = int(events["ts"].min()), log_.end_ms
    cut = holdout_cut(start, end, holdout_fraction)
    split = make_split(events, cut, end)
    preds = _predict(split, models, config)
    truth = log_.truth.set_index(log_.truth["user_id"].astype(str))
    t = truth.reindex([str(u) for u in split.users])
    gone = (t["churned"].to_numpy(dtype=bool)) & (
        t["churn_ts"].to_numpy(dtype=np.float64, na_value=np.inf) < end
    )
    gone_by_cut = gone & (t["churn_ts"].to_numpy(dtype=np.float64, na_value=np.inf) < cut)
    rows = {p.name: metrics(p, split) for p in preds}
    return {
        "protocol": f"simulate(n_users={n_users}, days={days}, seed={seed}); "
        f"time split at {iso_time(cut)}",
        "customers": len(split.users),
        "actual_holdout_total": float(split.actual.sum()),
        "churned_share": float(gone.mean()),
        "churned_before_cut_share": float(gone_by_cut.mean()),
        "silent_in_holdout_share": float((~split.bought).mean()),
        "models": rows,
        "alerts": alert_tables(preds, split),
        "alerts_vs_truth": {p.name: alert_metrics(p.p_any, gone) for p in preds},
        "info": {p.name: p.info for p in preds},
        "verdict": verdict(rows),
    }
