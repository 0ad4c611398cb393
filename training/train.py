"""Train the model on an event log: examples, time-based validation split, early stopping.

The split is by time: training examples have cuts before ``split`` and labels censored at
``split`` (nothing after it leaks in); validation examples have cuts after it. The model
directory holds ``weights.weights.h5`` and ``model.json`` (spec, architecture, data summary).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decay.category_space import CategorySpace, EncodedNames, NameVectors, SpaceRows
from decay.features import HOUR_MS, EventTable, FeatureSpec, gather_windows, prepare_events
from training.labels import Examples, calendar_cuts, event_cuts

log = logging.getLogger(__name__)
MONITOR = "val_log_hazard_loss"


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "lstm"
    units: int = 32
    epochs: int = 15
    batch_size: int = 256
    patience: int = 3
    learning_rate: float = 3e-3
    seed: int = 0
    max_examples: int = 60_000
    val_fraction: float = 0.2
    # None: one example right after each event (the stream's question, elapsed 0);
    # a number: calendar cuts every that many hours (elapsed > 0, e.g. CDNOW's week 39)
    cut_every_h: float | None = None
    # after early stopping, fit again on all the data (labels up to the end) for the best
    # number of epochs: the last ``val_fraction`` of the period is not lost to training
    refit: bool = False
    # None: the spec's bin edges; a number: that many bins with edges at quantiles of the
    # observed gaps of the training period, so every bin (the open last one too) has events
    # to learn from instead of extrapolating where the training data cannot see
    quantile_bins: int | None = None
    verbose: int = 1


@dataclass
class TrainResult:
    model: Any  # keras.Model
    spec: FeatureSpec
    config: TrainConfig
    summary: dict[str, Any] = field(default_factory=dict)
    space: CategorySpace | None = None  # spec fs2: the category space fitted on the log


def make_examples(
    table: EventTable, start_ms: int, end_ms: int, cut_every_h: float | None, horizon_h: float
) -> Examples:
    """Examples with cuts in ``[start_ms, end_ms]``, labels censored at ``end_ms``."""
    if cut_every_h is None:
        return event_cuts(table, end_ms, horizon_h, start_ms=start_ms)
    step = int(cut_every_h * HOUR_MS)
    cuts = np.arange(end_ms, start_ms - 1, -step)[::-1]
    return calendar_cuts(table, cuts, end_ms, horizon_h)


def quantile_edges(ex: Examples, n_bins: int) -> tuple[float, ...]:
    """Bin edges (hours) at quantiles of the observed gaps, one per distinct event."""
    _, first = np.unique(np.stack([ex.user, ex.last]), axis=1, return_index=True)
    seen = first[ex.observed[first]]
    gaps = ex.duration_h[seen]
    if gaps.shape[0] < n_bins * 10:
        raise ValueError(f"too few observed gaps ({gaps.shape[0]}) for {n_bins} quantile bins")
    qs = np.quantile(gaps, np.arange(1, n_bins) / n_bins)
    edges = [0.0]
    for q in np.round(qs, 3):
        if q > edges[-1]:
            edges.append(float(q))
    return tuple(edges)


def _subsample(ex: Examples, n: int, rng: np.random.Generator) -> Examples:
    if len(ex) <= n:
        return ex
    return ex.take(np.sort(rng.choice(len(ex), n, replace=False)))


def _batches(
    table: EventTable, ex: Examples, batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Index batches of examples with similar window lengths (less padding to run over)."""
    from decay.features import window_lengths

    lengths = window_lengths(table, ex.user, ex.last)
    noise = rng.random(len(ex)) if rng is not None else np.zeros(len(ex))
    order = np.lexsort((noise, lengths))
    return [order[i : i + batch_size] for i in range(0, len(ex), batch_size)]


def batch_arrays(
    table: EventTable, ex: Examples, idx: np.ndarray, spec: FeatureSpec
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from training.model import category_head, hazard_targets

    sub = ex.take(idx)
    x, lengths = gather_windows(table, sub.user, sub.last)
    x = x[:, : max(int(lengths.max(initial=0)), 1)]
    inputs = {
        "x": x,
        "lengths": lengths,
        "elapsed_h": sub.elapsed_h.astype(np.float32)[:, None],
    }
    targets = {
        "log_hazard": hazard_targets(spec.bin_edges_h, sub.elapsed_h, sub.duration_h, sub.observed),
        category_head(spec): sub.next_bucket.astype(np.float32),
        "log_count": np.stack([sub.count, sub.exposure, _log_factorial(sub.count)], axis=1).astype(
            np.float32
        ),
    }
    return inputs, targets


def _log_factorial(n: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return np.asarray(gammaln(n + 1.0), dtype=np.float64)


def base_log_rate(ex: Examples, spec: FeatureSpec) -> float:
    """Log of the pooled event rate per hour: a sensible starting hazard."""
    from training.model import hazard_targets

    t = hazard_targets(spec.bin_edges_h, ex.elapsed_h, ex.duration_h, ex.observed)
    m = spec.n_bins
    exposure, events = float(t[:, :m].sum()), float(t[:, m:].sum())
    return math.log(max(events, 1.0) / max(exposure, 1e-9))


def data_summary(events: pd.DataFrame, train_ex: Examples, val_ex: Examples) -> dict[str, Any]:
    ts = events["ts"].to_numpy()
    return {
        "events": len(events),
        "users": int(events["user_id"].nunique()),
        "from": pd.Timestamp(int(ts.min()), unit="ms", tz="UTC").isoformat() if len(ts) else "",
        "to": pd.Timestamp(int(ts.max()), unit="ms", tz="UTC").isoformat() if len(ts) else "",
        "train_examples": len(train_ex),
        "val_examples": len(val_ex),
        "train_censored_share": round(float(1 - train_ex.observed.mean()), 4)
        if len(train_ex)
        else 0.0,
    }


def train(
    events: pd.DataFrame,
    out_dir: str | Path | None = None,
    *,
    spec: FeatureSpec | None = None,
    config: TrainConfig | None = None,
    end_ms: int | None = None,
    names: NameVectors | None = None,
) -> TrainResult:
    """Fit the model on ``events`` (contract frame); save it to ``out_dir`` when given. An fs2
    ``spec`` fits the category space on the log's names first (their vectors from ``names``,
    the pinned encoder by default)."""
    import keras

    from training.category_space import fit_log_space
    from training.model import build_model, compile_model

    spec = spec or FeatureSpec()
    cfg = config or TrainConfig()
    t0 = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rows = fit_log_space(events, spec.category_dims, names) if spec.uses_space else None
    table = prepare_events(events, spec, rows)
    if table.ts.shape[0] == 0:
        raise ValueError("no events to train on")
    candidates = None if rows is None else rows.rows(table.category_names)
    start = int(table.ts.min())
    end = int(end_ms if end_ms is not None else table.ts.max())
    split = start + int((end - start) * (1.0 - cfg.val_fraction))
    train_ex = make_examples(table, start, split, cfg.cut_every_h, spec.horizon_h)
    val_ex = make_examples(table, split + 1, end, cfg.cut_every_h, spec.horizon_h)
    if cfg.quantile_bins:
        spec = dataclasses.replace(spec, bin_edges_h=quantile_edges(train_ex, cfg.quantile_bins))
    train_ex = _subsample(train_ex, cfg.max_examples, rng)
    val_ex = _subsample(val_ex, max(cfg.max_examples // 4, 1), rng)
    if len(train_ex) == 0 or len(val_ex) == 0:
        raise ValueError("too little data for a time-based train/validation split")
    summary = data_summary(events, train_ex, val_ex)
    log.info("examples: %d train, %d validation", len(train_ex), len(val_ex))

    model = build_model(spec, cfg.arch, cfg.units, base_log_rate(train_ex, spec))  # type: ignore[arg-type]
    compile_model(model, cfg.learning_rate, candidates)
    train_seq = _dataset(table, train_ex, spec, cfg.batch_size, cfg.seed)
    val_seq = _dataset(table, val_ex, spec, cfg.batch_size, None)
    # the hazard head is what serving uses (interest, deadline) and what CDNOW's P(any) and
    # sampled counts come from, so it alone decides when to stop
    stop = keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="min", patience=cfg.patience, restore_best_weights=True
    )
    history = model.fit(
        train_seq,
        validation_data=val_seq,
        epochs=cfg.epochs,
        callbacks=[stop],
        verbose=cfg.verbose,
    )
    val_losses = history.history.get(MONITOR, [])
    best_epochs = int(np.argmin(val_losses)) + 1 if val_losses else cfg.epochs
    # measured before any refit: the refit model trains on the validation period, so its
    # metrics there would be in-sample (they are not holdout metrics either way: the card
    # takes those from an evaluation, see ``training.export``)
    summary["validation"] = validation_metrics(model, table, val_ex, spec, end)
    summary["validation_model"] = "early-stopped, before the refit" if cfg.refit else "final"
    if cfg.refit:
        all_ex = _subsample(
            make_examples(table, start, end, cfg.cut_every_h, spec.horizon_h),
            cfg.max_examples,
            rng,
        )
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(spec, cfg.arch, cfg.units, base_log_rate(all_ex, spec))  # type: ignore[arg-type]
        compile_model(model, cfg.learning_rate, candidates)
        model.fit(
            _dataset(table, all_ex, spec, cfg.batch_size, cfg.seed),
            epochs=best_epochs,
            verbose=cfg.verbose,
        )
        summary["refit_examples"] = len(all_ex)
    wall = time.perf_counter() - t0
    summary.update(
        {
            "epochs_run": len(val_losses),
            "best_epochs": best_epochs,
            "refit": cfg.refit,
            "best_val_hazard_nll": round(float(min(val_losses)), 5) if val_losses else None,
            "train_seconds": round(wall, 1),
            "arch": cfg.arch,
            "units": cfg.units,
        }
    )
    print(f"trained {cfg.arch} in {wall:.1f} s ({summary['epochs_run']} epochs)", flush=True)
    space = None if rows is None else rows.space
    result = TrainResult(model=model, spec=spec, config=cfg, summary=summary, space=space)
    if out_dir is not None:
        save(result, out_dir)
    return result


def validation_metrics(
    model: Any, table: EventTable, ex: Examples, spec: FeatureSpec, end_ms: int
) -> dict[str, float]:
    """On the time-based validation split: hazard NLL per example, and AUC / Brier of
    "another event within the horizon" where the whole horizon is observed."""
    from decay import survival
    from training.metrics import auc

    nll: list[float] = []
    probs: list[np.ndarray] = []
    for idx in _batches(table, ex, 2048, None):
        inputs, targets = batch_arrays(table, ex, idx, spec)
        out = model.predict_on_batch(inputs)
        log_h = np.asarray(out["log_hazard"], dtype=np.float64)
        t = targets["log_hazard"].astype(np.float64)
        m = spec.n_bins
        nll.extend((np.exp(log_h) * t[:, :m]).sum(1) - (t[:, m:] * log_h).sum(1))
        p = survival.interest(np.exp(log_h), spec.bin_edges_h, spec.horizon_h, ex.elapsed_h[idx])
        probs.append(np.stack([idx.astype(np.float64), p], axis=1))
    both = np.concatenate(probs)
    p_any = np.empty(len(ex))
    p_any[both[:, 0].astype(np.int64)] = both[:, 1]
    horizon_ms = spec.horizon_h * HOUR_MS
    full = ex.cut_ms + horizon_ms <= end_ms
    hit = ex.observed & (ex.duration_h - ex.elapsed_h <= spec.horizon_h)
    out_metrics = {"val_hazard_nll": round(float(np.mean(nll)), 5), "val_examples": len(ex)}
    if full.sum() >= 10:
        y, p = hit[full], p_any[full]
        out_metrics.update(
            {
                "val_auc_event_within_horizon": round(auc(p, y), 4),
                "val_brier_event_within_horizon": round(float(np.mean((p - y) ** 2)), 4),
                "val_examples_full_horizon": int(full.sum()),
            }
        )
    return out_metrics


def _dataset(
    table: EventTable, ex: Examples, spec: FeatureSpec, batch_size: int, seed: int | None
) -> Any:
    """A ``tf.data`` pipeline of length-bucketed batches (each trimmed to its longest window),
    in a new random order every epoch when ``seed`` is given."""
    import tensorflow as tf

    rng = np.random.default_rng(seed) if seed is not None else None

    def batches() -> Any:
        order = _batches(table, ex, batch_size, rng)
        if rng is not None:
            rng.shuffle(order)
        for idx in order:
            yield batch_arrays(table, ex, idx, spec)

    from training.model import category_head

    m, f = spec.n_bins, spec.n_features
    signature = (
        {
            "x": tf.TensorSpec((None, None, f), tf.float32),
            "lengths": tf.TensorSpec((None,), tf.int32),
            "elapsed_h": tf.TensorSpec((None, 1), tf.float32),
        },
        {
            "log_hazard": tf.TensorSpec((None, 2 * m), tf.float32),
            category_head(spec): tf.TensorSpec((None,), tf.float32),
            "log_count": tf.TensorSpec((None, 3), tf.float32),
        },
    )
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return ds.prefetch(2)


def save(result: TrainResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_weights(out / "weights.weights.h5")
    meta = {
        "spec": {
            "version": result.spec.version,
            "seq_len": result.spec.seq_len,
            "cat_buckets": result.spec.cat_buckets,
            "bin_edges_h": list(result.spec.bin_edges_h),
            "horizon_h": result.spec.horizon_h,
            "category_dims": result.spec.category_dims,
        },
        "config": asdict(result.config),
        "summary": result.summary,
        "category_space": None if result.space is None else result.space.to_card(),
    }
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return out


def load(model_dir: str | Path) -> TrainResult:
    from training.model import build_model

    meta = json.loads((Path(model_dir) / "model.json").read_text())
    s = meta["spec"]
    spec = FeatureSpec(
        version=s["version"],
        seq_len=int(s["seq_len"]),
        cat_buckets=int(s["cat_buckets"]),
        bin_edges_h=tuple(float(e) for e in s["bin_edges_h"]),
        horizon_h=float(s["horizon_h"]),
        category_dims=int(s.get("category_dims", 0)),
    )
    cfg = TrainConfig(**meta["config"])
    model = build_model(spec, cfg.arch, cfg.units)  # type: ignore[arg-type]
    model.load_weights(Path(model_dir) / "weights.weights.h5")
    card = meta.get("category_space")
    space = None if card is None else CategorySpace.from_card(card)
    return TrainResult(model=model, spec=spec, config=cfg, summary=meta["summary"], space=space)


def space_rows(result: TrainResult, names: NameVectors | None = None) -> SpaceRows | None:
    """The trained model's category rows (fs2), names' vectors from ``names`` or the encoder."""
    if result.space is None:
        return None
    return SpaceRows(result.space, names or EncodedNames())
