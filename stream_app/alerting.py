"""What each alert says and when the per-event rules raise one, free of the batch loop.

The processor calls these on a user's newest event (re-engaged, category decay), when a
deadline fires (dormant) and after an event (the score message); each returns what to emit,
and ``Processor._emit`` turns it into the alert record with its id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_str
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


# What a score message says, taken as the event is scored (a deadline that fires later in
# the batch changes the state): partition, user id, event id, event time, peak score,
# half-life (s), deadline (ms, 0: none).
ScoreRow = tuple[int, str, str, int, float, float, int]


def score_row(ukey: tuple[int, str], st: UserState, step: Step) -> ScoreRow:
    event = step.event
    return (
        ukey[0],
        ukey[1],
        event.event_id,
        event.ts_ms,
        st.peak_score,
        st.half_life_s,
        st.deadline_ms,
    )


# json.dumps of the message's dict, field by field: the same bytes (its separators, ASCII
# escapes and float repr) without its per-call dict walk, the times converted for all at
# once (one message per event cost a fifth of the batch thread: py-spy of bench/latency.py).
_SCORE = (
    '{"user_id": %s, "event_id": %s, "event_time": "%s", "score": %s, '
    '"half_life_hours": %s, "deadline": %s, "model_version": %s}'
)


def _number(x: float) -> str:
    """As json.dumps writes a number (float.__repr__; NaN, Infinity and ints its own way)."""
    return float.__repr__(x) if type(x) is float and x - x == 0.0 else json.dumps(x)


def score_messages(rows: Sequence[ScoreRow], version: str) -> list[OutAlert]:
    """The users' scores after their events, for the optional scores topic, in order."""
    if not rows:
        return []
    times = al.rfc3339_many([r[3] for r in rows])
    deadlines = al.rfc3339_many([r[6] for r in rows if r[6]])
    model = _json_str(version)
    out = []
    d = 0
    for (partition, user_id, event_id, _, peak, half_life_s, deadline_ms), time in zip(
        rows, times, strict=True
    ):
        if deadline_ms:
            deadline = f'"{deadlines[d]}"'
            d += 1
        else:
            deadline = "null"
        text = _SCORE % (
            _json_str(user_id),
            _json_str(event_id),
            time,
            _number(peak),
            _number(half_life_s / 3600.0),
            deadline,
            model,
        )
        out.append(OutAlert(partition, user_id, "score", text.encode()))
    return out


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
