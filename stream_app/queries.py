"""Answers to "what is user U interested in right now?" from a user's stored state."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2

from decay.alerts import rfc3339
from decay.related import Suggestion
from decay.scoring import AnyScorer
from decay.state import UserState
from stream_app.explaining import explain_now


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's) gives a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Clock:
    """The "now" a user's interest is read at, and which clock it is.

    The worker's clock is event time: the newest event time its user's partition has seen
    (in live mode moved on with the wall clock while the partition is idle). Replayed
    history is years behind the wall clock, so reading interest at the wall clock would say
    0 for everyone; the wall clock is used only when the partition has no clock yet.
    """

    now_ms: int
    partition: int
    event_time: bool  # False: the partition has no event time yet, this is the wall clock

    @property
    def source(self) -> str:
        return "event time" if self.event_time else "wall clock"

    def words(self) -> str:
        if self.event_time:
            return (
                f"now = {_minute(self.now_ms)} UTC, the event time of partition "
                f"{self.partition} (its newest event; deadlines fire on this clock)"
            )
        return (
            f"now = {_minute(self.now_ms)} UTC, the wall clock (partition "
            f"{self.partition} has no event time yet)"
        )


def _minute(ms: int) -> str:
    return rfc3339(ms)[:16].replace("T", " ")


def user_clock(partition: int, newest_event_ms: int | None, wall_ms: int) -> Clock:
    if newest_event_ms is None:
        return Clock(wall_ms, partition, event_time=False)
    return Clock(newest_event_ms, partition, event_time=True)


def describe_user(
    user_id: str,
    st: UserState,
    scorer: AnyScorer,
    clock: Clock,
    related: Mapping[str, Sequence[Suggestion]] | None = None,
) -> dict[str, Any]:
    """``related``: per fading category, its related ones (CategoryVectors.fading), each
    scored with the interest now."""
    last = st.last_ts_ms
    silent_s = max(clock.now_ms - last, 0) / 1000.0
    interest = scorer.interest(st.peak_score, st.half_life_s, silent_s)
    return {
        "user_id": user_id,
        "events_seen": st.n_total,
        "events_in_window": st.n_events,
        "first_event": rfc3339(st.first_ts_ms) if st.n_events else None,
        "last_event": rfc3339(last) if st.n_events else None,
        "now": rfc3339(clock.now_ms),
        "clock": clock.source,
        "interest_now": interest,
        "peak_score": st.peak_score,
        "half_life_hours": st.half_life_s / 3600.0,
        "deadline": rfc3339(st.deadline_ms) if st.deadline_ms else None,
        "dormant_since": rfc3339(st.dormant_since_ms) if st.dormant_since_ms else None,
        "last_alerts": [json.loads(a.payload) for a in st.alerts],
        "related": {c: [s.entry(interest) for s in found] for c, found in (related or {}).items()},
        # which recent events move interest now most (one scorer call: occlusion)
        "explanation": explain_now(scorer, st, clock.now_ms),
    }
