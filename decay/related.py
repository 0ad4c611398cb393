"""Related-category suggestions: when a user's interest in a category fades, the categories
close to it in embedding space where this user's interest is still high or rising.

Pure: the caller gives the category vectors (``decay.embeddings`` or a model's category space)
and the user's interest per category now and a while ago (decayed activity, any unit);
:func:`engagement_interest` reads both from a user's per-category engagement (the worker's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from decay.engagement import Engagement, EngagementRules, activity_at

F32 = npt.NDArray[np.float32]
MAX_SUGGESTIONS = 3
MIN_SIMILARITY = 0.25  # cosine of all-MiniLM-L6-v2 names: "running shoes"/"cookware" is 0.13
HIGH_SHARE = 0.15  # a category holding this share of the user's interest now is "high"


@dataclass(frozen=True, slots=True)
class Interest:
    now: float
    before: float  # the same measure some time ago (a week in bench/embeddings.py)


@dataclass(frozen=True, slots=True)
class Suggestion:
    category: str
    similarity: float  # cosine to the fading category
    interest: float  # the user's interest in it now
    rising: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "category": self.category,
            "similarity": round(self.similarity, 3),
            "interest": round(self.interest, 4),
            "rising": self.rising,
        }

    def entry(self, level: float) -> dict[str, object]:
        """As an alert or a page lists it: ``score`` is ``level`` (the user's interest now)
        times the category's share, as a ``category_decay`` alert's own score is."""
        return {
            "category": self.category,
            "score": round(level * self.interest, 4),
            "share": round(self.interest, 4),
            "similarity": round(self.similarity, 3),
            "rising": self.rising,
        }


def engagement_interest(
    book: Mapping[str, Engagement], t_ms: int, sessions: int, rules: EngagementRules
) -> dict[str, Interest]:
    """A user's interest per category from its engagement (``decay.engagement``): now, the
    category's share of the user's decayed visits at ``t_ms``; before, its share of all the
    user's ``sessions`` so far. A category above its share of all sessions is rising (the
    test ``decay.engagement.risen`` makes of where the sessions went)."""
    now = {name: activity_at(e, t_ms, rules) for name, e in book.items()}
    total = sum(now.values())
    if total <= 0.0 or sessions <= 0:
        return {}
    return {name: Interest(now[name] / total, e.visits / sessions) for name, e in book.items()}


def related(
    fading: str,
    vectors: Mapping[str, F32],
    interest: Mapping[str, Interest],
    limit: int = MAX_SUGGESTIONS,
    min_similarity: float = MIN_SIMILARITY,
) -> list[Suggestion]:
    """Up to ``limit`` categories other than ``fading``, each at least ``min_similarity``
    close to it and holding a high or rising share of the user's interest, closest first.
    Categories without a vector, and a fading category without one, give no suggestion."""
    anchor = vectors.get(fading)
    total = sum(max(i.now, 0.0) for i in interest.values())
    if anchor is None or total <= 0.0:
        return []
    anchor_norm = float(np.linalg.norm(anchor)) or 1.0
    found = []
    for name, level in interest.items():
        vec = vectors.get(name)
        if name == fading or vec is None or level.now <= 0.0:
            continue
        rising = level.now > level.before
        if not rising and level.now < HIGH_SHARE * total:
            continue
        sim = float(vec @ anchor) / ((float(np.linalg.norm(vec)) or 1.0) * anchor_norm)
        if sim >= min_similarity:
            found.append(Suggestion(name, sim, level.now, rising))
    found.sort(key=lambda s: (-s.similarity, s.category))
    return found[:limit]
