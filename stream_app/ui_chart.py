"""The user page's chart: interest over the user's tracked period, as inline SVG.

A time axis with dates (UTC, event time); the curve, solid up to now and dashed after (what
it does if the user stays silent); the threshold; "now" and the pending deadline; a dot per
event of the window (colour: its type) and a mark per alert where it fired; the stretch
before the window, whose events are counted but not kept, shaded. The legend says all that.
"""

from __future__ import annotations

import html

from decay.alerts import rfc3339
from decay.events import EventType
from stream_app.time_axis import date_ticks
from stream_app.user_view import UserView

W, H = 860, 300
LEFT, RIGHT, TOP, BOTTOM = 44, 64, 16, 44
TYPE_COLOURS = {
    "view": "#8c8c8c",
    "click": "#4c78a8",
    "cart": "#f58518",
    "purchase": "#54a24b",
    "wishlist": "#b279a2",
    "search": "#72b7b2",
    "remove_from_cart": "#e45756",
    "other": "#9d755d",
}
ALERT_COLOURS = {"dormant": "#d62728", "category_decay": "#9467bd", "reengaged": "#2ca02c"}
CURVE = "#1f5fa8"


class _Frame:
    def __init__(self, t0: int, t1: int) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / (self.t1 - self.t0) * (W - LEFT - RIGHT)

    @staticmethod
    def y(v: float) -> float:
        return H - BOTTOM - min(max(v, 0.0), 1.0) * (H - TOP - BOTTOM)


def _axes(f: _Frame, view: UserView) -> list[str]:
    y0, y1 = f.y(0), f.y(1)
    parts = [
        f'<line x1="{LEFT}" y1="{y0}" x2="{W - RIGHT}" y2="{y0}" stroke="#999"/>',
        f'<line x1="{LEFT}" y1="{y0}" x2="{LEFT}" y2="{y1}" stroke="#999"/>',
    ]
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{LEFT - 6}" y="{f.y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for t, label in date_ticks(f.t0, f.t1, most=10):
        x = f.x(t)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 5}" stroke="#999"/>'
            f'<text class="tick" x="{x:.1f}" y="{y0 + 18}" text-anchor="middle">{label}</text>'
        )
    yt = f.y(view.threshold)
    parts.append(
        f'<line class="threshold" x1="{LEFT}" y1="{yt:.1f}" x2="{W - RIGHT}" y2="{yt:.1f}" '
        f'stroke="#d62728" stroke-dasharray="4 3"/>'
        f'<text x="{W - RIGHT + 4}" y="{yt + 4:.1f}">θ {view.threshold:g}</text>'
    )
    return parts


def _untracked(f: _Frame, view: UserView) -> list[str]:
    st = view.st
    earlier = st.n_total - st.n_events
    if earlier <= 0 or not st.n_events:
        return []
    x0, x1 = f.x(view.start_ms), f.x(int(st.ts[0]))
    parts = [
        f'<rect class="untracked" x="{x0:.1f}" y="{f.y(1)}" width="{max(x1 - x0, 1):.1f}" '
        f'height="{f.y(0) - f.y(1)}" fill="#eee"/>'
    ]
    if x1 - x0 > 160:  # else the legend says it
        parts.append(f'<text x="{x0 + 4:.1f}" y="{f.y(1) + 14}">{earlier} earlier events</text>')
    return parts


def _curve(f: _Frame, view: UserView) -> list[str]:
    now = view.now_ms
    pts = list(zip(view.curve.ts, view.curve.interest, strict=True))
    past = [(t, v) for t, v in pts if t <= now]
    future = [(t, v) for t, v in pts if t >= now]

    def line(points: list[tuple[int, float]], cls: str, dash: str) -> str:
        xy = " ".join(f"{f.x(t):.1f},{f.y(v):.1f}" for t, v in points)
        return (
            f'<polyline class="{cls}" fill="none" stroke="{CURVE}" stroke-width="2" '
            f'{dash}points="{xy}"/>'
        )

    parts = [line(past, "interest", "")]
    if len(future) > 1:
        parts.append(line(future, "forecast", 'stroke-dasharray="5 4" '))
    xn = f.x(now)
    parts.append(
        f'<line class="now" x1="{xn:.1f}" y1="{f.y(0)}" x2="{xn:.1f}" y2="{f.y(1)}" '
        f'stroke="#444"/><text x="{xn - 3:.1f}" y="{TOP - 4}" text-anchor="end">now</text>'
    )
    if view.st.deadline_ms:
        xd = f.x(view.st.deadline_ms)
        parts.append(
            f'<line class="deadline" x1="{xd:.1f}" y1="{f.y(0)}" x2="{xd:.1f}" y2="{f.y(1)}" '
            f'stroke="#f58518" stroke-dasharray="6 3"/>'
            f'<text x="{xd + 3:.1f}" y="{TOP + 10}">deadline</text>'
        )
    return parts


def _dots(f: _Frame, view: UserView) -> list[str]:
    st = view.st
    parts = []
    for t, kind in zip(st.ts.tolist(), st.types.tolist(), strict=True):
        name = EventType(kind).name.lower()
        parts.append(
            f'<circle class="event" cx="{f.x(t):.1f}" cy="{f.y(0):.1f}" r="4" '
            f'fill="{TYPE_COLOURS[name]}"><title>{name} · {_when(t)}</title></circle>'
        )
    for m in view.marks:
        x, y = f.x(m.ts_ms), f.y(m.value)
        what = m.kind + (f" · {m.category}" if m.category else "")
        parts.append(
            f'<path class="alert-mark" d="M{x:.1f},{y - 7:.1f} l6,7 l-6,7 l-6,-7 z" '
            f'fill="{ALERT_COLOURS.get(m.kind, "#333")}" stroke="#fff">'
            f"<title>{html.escape(what)} · {_when(m.ts_ms)}</title></path>"
        )
    return parts


def _when(t: int) -> str:
    return rfc3339(t)[:16].replace("T", " ")


def detail_range(view: UserView) -> tuple[int, int] | None:
    """The window's events through the deadline or the dormant alert, when they take too
    little of the whole period to be read there."""
    st = view.st
    if not st.n_events:
        return None
    t0, t1 = int(st.ts[0]), max(st.last_ts_ms, st.deadline_ms, st.dormant_since_ms)
    t1 += max((t1 - t0) // 20, 3_600_000)
    return (t0, t1) if t1 - t0 < 0.4 * (view.end_ms - view.start_ms) else None


def chart(view: UserView, span: tuple[int, int] | None = None) -> str:
    """The whole tracked period, or ``span`` (ms) of it."""
    if not view.curve.ts:
        return "<p>No events.</p>"
    whole = span is None
    if span is None:
        span = (view.start_ms, view.end_ms + max((view.end_ms - view.start_ms) // 40, 60_000))
    f = _Frame(*span)
    clip = "plot-all" if whole else "plot-detail"
    label = "interest over time" if whole else "interest over the window's events"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'aria-label="{label}" font-size="11">'
        f'<clipPath id="{clip}"><rect x="{LEFT - 8}" y="0" width="{W - LEFT - RIGHT + 16}" '
        f'height="{H - BOTTOM + 8}"/></clipPath>',
        *_axes(f, view),
        f'<g clip-path="url(#{clip})">',
        *_untracked(f, view),
        *_curve(f, view),
        *_dots(f, view),
        "</g></svg>",
    ]
    return "".join(parts)


def _swatch(shape: str) -> str:
    return f'<svg width="22" height="14" aria-hidden="true">{shape}</svg>'


def legend(view: UserView) -> str:
    """What each mark of the chart is: only the kinds this chart shows."""
    items = [
        (_swatch(f'<line x1="1" y1="7" x2="21" y2="7" stroke="{CURVE}" stroke-width="2"/>'),
         "interest"),
        (_swatch('<line x1="1" y1="7" x2="21" y2="7" stroke="#d62728" stroke-dasharray="4 3"/>'),
         f"threshold θ = {view.threshold:g}"),
    ]  # fmt: skip
    if view.end_ms > view.now_ms:
        dashed = (
            f'<line x1="1" y1="7" x2="21" y2="7" stroke="{CURVE}" stroke-width="2" '
            'stroke-dasharray="5 4"/>'
        )
        items.append((_swatch(dashed), "interest if the user stays silent"))
    if view.st.deadline_ms:
        items.append(
            (_swatch('<line x1="11" y1="0" x2="11" y2="14" stroke="#f58518"/>'), "deadline")
        )
    if view.st.n_total > view.st.n_events:
        earlier = view.st.n_total - view.st.n_events
        items.append(
            (_swatch('<rect width="22" height="14" fill="#eee"/>'),
             f"{earlier} earlier events: counted, not kept")
        )  # fmt: skip
    for name in view.event_types:
        dot = f'<circle cx="11" cy="7" r="4" fill="{TYPE_COLOURS[name]}"/>'
        items.append((_swatch(dot), f"{name} event"))
    for kind in sorted({m.kind for m in view.marks}):
        mark = f'<path d="M11,0 l6,7 l-6,7 l-6,-7 z" fill="{ALERT_COLOURS.get(kind, "#333")}"/>'
        items.append((_swatch(mark), f"{kind} alert"))
    return (
        '<p class="legend">'
        + "".join(f'<span class="key">{s} {html.escape(label)}</span>' for s, label in items)
        + "</p>"
    )
