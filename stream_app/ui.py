"""A plain page about one user, server-rendered (HTML + inline SVG, no script, no CDN).

The interest curve is drawn from the scores the worker's scorer gives each prefix of the
user's window (the interest right after each event), decaying between events along the
curve the stored parameters describe; the events are marked on it, and so is the deadline.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

import numpy as np

from decay.alerts import rfc3339
from decay.categories import category_probabilities
from decay.scoring import AnyScorer
from decay.state import UserState
from decay.window import Window

W, H, PAD = 760, 260, 40
TYPE_COLOURS = ("#8c8c8c", "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#b279a2")


@dataclass(frozen=True)
class Curve:
    ts: list[int]  # ms
    interest: list[float]


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


def interest_curve(st: UserState, scorer: AnyScorer, end_ms: int, points: int = 12) -> Curve:
    """After each event of the window, the exact curve until the next event (or ``end_ms``)."""
    windows = prefix_windows(st)
    if not windows:
        return Curve([], [])
    starts = st.ts.tolist()
    stops = [*starts[1:], end_ms]
    frac = np.linspace(0.0, 1.0, points)
    spans = np.maximum(np.array(stops, dtype=np.float64) - np.array(starts), 0.0)
    silent_ms = spans[:, None] * frac[None, :]  # [events, points]
    values = scorer.curves(windows, silent_ms / 1000.0)
    ts = (np.array(starts, dtype=np.float64)[:, None] + silent_ms).astype(np.int64)
    return Curve(ts.ravel().tolist(), values.ravel().tolist())


def _svg(curve: Curve, st: UserState, threshold: float) -> str:
    if not curve.ts:
        return "<p>No events.</p>"
    t0, t1 = curve.ts[0], max(curve.ts[-1], curve.ts[0] + 1)

    def x(t: float) -> float:
        return PAD + (t - t0) / (t1 - t0) * (W - 2 * PAD)

    def y(v: float) -> float:
        return H - PAD - v * (H - 2 * PAD)

    points = " ".join(
        f"{x(t):.1f},{y(v):.1f}" for t, v in zip(curve.ts, curve.interest, strict=True)
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'aria-label="interest over time">',
        f'<line x1="{PAD}" y1="{y(0)}" x2="{W - PAD}" y2="{y(0)}" stroke="#999"/>',
        f'<line x1="{PAD}" y1="{y(0)}" x2="{PAD}" y2="{y(1)}" stroke="#999"/>',
        f'<text x="4" y="{y(1) + 4}" font-size="11">1.0</text>',
        f'<text x="4" y="{y(0) + 4}" font-size="11">0</text>',
        f'<line x1="{PAD}" y1="{y(threshold):.1f}" x2="{W - PAD}" y2="{y(threshold):.1f}" '
        f'stroke="#e45756" stroke-dasharray="4 3"/>',
        f'<text x="{W - PAD + 2}" y="{y(threshold) + 4:.1f}" font-size="10">θ</text>',
        f'<polyline class="interest" fill="none" stroke="#4c78a8" stroke-width="2" '
        f'points="{points}"/>',
    ]
    for t, kind in zip(st.ts.tolist(), st.types.tolist(), strict=True):
        colour = TYPE_COLOURS[kind % len(TYPE_COLOURS)]
        parts.append(
            f'<circle class="event" cx="{x(t):.1f}" cy="{y(0):.1f}" r="4" fill="{colour}">'
            f"<title>{html.escape(rfc3339(t))}</title></circle>"
        )
    if st.deadline_ms and t0 <= st.deadline_ms <= t1:
        dx = x(st.deadline_ms)
        parts.append(
            f'<line class="deadline" x1="{dx:.1f}" y1="{y(0)}" x2="{dx:.1f}" y2="{y(1)}" '
            f'stroke="#f58518" stroke-dasharray="6 3"/>'
            f'<text x="{dx + 3:.1f}" y="{y(1) + 10}" font-size="11">deadline</text>'
        )
    parts.append(
        f'<text x="{PAD}" y="{H - 8}" font-size="11">{html.escape(rfc3339(t0)[:16])}</text>'
        f'<text x="{W - PAD - 100}" y="{H - 8}" font-size="11">'
        f"{html.escape(rfc3339(t1)[:16])}</text></svg>"
    )
    return "".join(parts)


def _bars(st: UserState, interest_now: float) -> str:
    shares = category_probabilities(st.window())
    if not shares:
        return "<p>No categories in the window.</p>"
    rows = []
    for name, p in sorted(shares.items(), key=lambda kv: -kv[1])[:8]:
        value = interest_now * p
        rows.append(
            f'<tr class="category"><td>{html.escape(name)}</td><td><div style="background:'
            f'#54a24b;height:12px;width:{max(value * 300, 1):.0f}px"></div></td>'
            f"<td>{value:.2f}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def user_page(user_id: str, st: UserState, scorer: AnyScorer, threshold: float, now_ms: int) -> str:
    last = st.last_ts_ms
    # Replayed history ends long before the wall clock: draw up to the deadline instead.
    end = max(last, st.deadline_ms or last)
    end = end + max((end - st.first_ts_ms) // 10, 3_600_000)
    curve = interest_curve(st, scorer, end)
    silent_s = max(now_ms - last, 0) / 1000.0
    interest_now = scorer.interest(st.peak_score, st.half_life_s, silent_s)
    alerts = [json.loads(a.payload) for a in reversed(st.alerts)]
    items = "".join(
        f'<li class="alert"><b>{html.escape(a["kind"])}</b>'
        f"{' · ' + html.escape(a['category']) if a.get('category') else ''} at "
        f"{html.escape(a['event_time'][:16])}: "
        f"{html.escape('; '.join(a.get('reasons', [])))}</li>"
        for a in alerts
    )
    status = (
        "dormant since " + rfc3339(st.dormant_since_ms)[:10]
        if st.dormant_since_ms
        else ("deadline " + rfc3339(st.deadline_ms)[:16] if st.deadline_ms else "no deadline")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>decay · {html.escape(user_id)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;color:#222}td{padding:2px 8px}</style>"
        f"</head><body><h1>User {html.escape(user_id)}</h1>"
        f"<p>{st.n_total} events seen, last at {html.escape(rfc3339(last)[:16])}; "
        f"interest now {interest_now:.2f} (peak {st.peak_score:.2f}, half-life "
        f"{st.half_life_s / 3600:.1f} h); {html.escape(status)}; "
        f"model {html.escape(scorer.version)}</p>"
        f"<h2>Interest over time</h2>{_svg(curve, st, threshold)}"
        f"<h2>Category interest now</h2>{_bars(st, interest_now)}"
        f"<h2>Recent alerts</h2><ul>{items or '<li>none</li>'}</ul></body></html>"
    )
