"""What each alert says and when the per-event rules raise one, free of the batch loop.

The processor calls these on a user's newest event (re-engaged, category decay), when a
deadline fires (dormant) and after an event (the score message); each returns what to emit,
and ``Processor._emit`` turns it into the alert record with its id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from decay import alerts as al
from decay.categories import recent_mix
from decay.engagement import EngagementRules, add_event, may_decay, review, session_of
from decay.state import UserState
from decay.window import Window
from stream_app.batch import OutAlert, Step, f32


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert to emit, before its id, timestamps and model version are added."""

    kind: str
    anchor_ms: int  # what its id is derived from, with the kind, user and category
    event_time_ms: int
    score: float
    reasons: list[str] = field(default_factory=list)
    category: str | None = None
    peak: float | None = None  # the peak score to report, when not the user's own
    related: list[dict[str, Any]] = field(default_factory=list)  # stream_app.category_vectors


def reengaged(st: UserState, step: Step) -> AlertSpec | None:
    """An event newer than the user's window end closes an open dormancy episode."""
    since = st.dormant_since_ms
    if not since or step.event.ts_ms <= since:
        return None
    prev = step.previous_ts_ms
    silent = step.event.ts_ms - (since if prev is None else prev)
    st.dormant_since_ms = 0
    return AlertSpec(
        kind=al.REENGAGED,
        anchor_ms=since,
        event_time_ms=step.event.ts_ms,
        score=1.0,
        reasons=al.reengaged_reasons(silent, since, step.event.type.name.lower()),
    )


def count_session(st: UserState, step: Step, rules: EngagementRules) -> bool:
    """The user's sessions and category visits, with this event (in event order); whether
    it is the user's newest event (the end of its window)."""
    event = step.event
    ts = event.ts_ms
    if ts >= step.last_ts_ms:  # the newest: maybe a new session
        before = st.sessions
        st.sessions = now = session_of(before, step.previous_ts_ms or 0, ts, rules)
        if event.category is not None:
            add_event(st.engagement, event.category, ts, now, now > before, rules)
        return True
    if event.category is not None:
        add_event(st.engagement, event.category, ts, st.sessions, False, rules)
    return False


def category_drops(st: UserState, step: Step, rules: EngagementRules) -> list[AlertSpec]:
    """On the user's newest event: the categories whose engagement dropped just now."""
    if not may_decay(st.engagement, rules):
        return []  # most users: nothing review could alert on or change
    recent = step.recent_categories(10)
    return [
        AlertSpec(
            kind=al.CATEGORY_DECAY,
            anchor_ms=step.event.ts_ms,
            event_time_ms=step.event.ts_ms,
            score=f32(st.peak_score * d.share),
            peak=f32(st.peak_score * d.base),
            category=d.category,
            reasons=[
                f"no {d.category} for {d.silent_ms / 86_400_000:.1f} days and "
                f"{d.sessions_since} sessions, though {d.base:.0%} of this user's "
                "sessions had visited it",
                f"{d.category} is {d.share:.0%} of the user's recent activity",
                recent_mix(step.window),
                f"{d.instead} rose to {d.instead_share:.0%} of it, from "
                f"{d.instead_base:.0%} of the user's sessions",
            ],
        )
        for d in review(st.engagement, step.event.ts_ms, st.sessions, recent, rules)
    ]


def typical_gap(window: Window, sessions: int) -> float | None:
    """The window's median gap between visits; a short window within one visit (a lapse
    model keeps 10 events): the mean over the user's whole history of visits."""
    gap = window.typical_gap_ms()
    if gap is None and sessions > 1:
        return (window.last_ts_ms - window.first_ts_ms) / (sessions - 1)
    return gap


def dormant(st: UserState, window: Window, deadline_ms: int, threshold: float) -> AlertSpec:
    """The user's deadline passed with no event since: the episode opens at the deadline."""
    silent = deadline_ms - window.last_ts_ms
    # The deadline is where the scorer's interest curve crosses the threshold, so the
    # interest at this moment is the threshold itself (the stored two-parameter curve would
    # only approximate it).
    st.deadline_ms = 0
    st.dormant_since_ms = deadline_ms
    return AlertSpec(
        kind=al.DORMANT,
        anchor_ms=deadline_ms,
        event_time_ms=deadline_ms,
        score=threshold,
        reasons=al.dormant_reasons(
            silent, typical_gap(window, st.sessions), st.peak_score, threshold, window.n_total
        ),
    )


def score_message(ukey: tuple[int, str], st: UserState, step: Step, version: str) -> OutAlert:
    """The user's score after an event, for the optional scores topic."""
    payload = {
        "user_id": ukey[1],
        "event_id": step.event.event_id,
        "event_time": al.rfc3339(step.event.ts_ms),
        "score": st.peak_score,
        "half_life_hours": st.half_life_s / 3600.0,
        "deadline": al.rfc3339(st.deadline_ms) if st.deadline_ms else None,
        "model_version": version,
    }
    return OutAlert(ukey[0], ukey[1], "score", json.dumps(payload).encode())


def to_payload(spec: AlertSpec, user_id: str, st: UserState, version: str, now_ms: int) -> bytes:
    """The alert's record on the alerts topic (its id derived from kind, user, anchor and
    category, so that a re-sent alert has the same one)."""
    return al.Alert(
        alert_id=al.alert_id(spec.kind, user_id, spec.anchor_ms, spec.category),
        kind=spec.kind,
        user_id=user_id,
        category=spec.category,
        score=round(spec.score, 6),
        peak_score=round(st.peak_score if spec.peak is None else spec.peak, 6),
        half_life_hours=round(st.half_life_s / 3600.0, 3),
        event_time=al.rfc3339(spec.event_time_ms),
        emitted_at=al.rfc3339(now_ms),
        model_version=version,
        reasons=spec.reasons,
        related=spec.related,
    ).to_json()
