"""What the user page shows, computed from a user's stored state (pure: the page draws it).

The interest curve covers the window's events up to "now" on the partition's event-time
clock (``queries.Clock``), and on through the pending deadline when there is one (what
happens if the user stays silent). After each event it is the scorer's exact curve for
the window up to that event (``Scorer.curves``); after the last one it is the curve the
stored scores came from (for a step model, its stored state: the window alone misses the
amounts and the events before it), so it crosses the threshold at the deadline, where the
dormant alert fires. Events before the window are counted, not kept: that part of the
user's period (first seen onwards) is drawn without a curve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from decay import btyd, lifetime
from decay.categories import category_probabilities
from decay.events import EventType
from decay.lapse_state import unpack_states
from decay.related import Suggestion
from decay.scoring import HOUR_S, AnyScorer, ExponentialDecayScorer
from decay.state import UserState
from decay.window import Window
from stream_app.explaining import explain_now
from stream_app.lapse_scorer import LapseScorer
from stream_app.onnx_scorer import OnnxScorer
from stream_app.queries import Clock

POINTS = 24  # per segment between two events, denser right after the event
TOP_CATEGORIES = 8


@dataclass(frozen=True)
class Curve:
    ts: list[int]  # ms
    interest: list[float]

    def at(self, t_ms: int) -> float | None:
        """Interest at ``t_ms``, None outside the drawn curve."""
        if not self.ts or not self.ts[0] <= t_ms <= self.ts[-1]:
            return None
        return float(np.interp(t_ms, self.ts, self.interest))


@dataclass(frozen=True)
class Mark:
    """An alert, placed on the curve at the event time it fired at."""

    ts_ms: int
    value: float
    kind: str
    category: str | None


@dataclass(frozen=True)
class CategoryRow:
    name: str
    share: float  # of the window's recent activity (recent events weigh more)
    interest: float  # interest now x share
    last_ms: int | None  # the user's last visit of it


@dataclass(frozen=True)
class UserView:
    user_id: str
    clock: Clock
    st: UserState
    curve: Curve
    start_ms: int  # first seen
    end_ms: int  # the axis end: now, or the pending deadline past it
    interest_now: float
    threshold: float
    meaning: str  # what the interest is, for this scorer
    model_version: str
    marks: list[Mark]
    categories: list[CategoryRow]
    alerts: list[dict[str, Any]]  # newest first
    step_model: bool  # the curve before the last event is recomputed from the window
    rebound_ms: int | None  # silent, the curve climbs back over the threshold here
    # Per fading category (its decay episode open), the related ones: Suggestion.entry.
    related: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)  # what moves interest now most

    @property
    def now_ms(self) -> int:
        return max(self.clock.now_ms, self.st.last_ts_ms)

    @property
    def event_types(self) -> list[str]:
        """The kinds of event the window holds, for the legend."""
        return [EventType(k).name.lower() for k in sorted(set(self.st.types.tolist()))]


def parse_ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def prefix_windows(st: UserState) -> list[Window]:
    w = st.window()
    n = w.ts.shape[0]
    return [
        Window(
            w.ts[:k],
            w.types[:k],
            w.cats[:k],
            w.prices[:k],
            w.categories,
            st.n_total - (n - k),
            st.first_ts_ms,
        )
        for k in range(1, n + 1)
    ]


def _segment(start: int, stop: int, exact: list[int], points: int) -> list[int]:
    """Times to draw from ``start`` to ``stop``: a grid denser near the start, and ``exact``."""
    grid = start + (stop - start) * np.linspace(0.0, 1.0, points) ** 2
    inside = [t for t in exact if start <= t <= stop]
    return sorted({*grid.astype(np.int64).tolist(), *inside})


def _stored_curve(scorer: AnyScorer, st: UserState, silent_s: npt.NDArray[np.float64]) -> Any:
    """The curve of a step model's stored state of the user, None if it holds none of this
    model's (as ``LapseScorer.curves`` computes it from a window's state)."""
    if not isinstance(scorer, LapseScorer) or not st.model_state:
        return None
    if scorer.resume([st.model_state], [None])[0] != st.model_state:
        return None  # another model's state: the stored scores are not this model's either
    p, k, beta = scorer.heads(unpack_states([st.model_state], scorer.tag, scorer.units))
    d = silent_s[None, :] / (scorer.unit_h * HOUR_S)
    if scorer.dropout == "exp":
        return lifetime.interest(k[:, None], beta[:, None], p[:, None], scorer.horizon, d)[0]
    return btyd.interest(p[:, None], k[:, None], beta[:, None], scorer.horizon, d)[0]


def interest_curve(st: UserState, scorer: AnyScorer, end_ms: int, exact: list[int]) -> Curve:
    """After each event of the window, the exact curve until the next event (or ``end_ms``),
    through the times ``exact`` (alerts, now, the deadline) exactly."""
    windows = prefix_windows(st)
    if not windows:
        return Curve([], [])
    starts = st.ts.tolist()
    stops = [*starts[1:], max(end_ms, starts[-1])]
    # the last segment runs to now and on through the deadline: often the longest
    times = [
        _segment(a, b, exact, POINTS if i < len(starts) - 1 else 4 * POINTS)
        for i, (a, b) in enumerate(zip(starts, stops, strict=True))
    ]
    width = max(len(t) for t in times)
    padded = np.array([t + [t[-1]] * (width - len(t)) for t in times], dtype=np.int64)
    silent_s = (padded - np.array(starts)[:, None]) / 1000.0
    values = np.array(scorer.curves(windows, silent_s), dtype=np.float64)
    last = _stored_curve(scorer, st, silent_s[-1])
    if last is not None:
        values[-1] = last
    ts, interest = [], []
    for row, t in enumerate(times):  # without the padding
        ts.extend(t)
        interest.extend(values[row, : len(t)].tolist())
    return Curve(ts, interest)


def rebound(curve: Curve, last_ms: int, threshold: float) -> int | None:
    """When, after the last event, the curve that fell below ``threshold`` rises over it
    again with no event (a model whose last hazard bin has a constant rate can do that)."""
    fell = False
    for t, v in zip(curve.ts, curve.interest, strict=True):
        if t <= last_ms:
            continue
        if v < threshold:
            fell = True
        elif fell:
            return t
    return None


def meaning(scorer: AnyScorer) -> str:
    if isinstance(scorer, ExponentialDecayScorer):
        return (
            "Interest is the exponential-decay baseline: 1 right after an event, halving "
            f"every {scorer.half_life_s / 3600:.0f} h of silence."
        )
    if not isinstance(scorer, LapseScorer | OnnxScorer):
        return f"Interest is the score of {scorer.version}."
    horizon = scorer.spec.horizon_h
    days = f"{horizon / 24:g} days" if horizon >= 48 else f"{horizon:g} hours"
    return (
        f"Interest is the model's probability that the user acts again within {days}, "
        "given the silence so far."
    )


def _marks(alerts: list[dict[str, Any]], curve: Curve) -> list[Mark]:
    marks = []
    for a in alerts:
        t = parse_ms(a["event_time"])
        on_curve = curve.at(t)
        value = float(a.get("score", 0.0)) if on_curve is None else on_curve
        marks.append(Mark(t, value, str(a["kind"]), a.get("category")))
    return marks


def _categories(st: UserState, interest_now: float) -> list[CategoryRow]:
    shares = category_probabilities(st.window())
    rows = []
    for name, share in sorted(shares.items(), key=lambda kv: -kv[1])[:TOP_CATEGORIES]:
        seen = st.engagement.get(name)
        last = seen.last_ts_ms if seen is not None and seen.last_ts_ms else None
        rows.append(CategoryRow(name, share, interest_now * share, last))
    return rows


def user_view(
    user_id: str,
    st: UserState,
    scorer: AnyScorer,
    threshold: float,
    clock: Clock,
    related: Mapping[str, Sequence[Suggestion]] | None = None,
) -> UserView:
    """``related``: per fading category, its related ones (CategoryVectors.fading), scored
    here with the interest now."""
    alerts = [json.loads(a.payload) for a in reversed(st.alerts)]
    alert_ms = [parse_ms(a["event_time"]) for a in alerts]
    now = max(clock.now_ms, st.last_ts_ms)
    end = max(now, st.deadline_ms, st.dormant_since_ms, *alert_ms)
    exact = [now, *([st.deadline_ms] if st.deadline_ms else []), *alert_ms]
    curve = interest_curve(st, scorer, end, exact) if st.n_events else Curve([], [])
    interest_now = curve.at(now) if st.n_events else None
    level = 0.0 if interest_now is None else interest_now
    return UserView(
        user_id=user_id,
        clock=clock,
        st=st,
        curve=curve,
        start_ms=min([st.first_ts_ms, *alert_ms]) if st.n_events else now,
        end_ms=end,
        interest_now=level,
        threshold=threshold,
        meaning=meaning(scorer),
        model_version=scorer.version,
        marks=_marks(alerts, curve),
        categories=_categories(st, level),
        alerts=alerts,
        step_model=isinstance(scorer, LapseScorer),
        rebound_ms=rebound(curve, st.last_ts_ms, threshold),
        related={c: [s.entry(level) for s in found] for c, found in (related or {}).items()},
        explanation=explain_now(scorer, st, now),
    )
