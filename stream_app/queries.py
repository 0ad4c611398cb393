"""Answers to "what is user U interested in right now?" from a user's stored state."""

from __future__ import annotations

import json
from typing import Any

from aiokafka.partitioner import murmur2

from decay.alerts import rfc3339
from decay.scoring import AnyScorer
from decay.state import UserState


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's) gives a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def describe_user(user_id: str, st: UserState, scorer: AnyScorer, now_ms: int) -> dict[str, Any]:
    last = st.last_ts_ms
    silent_s = max(now_ms - last, 0) / 1000.0
    return {
        "user_id": user_id,
        "events_seen": st.n_total,
        "events_in_window": st.n_events,
        "first_event": rfc3339(st.first_ts_ms) if st.n_events else None,
        "last_event": rfc3339(last) if st.n_events else None,
        "interest_now": scorer.interest(st.peak_score, st.half_life_s, silent_s),
        "peak_score": st.peak_score,
        "half_life_hours": st.half_life_s / 3600.0,
        "deadline": rfc3339(st.deadline_ms) if st.deadline_ms else None,
        "dormant_since": rfc3339(st.dormant_since_ms) if st.dormant_since_ms else None,
        "last_alerts": [json.loads(a.payload) for a in st.alerts],
    }
