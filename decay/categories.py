"""Category interest: how much of a user's interest goes to each category they touched.

Category interest = I × P(category) (docs/design.md). P comes from the model's category head when
it has one (hashed buckets, mapped back to the names in the window), else from the window
itself: the category shares of its events, weighted towards the recent ones.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

from decay.features import category_bucket
from decay.window import NO_CATEGORY, Window

RECENCY = 0.85  # weight of an event relative to the next newer one, for window shares


def category_probabilities(
    window: Window, probs: npt.NDArray[np.float64] | None = None
) -> dict[str, float]:
    """P(next event's category) for each category named in the window."""
    names = [window.categories[c] for c in sorted(set(window.cats.tolist()) - {NO_CATEGORY})]
    if not names:
        return {}
    if probs is not None:
        buckets = probs.shape[0]
        return {name: float(probs[category_bucket(name, buckets)]) for name in names}
    n = window.cats.shape[0]
    weights = RECENCY ** np.arange(n - 1, -1, -1, dtype=np.float64)
    has = window.cats != NO_CATEGORY
    total = float(weights[has].sum())
    shares = np.bincount(window.cats[has], weights=weights[has], minlength=len(window.categories))
    return {name: float(shares[window.categories.index(name)]) / total for name in names}


def recent_mix(window: Window, last: int = 10) -> str:
    """'8 of the last 10 events in toys, 2 in books' style summary of recent activity."""
    cats = window.cats[-last:].tolist()
    counts = Counter(window.categories[c] for c in cats if c != NO_CATEGORY)
    if not counts:
        return f"none of the last {len(cats)} events had a category"
    parts = [f"{n} in {name}" for name, n in counts.most_common(3)]
    return f"of the last {len(cats)} events: " + ", ".join(parts)
