"""Offline helpers of the category space (``decay.category_space``, re-exported here): the
hashed rows and the history features the next-category bench reads, the same function for
both representations (embedding rows or one-hot buckets), so the bench compares only the
input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from decay.category_space import CategorySpace, EncodedNames, NameVectors, SpaceRows, fit_space
from decay.features import UNKNOWN_CATEGORY, category_bucket

F32 = npt.NDArray[np.float32]
__all__ = [
    "CategorySpace",
    "bucket_rows",
    "fit_log_space",
    "fit_space",
    "history_features",
    "log_category_names",
]
DECAYS = (0.5, 0.85)  # weights of older sessions in the two running averages


def bucket_rows(names: Sequence[str], buckets: int) -> F32:
    """The hashed representation: one-hot rows of ``decay.features.category_bucket``."""
    out = np.zeros((len(names), buckets), np.float32)
    out[np.arange(len(names)), [category_bucket(n, buckets) for n in names]] = 1.0
    return out


def history_features(reps: F32) -> F32:
    """For a user's sessions' category rows ``reps`` [S, d]: the features before session i,
    for i in 1..S-1, as rows [S-1, 3d]: the last session's row and two running averages
    (recent-weighted) of all earlier ones."""
    s, d = reps.shape
    out = np.zeros((max(s - 1, 0), 3 * d), np.float32)
    avg = [np.zeros(d, np.float32) for _ in DECAYS]
    for i in range(1, s):
        for j, w in enumerate(DECAYS):
            avg[j] = reps[i - 1] if i == 1 else w * avg[j] + (1 - w) * reps[i - 1]
        out[i - 1] = np.concatenate([reps[i - 1], *avg])
    return out


def log_category_names(events: pd.DataFrame) -> list[str]:
    """The named categories of an event log (sorted; the cleaner's ``"unknown"`` is none)."""
    if "category" not in events.columns:
        return []
    names = set(events["category"].dropna().astype(str)) - {UNKNOWN_CATEGORY}
    return sorted(names)


def fit_log_space(events: pd.DataFrame, dims: int, names: NameVectors | None = None) -> SpaceRows:
    """The category space of a training log: PCA of its category names' sentence embeddings
    (from ``names``, the pinned encoder by default), as rows for ``decay.features``."""
    catalogue = log_category_names(events)
    if len(catalogue) <= dims:
        raise ValueError(
            f"a {dims}-d category space needs more than {dims} category names; "
            f"the log has {len(catalogue)}"
        )
    source = names or EncodedNames()
    raw = source.vectors(catalogue)
    space = fit_space(np.stack([raw[n] for n in catalogue]), dims)
    return SpaceRows(space, source, raw)
