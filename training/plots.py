"""PNG plots for the evaluation: calibration curves and a few users' interest curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from decay import survival
from decay.features import HOUR_MS, encode_windows

if TYPE_CHECKING:
    from training.baselines import Prediction
    from training.splits import Split
    from training.train import TrainResult


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def calibration_plot(preds: Sequence[Prediction], split: Split, path: Path, bins: int = 10) -> None:
    """Predicted P(buys again in the holdout) against the observed share, per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    y = split.bought.astype(float)
    for pred in preds:
        p = np.clip(pred.p_any, 0, 1)
        idx = np.minimum((p * bins).astype(int), bins - 1)
        xs, ys = [], []
        for b in range(bins):
            m = idx == b
            if m.sum() >= 10:
                xs.append(p[m].mean())
                ys.append(y[m].mean())
        ax.plot(xs, ys, marker="o", ms=3, label=pred.name)
    ax.set_xlabel("predicted P(purchase in holdout)")
    ax.set_ylabel("observed share")
    ax.set_title("CDNOW holdout calibration")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def interest_plot(result: TrainResult, split: Split, path: Path, n_users: int = 4) -> None:
    """Interest I(t) = P(purchase within H | silent since the last one) over calendar time for
    a few customers, recomputed at each of their purchases; purchases marked."""
    from training.splits import user_windows

    plt = _pyplot()
    spec = result.spec
    counts = split.rfm.n_events
    # a spread of customers: the busiest, and some with 2, 4 and 7 purchase-days
    picks = [int(np.argmax(counts))]
    for k in (2, 4, 7):
        hits = np.nonzero(counts == k)[0]
        if hits.shape[0]:
            picks.append(int(hits[0]))
    picks = picks[:n_users]
    windows = user_windows(split.calibration, [split.users[i] for i in picks])
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.2 * len(picks)), sharex=True)
    axes = np.atleast_1d(axes)
    day = 86_400_000
    for ax, w, i in zip(axes, windows, picks, strict=True):
        prefixes = [
            type(w)(w.ts[: k + 1], w.types[: k + 1], w.cats[: k + 1], w.prices[: k + 1],
                    w.categories, k + 1, w.first_ts_ms)
            for k in range(w.ts.shape[0])
        ]  # fmt: skip
        x, lengths = encode_windows(prefixes, spec)
        zeros = np.zeros((len(prefixes), 1), np.float32)
        out = result.model.predict({"x": x, "lengths": lengths, "elapsed_h": zeros}, verbose=0)
        rate = np.exp(np.asarray(out["log_hazard"], dtype=np.float64))
        stops = np.append(w.ts[1:], split.cut_ms)
        for k in range(len(prefixes)):
            t = np.linspace(w.ts[k], stops[k], 60)
            silent = (t - w.ts[k]) / HOUR_MS
            curve = survival.interest(
                np.repeat(rate[k : k + 1], t.shape[0], 0),
                spec.bin_edges_h,
                spec.horizon_h,
                silent,
            )
            ax.plot((t - split.cut_ms) / day, curve, color="C0")
        ax.vlines((w.ts - split.cut_ms) / day, 0, 1, color="C3", lw=0.8, alpha=0.6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("interest")
        ax.set_title(f"{split.users[i]}: {int(split.actual[i])} holdout purchase-days", fontsize=9)
    axes[-1].set_xlabel("days relative to the end of calibration (week 39)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
