"""Model quality: the CDNOW protocol (docs/design.md); any event log: `training.evaluate_events`.

CDNOW (Fader, Hardie and Lee 2005): the 2,357-customer sample; weeks 1-39 (1997-01-01 to
1997-09-30) calibrate, weeks 40-78 (1997-10-01 to 1998-06-30) are the holdout; purchases on
the same day count once; T is in weeks from the first purchase to the end of week 39. Every
model sees the calibration data only, and predicts per customer the number of purchases in
the holdout and P(at least one). Metrics, per model:

- ``corr``: Pearson correlation of predicted and actual holdout purchases per customer
- ``total`` / ``bias_pct``: predicted holdout total vs the actual total
- ``auc`` / ``brier`` / ``ece``: of P(buys again in the holdout) (ECE: 10 equal-width bins)
- ``c_index``: Harrell's concordance of P(any) with the time to the first holdout purchase
  (censored at the end of the holdout)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decay.features import HOUR_MS, FeatureSpec
from training.baselines import (
    Prediction,
    arima_daily,
    bg_nbd,
    exponential_decay,
    pareto_nbd,
)
from training.data import DAY_MS
from training.ensemble import blend
from training.lapse import LapseConfig
from training.metrics import alert_metrics, metrics
from training.reports import verdict
from training.splits import (
    F64,
    HOLDOUT_WEEKS,
    VALIDATION_CUTS,
    WEEK_H,
    CdnowCut,
    Split,
    cdnow_split,
    extend_window,
    user_windows,
)
from training.train import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)


FHL_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


# hazard bins for purchase data (weeks); the last, open bin starts inside the 39 calibration
# weeks so that it is learned from data, not extrapolated from initial weights
CDNOW_SPEC = FeatureSpec(
    bin_edges_h=tuple(w * WEEK_H for w in (0, 1, 2, 4, 8, 12, 16, 20, 26, 32)),
    horizon_h=HOLDOUT_WEEKS * WEEK_H,
)


# weekly cuts like the question asked at week 39; bins at quantiles of the observed gaps
# (chosen on the validation split inside the calibration weeks, never on the holdout)
CDNOW_TRAIN = TrainConfig(
    epochs=40,
    batch_size=256,
    patience=4,
    cut_every_h=WEEK_H,
    refit=True,
    quantile_bins=10,
    verbose=0,
)


def lstm_prediction(
    split: Split,
    arch: str = "lstm",
    spec: FeatureSpec = CDNOW_SPEC,
    config: TrainConfig = CDNOW_TRAIN,
    out_dir: str | Path | None = None,
    n_samples: int = 20,
) -> tuple[Prediction, TrainResult]:
    """Train on the calibration events only (labels censored at the cut); predict at the cut."""
    from dataclasses import replace

    cfg = replace(config, arch=arch)
    result = train(split.calibration, out_dir, spec=spec, config=cfg, end_ms=split.cut_ms)
    heads = predict_at(result, split.calibration, list(split.users), split.cut_ms)
    t0 = time.perf_counter()
    sampled = sample_counts(
        result, split.calibration, list(split.users), split.cut_ms, n_samples=n_samples
    )
    info = {
        "train_seconds": result.summary["train_seconds"],
        "sampling_seconds": round(time.perf_counter() - t0, 1),
        "count_head_total": round(float(heads["expected"].sum()), 1),
    }
    # P(any) from the hazard at the customer's silence; counts by sampling from the model
    return Prediction(arch.upper(), sampled, heads["p_any"], info), result


def predict_at(
    result: TrainResult, events: pd.DataFrame, users: Sequence[Any], cut_ms: int
) -> dict[str, F64]:
    """The model's heads for ``users`` as of ``cut_ms`` (their windows of events <= cut)."""
    from decay import survival
    from decay.features import encode_log

    spec = result.spec
    user_ids = [str(u) for u in users]
    x, lengths = encode_log(
        events[events["ts"] <= cut_ms], user_ids, np.full(len(users), cut_ms), spec
    )
    last_ts = events.groupby("user_id")["ts"].max().reindex(user_ids).to_numpy(dtype=np.float64)
    elapsed_h = np.where(np.isnan(last_ts), 0.0, (cut_ms - last_ts) / HOUR_MS)
    out = result.model.predict(
        {"x": x, "lengths": lengths, "elapsed_h": elapsed_h.astype(np.float32)[:, None]},
        batch_size=1024,
        verbose=0,
    )
    rate = np.exp(np.asarray(out["log_hazard"], dtype=np.float64))
    p_any = survival.interest(rate, spec.bin_edges_h, spec.horizon_h, elapsed_h)
    expected = np.exp(np.asarray(out["log_count"], dtype=np.float64)[:, 0])
    return {"p_any": p_any, "expected": expected, "rate": rate, "elapsed_h": elapsed_h}


def sample_counts(
    result: TrainResult,
    events: pd.DataFrame,
    users: Sequence[Any],
    cut_ms: int,
    n_samples: int = 20,
    seed: int = 0,
    max_events: int = 100,
) -> F64:
    """Expected events in ``(cut, cut + H]`` by sampling futures from the hazard model.

    E[N] = P(N >= 1) * E[N | N >= 1]. The first factor is exact (the interest at the
    customer's silence); for the second, the first event is drawn from the survival curve
    conditioned to fall inside the horizon, appended to the window, and the model is run
    again to draw the next one, until the horizon is passed. Conditioning the first draw
    removes most of the Monte Carlo noise of the rare first purchase.
    """
    from decay import survival
    from decay.features import encode_windows

    spec = result.spec
    edges = spec.bin_edges_h
    rng = np.random.default_rng(seed)
    base = user_windows(events[events["ts"] <= cut_ms], users)
    n = len(base)
    path_user = np.repeat(np.arange(n), n_samples)
    t_last = np.array([int(w.ts[-1]) if w.ts.shape[0] else cut_ms for w in base], np.int64)
    t_last = np.repeat(t_last, n_samples)
    silent_h = (cut_ms - t_last) / HOUR_MS
    extra: list[list[int]] = [[] for _ in range(path_user.shape[0])]
    counts = np.zeros(path_user.shape[0])
    p_first = np.ones(path_user.shape[0])
    active = np.arange(path_user.shape[0])
    horizon_end = cut_ms + int(spec.horizon_h * HOUR_MS)
    for step in range(max_events):
        if active.shape[0] == 0:
            break
        wins = [extend_window(base[path_user[i]], extra[i]) for i in active]
        x, lengths = encode_windows(wins, spec)
        # trim the padding to a power of two: few distinct shapes, few TF retracings
        longest = max(int(lengths.max(initial=0)), 1)
        x = x[:, : min(spec.seq_len, 1 << (longest - 1).bit_length())]
        zeros = np.zeros((active.shape[0], 1), np.float32)
        out = result.model.predict(
            {"x": x, "lengths": lengths, "elapsed_h": zeros}, batch_size=4096, verbose=0
        )
        rate = np.exp(np.asarray(out["log_hazard"], dtype=np.float64))
        start = survival.cumulative_hazard(rate, edges, silent_h[active])
        u = rng.random(active.shape[0])
        if step == 0:  # conditioned on an event inside the horizon
            left_h = (horizon_end - t_last[active]) / HOUR_MS
            p = -np.expm1(start - survival.cumulative_hazard(rate, edges, left_h))
            p_first[active] = p
            level = start - np.log1p(-u * p)
        else:
            level = start - np.log(u)
        gap_h = survival.inverse_cumulative_hazard(rate, edges, level)
        nxt = t_last[active] + np.minimum(gap_h, 1e9) * HOUR_MS
        inside = (nxt <= horizon_end) & (p_first[active] > 0)
        for i, t in zip(active[inside], nxt[inside].astype(np.int64), strict=True):
            extra[i].append(int(t))
        counts[active[inside]] += 1
        t_last[active[inside]] = nxt[inside].astype(np.int64)
        silent_h[active[inside]] = 0.0
        active = active[inside]
    per_path = p_first * counts
    return per_path.reshape(n, n_samples).mean(axis=1)


def _daily_counts(split: Split) -> list[F64]:
    cal = split.calibration
    day = cal["ts"].to_numpy() // DAY_MS
    last_day = (split.cut_ms - 1) // DAY_MS
    codes = pd.Index(split.users).get_indexer(cal["user_id"].to_numpy(dtype=object))
    out = []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(split.users) + 1))
    for u in range(len(split.users)):
        days = day[order[bounds[u] : bounds[u + 1]]]
        series = np.bincount(days - days.min(), minlength=int(last_day - days.min() + 1))
        out.append(series.astype(np.float64))
    return out


def _gaps_days(split: Split) -> F64:
    cal = split.calibration.sort_values(["user_id", "ts"], kind="stable")
    same = cal["user_id"].to_numpy()[1:] == cal["user_id"].to_numpy()[:-1]
    return np.asarray(np.diff(cal["ts"].to_numpy())[same] / DAY_MS, dtype=np.float64)


# the lapse model's settings, chosen on VALIDATION_CUTS by `decay evaluate cdnow --validation`
# (training/validation.py: GRID["u24-e20-ww4"], by its rule `choose`, round 6)
CDNOW_LAPSE = LapseConfig(units=24, epochs=20, window_weight=4.0)


LAPSE_SEEDS = (0, 1, 2)


# the lapse model's weight in its mixture with Pareto/NBD (the LSTM-BTYD+Pareto/NBD row),
# chosen on VALIDATION_CUTS by `decay evaluate cdnow --validation-blend`
# (training/validation.py: validate_blend)
BLEND_WEIGHT = 0.9


CDNOW_MODELS = (
    "exp-decay", "arima", "bgnbd", "pareto",
    "lapse", "lapse+pareto", "lapse-exp", "lapse-gru", "lstm", "gru",
)  # fmt: skip


def lapse_runs(
    split: Split, config: LapseConfig = CDNOW_LAPSE, seeds: Sequence[int] = LAPSE_SEEDS
) -> list[Prediction]:
    """The lapse model trained on the calibration events only, one fit per seed."""
    from training.lapse import fit, predict

    spec = FeatureSpec(horizon_h=(split.end_ms - split.cut_ms) / HOUR_MS)
    users = [str(u) for u in split.users]
    out = []
    for seed in seeds:
        result = fit(split.calibration, split.cut_ms, spec, dataclasses.replace(config, seed=seed))
        heads = predict(result, split.calibration, users, split.cut_ms, spec.horizon_h)
        info = {"seed": seed, "train_seconds": result.summary["train_seconds"]}
        name = lapse_name(config)
        out.append(Prediction(name, heads["expected"], heads["p_any"], info))
    return out


def lapse_name(config: LapseConfig) -> str:
    suffix = "" if config.dropout == "fixed" else f"-{config.dropout}"
    return f"{config.arch.upper()}-BTYD{suffix}"


def seed_mean(runs: Sequence[Prediction], config: LapseConfig) -> Prediction:
    """The mean over the seeds of P(any) and of the expected count."""
    seconds = [float(r.info["train_seconds"]) for r in runs]
    info = {
        "seeds": [r.info["seed"] for r in runs],
        "train_seconds": round(sum(seconds), 1),
        "train_seconds_per_seed": seconds,
        "config": dataclasses.asdict(config),
    }
    return Prediction(
        runs[0].name,
        np.mean([r.expected for r in runs], axis=0),
        np.mean([r.p_any for r in runs], axis=0),
        info,
    )


def lapse_prediction(
    split: Split, config: LapseConfig = CDNOW_LAPSE, seeds: Sequence[int] = LAPSE_SEEDS
) -> Prediction:
    """One fit per seed; the prediction is the mean over the seeds."""
    return seed_mean(lapse_runs(split, config, seeds), config)


def run_cdnow(
    models: Sequence[str] = CDNOW_MODELS,
    config: TrainConfig = CDNOW_TRAIN,
    plots_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    n_samples: int = 20,
    validation: bool = False,
    cut: CdnowCut | None = None,
    lapse_config: LapseConfig = CDNOW_LAPSE,
    lapse_seeds: Sequence[int] = LAPSE_SEEDS,
) -> dict[str, Any]:
    """Fit every model on the calibration weeks of ``cut`` (default: the published protocol,
    weeks 1-39 of the sample), score the holdout weeks. ``validation``: weeks 1-26 vs 27-39
    (inside the calibration period: the holdout stays unseen)."""
    if cut is None:
        cut = VALIDATION_CUTS[-1] if validation else CdnowCut()
    split = cdnow_split(cut=cut)
    spec = dataclasses.replace(CDNOW_SPEC, horizon_h=split.holdout_days * 24.0)
    print(
        f"{cut.describe()}: {len(split.users)} customers, {len(split.calibration)} "
        f"calibration purchase-days, {int(split.actual.sum())} holdout purchase-days",
        flush=True,
    )
    preds, trained, timings = run_models(
        split, models, spec, config, lapse_config, lapse_seeds, model_dir, n_samples
    )
    rows = {p.name: metrics(p, split) for p in preds}
    report: dict[str, Any] = {
        "protocol": cut.describe(),
        "cut": dataclasses.asdict(cut),
        "customers": len(split.users),
        "actual_holdout_total": float(split.actual.sum()),
        "models": rows,
        "alerts": alert_tables(preds, split),
        "info": {p.name: p.info for p in preds},
        "seconds": timings,
    }
    bg = next((p for p in preds if p.name == "BG/NBD"), None)
    if bg is not None and cut.published:
        report["bgnbd_matches_fhl"] = all(
            abs(bg.info[k] - v) <= 0.0015 for k, v in FHL_BGNBD.items()
        )
    report["verdict"] = verdict(rows)
    if plots_dir is not None:
        from training.plots import calibration_plot, interest_plot

        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        calibration_plot(preds, split, Path(plots_dir) / "calibration.png")
        if trained:
            result = trained.get("lstm") or trained["gru"]
            interest_plot(result, split, Path(plots_dir) / "interest_curves.png")
    return report


def run_models(
    split: Split,
    models: Sequence[str],
    spec: FeatureSpec,
    config: TrainConfig,
    lapse_config: LapseConfig,
    lapse_seeds: Sequence[int],
    model_dir: str | Path | None = None,
    n_samples: int = 20,
) -> tuple[list[Prediction], dict[str, TrainResult], dict[str, float]]:
    preds: list[Prediction] = []
    trained: dict[str, TrainResult] = {}
    timings: dict[str, float] = {}
    for name in models:
        t0 = time.perf_counter()
        if name == "exp-decay":
            preds.append(exponential_decay(split.rfm, _gaps_days(split)))
        elif name == "arima":
            preds.append(arima_daily(_daily_counts(split), round(split.holdout_days)))
        elif name == "bgnbd":
            preds.append(bg_nbd(split.rfm))
        elif name == "pareto":
            preds.append(pareto_nbd(split.rfm))
        elif name in ("lapse", "lapse-gru", "lapse-exp", "lapse-beta", "lapse-fixed"):
            cfg = lapse_config
            if name == "lapse-gru":
                cfg = dataclasses.replace(cfg, arch="gru")
            elif name != "lapse":
                cfg = dataclasses.replace(cfg, dropout=name.removeprefix("lapse-"))
            preds.append(lapse_prediction(split, cfg, lapse_seeds))
        elif name == "lapse+pareto":
            lapse = next((p for p in preds if p.name.startswith("LSTM-BTYD")), None)
            pareto = next((p for p in preds if p.name == "Pareto/NBD"), None)
            if lapse is None or pareto is None:
                raise ValueError("lapse+pareto needs lapse and pareto listed before it")
            preds.append(blend(lapse, pareto, BLEND_WEIGHT))
        elif name in ("lstm", "gru"):
            out = Path(model_dir) / name if model_dir is not None else None
            pred, result = lstm_prediction(
                split, name, spec=spec, config=config, out_dir=out, n_samples=n_samples
            )
            preds.append(pred)
            trained[name] = result
        else:
            raise ValueError(f"unknown model {name!r}")
        timings[preds[-1].name] = round(time.perf_counter() - t0, 1)
    return preds, trained, timings


def alert_tables(
    preds: Sequence[Prediction], split: Split
) -> dict[str, dict[str, dict[str, float]]]:
    """Per model, the alert table of its P(any) against the holdout's silent customers."""
    return {p.name: alert_metrics(p.p_any, ~split.bought) for p in preds}
