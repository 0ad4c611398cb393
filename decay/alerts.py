"""The alert contract: deterministic ids, the JSON payload, and reasons in plain words.

Pure logic. An alert is a state change of one user: one ``dormant`` per dormancy episode,
closed by one ``reengaged``. Its id depends only on what caused it (kind, user, category and
the episode's deadline), so a replay or a re-send after a crash carries the same id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from decay.durations import DAY_MS

DORMANT: Final = "dormant"
CATEGORY_DECAY: Final = "category_decay"
REENGAGED: Final = "reengaged"
ERASED: Final = "erased"  # confirms an erasure request; not a change of interest
KINDS: Final = (DORMANT, CATEGORY_DECAY, REENGAGED, ERASED)


def alert_id(kind: str, user_id: str, anchor_ms: int, category: str | None = None) -> str:
    """Same cause, same id: ``anchor_ms`` is the deadline of the dormancy episode concerned."""
    text = f"{kind}\x1f{user_id}\x1f{category or ''}\x1f{anchor_ms}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rfc3339(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# Below this (2242) ``ms / 1000`` as a float is exact to well under a microsecond, so
# rfc3339's float path and numpy's integer one give the same string.
_EXACT_MS: Final = 2**33 * 1000


def rfc3339_many(ms: Sequence[int]) -> list[str]:
    """``rfc3339`` of each value, in one numpy call (a batch's score messages: the scalar
    one builds a datetime per value)."""
    stamps = np.asarray(ms, dtype=np.int64)
    if not len(stamps) or stamps.min() < 0 or stamps.max() >= _EXACT_MS:
        return [rfc3339(int(v)) for v in ms]
    return [s + "Z" for s in np.datetime_as_string(stamps.astype("datetime64[ms]")).tolist()]


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    kind: str
    user_id: str
    category: str | None
    score: float
    peak_score: float
    half_life_hours: float
    event_time: str
    emitted_at: str
    model_version: str
    reasons: list[str] = field(default_factory=list)
    # category_decay: close categories where the user's interest is still high or rising
    # (decay.related.Suggestion.entry); left out of the JSON when there are none.
    related: list[dict[str, Any]] = field(default_factory=list)
    # which recent events moved the score most (decay.explanations); absent in old records
    explanation: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        # The fields in order, as asdict() gives them, without its deep copies.
        values = {name: getattr(self, name) for name in _ALERT_FIELDS}
        if not values["related"]:
            del values["related"]
        return json.dumps(values, separators=(",", ":")).encode()

    @staticmethod
    def from_json(raw: bytes) -> Alert:
        return Alert(**json.loads(raw))


_ALERT_FIELDS: Final = tuple(f.name for f in fields(Alert))


def days(ms: float) -> str:
    return f"{ms / DAY_MS:.1f} days"


def dormant_reasons(
    silent_ms: int, typical_gap_ms: float | None, peak: float, score: float, n_total: int
) -> list[str]:
    reasons = [f"no activity for {days(silent_ms)}"]
    if typical_gap_ms is None:
        reasons[0] += f"; no repeat visit seen yet ({n_total} events in all)"
    else:
        ratio = silent_ms / typical_gap_ms if typical_gap_ms > 0 else float("inf")
        reasons[0] += f"; this user's typical gap is {days(typical_gap_ms)} ({ratio:.1f}x)"
    reasons.append(f"interest fell from {peak:.2f} to {score:.2f}")
    return reasons


def reengaged_reasons(silent_ms: int, dormant_since_ms: int, event_type: str) -> list[str]:
    return [
        f"back after {days(silent_ms)} of silence",
        f"dormant since {rfc3339(dormant_since_ms)[:10]}; returned with a {event_type} event",
    ]
