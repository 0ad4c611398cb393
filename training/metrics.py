"""The metrics every model is reported with: correlation, holdout total and bias, AUC and
Brier of "buys again", calibration error (ECE), concordance; and the alert metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.baselines import (
    Prediction,
)
from training.splits import F64, Split


def auc(score: F64, label: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve (ties count half), by ranks."""
    pos = int(label.sum())
    neg = label.shape[0] - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ece(p: F64, label: npt.NDArray[np.bool_], bins: int = 10) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += float(m.mean()) * abs(float(p[m].mean()) - float(label[m].mean()))
    return total


def concordance(risk: F64, time_to: F64, observed: npt.NDArray[np.bool_]) -> float:
    """Harrell's C: among pairs where the earlier time is an observed event, the share where
    that one has the higher risk (ties in risk count half)."""
    ti, tj = time_to[:, None], time_to[None, :]
    usable = observed[:, None] & (ti < tj)
    ri, rj = risk[:, None], risk[None, :]
    conc = (ri > rj) + 0.5 * (ri == rj)
    n = usable.sum()
    return float((conc * usable).sum() / n) if n else float("nan")


def metrics(pred: Prediction, split: Split) -> dict[str, float]:
    y = split.bought
    p = np.clip(pred.p_any, 0.0, 1.0)
    total = float(pred.expected.sum())
    actual = float(split.actual.sum())
    return {
        "corr": float(np.corrcoef(pred.expected, split.actual)[0, 1]),
        "total": total,
        "actual_total": actual,
        "bias_pct": 100.0 * (total - actual) / actual,
        "auc": auc(p, y),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": ece(p, y),
        "c_index": concordance(p, split.first_after_days, y),
    }


# the worker's default is 0.2 (decay/settings.py ``threshold``)
THETAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


def alert_metrics(
    p_any: F64, dormant: npt.NDArray[np.bool_], thetas: Sequence[float] = THETAS
) -> dict[str, dict[str, float]]:
    """Alerts "dormant at the cut" = ``p_any < theta`` against the ``dormant`` truth.

    Per theta: ``precision`` (share of flagged users that are dormant; NaN if none flagged),
    ``recall`` (share of dormant users flagged; NaN if none dormant) and ``flagged`` (share
    of all users flagged).
    """
    p = np.asarray(p_any, dtype=np.float64)
    truth = np.asarray(dormant, dtype=bool)
    out: dict[str, dict[str, float]] = {}
    for theta in thetas:
        flag = p < theta
        tp = float((flag & truth).sum())
        n_flag, n_true = float(flag.sum()), float(truth.sum())
        out[f"{theta:.1f}"] = {
            "precision": tp / n_flag if n_flag else float("nan"),
            "recall": tp / n_true if n_true else float("nan"),
            "flagged": n_flag / p.shape[0] if p.shape[0] else float("nan"),
        }
    return out
