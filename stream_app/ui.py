"""A plain page about one user, server-rendered (HTML + inline SVG, no script, no CDN).

What it shows is computed in ``user_view`` (interest on the partition's event-time clock,
the curve over the user's tracked period through the deadline and the alerts); the chart is
``ui_chart``. Alerts are listed with their reasons, and with the related categories and the
explanation when an alert carries them (``related``: [{"category", "score"}], ``explanation``:
a sentence or a list of them), and which recent events move the user's interest now most.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from decay.alerts import rfc3339
from decay.related import Suggestion
from decay.scoring import AnyScorer
from decay.state import UserState
from stream_app.queries import Clock
from stream_app.ui_chart import chart, detail_range, legend
from stream_app.user_view import UserView, user_view

STYLE = (
    "body{font-family:'DejaVu Sans',sans-serif,'Noto Color Emoji';margin:2em;color:#222;"
    "max-width:900px}td,th{padding:2px 8px;text-align:left}th{font-weight:normal;color:#666}"
    ".legend .key{margin-right:1.2em;white-space:nowrap}.legend svg{vertical-align:middle}"
    ".clock{color:#555}.related,.explanation{color:#444;margin:2px 0}"
)

# Why an older dormant alert may sit a little off the threshold with a step model.
STEP_NOTE = (
    '<p class="note">After the last event the curve is the model\'s stored state of the '
    "user. Before it, the curve is recomputed from the window's events (the stream stepped "
    "each with its quantity, which the window does not keep), so it may differ a little from "
    "what the stream computed at the time.</p>"
)


def _day(ms: int) -> str:
    return rfc3339(ms)[:16].replace("T", " ")


def _facts(view: UserView) -> str:
    st = view.st
    if st.dormant_since_ms:
        status = f"dormant since {_day(st.dormant_since_ms)}"
    elif st.deadline_ms:
        status = f"becomes dormant at {_day(st.deadline_ms)} if silent until then"
    else:
        status = "no dormancy deadline (interest never falls below θ)"
    return (
        f"<p>{st.n_total} events seen since {_day(st.first_ts_ms)} (the window keeps the "
        f"last {st.n_events}); last event {_day(st.last_ts_ms)}.</p>"
        f'<p class="clock">Clock: {html.escape(view.clock.words())}.</p>'
        f'<p>Interest now <b class="interest-now">{view.interest_now:.2f}</b> (right after '
        f"the last event {st.peak_score:.2f}, half-life {st.half_life_s / 3600:.1f} h); "
        f"{html.escape(status)}; model {html.escape(view.model_version)}.</p>" + _why_now(view)
    )


def _why_now(view: UserView) -> str:
    """Which recent events move interest now most (occlusion, stream_app.explaining)."""
    if not view.explanation:
        return ""
    text = html.escape("; ".join(view.explanation))
    return f'<p class="explanation-now">What moves interest now most: {text}.</p>'


def _threshold_words(view: UserView) -> str:
    return (
        f'<p class="threshold-meaning">{html.escape(view.meaning)} Below θ = '
        f"{view.threshold:g} the user counts as dormant: with no new event the curve crosses "
        "θ at the deadline, which is where the dormant alert fires; the user's next event "
        "ends the episode (reengaged).</p>"
        + (STEP_NOTE if view.step_model else "")
        + _rebound_words(view)
    )


def _rebound_words(view: UserView) -> str:
    if view.rebound_ms is None:
        return ""
    days = (view.rebound_ms - view.st.last_ts_ms) / 86_400_000
    return (
        '<p class="note rebound">With no new event this model\'s curve climbs back over θ '
        f"from {_day(view.rebound_ms)} on, {days:.0f} days after the last event (beyond the "
        "silences it was trained on): the stream counts the user dormant from the first "
        "crossing until their next event all the same.</p>"
    )


def _charts(view: UserView) -> str:
    span = detail_range(view)
    detail = "" if span is None else f"<h3>The window's events in detail</h3>{chart(view, span)}"
    return chart(view) + detail + legend(view) + _threshold_words(view)


def _categories(view: UserView) -> str:
    if not view.categories:
        return "<p>No categories in the window.</p>"
    rows = [
        "<tr><th>category</th><th colspan=2>interest now × share</th><th>share of recent "
        "activity</th><th>last visit</th></tr>"
    ]
    for c in view.categories:
        last = _day(c.last_ms) if c.last_ms else ""
        rows.append(
            f'<tr class="category"><td class="name">{html.escape(c.name)}</td><td><div '
            f'style="background:#54a24b;height:12px;width:{max(c.interest * 300, 1):.0f}px">'
            f"</div></td><td>{c.interest:.2f}</td><td>{c.share:.0%}</td><td>{last}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _fading(view: UserView) -> str:
    """The user's fading categories now, each with its related ones."""
    if not view.related:
        return ""
    items = []
    for fading, found in view.related.items():
        names = ", ".join(
            f'<span class="suggestion">{html.escape(str(r["category"]))}</span> '
            f"({float(r['score']):.2f}{', rising' if r.get('rising') else ''})"
            for r in found
        )
        items.append(
            f'<li class="related-now"><b>{html.escape(fading)}</b> faded; '
            + (
                f"related categories still strong: {names}"
                if names
                else "no related category where the user's interest is high or rising"
            )
            + "</li>"
        )
    return (
        "<h3>Related categories</h3><p>For each category whose decay alert is open: the "
        "categories close to it in meaning (sentence embeddings of the names) where this "
        "user's interest is still high or rising, each with interest now × its share of the "
        "user's sessions (decayed visits, as the category alerts count them).</p>"
        f"<ul>{''.join(items)}</ul>"
    )


def _related(a: dict[str, Any]) -> str:
    related = a.get("related")
    if not related:
        return ""
    names = [
        f"{html.escape(str(r['category']))} ({float(r['score']):.2f})"
        if isinstance(r, dict)
        else html.escape(str(r))
        for r in related
    ]
    return f'<p class="related">related categories still strong: {", ".join(names)}</p>'


def _explanation(a: dict[str, Any]) -> str:
    why = a.get("explanation")
    if not why:
        return ""
    text = "; ".join(map(str, why)) if isinstance(why, list) else str(why)
    return f'<p class="explanation">why: {html.escape(text)}</p>'


def _alerts(view: UserView) -> str:
    items = "".join(
        f'<li class="alert"><b>{html.escape(a["kind"])}</b>'
        f"{' · ' + html.escape(a['category']) if a.get('category') else ''} at "
        f"{html.escape(a['event_time'][:16].replace('T', ' '))}: "
        f"{html.escape('; '.join(a.get('reasons', [])))}{_related(a)}{_explanation(a)}</li>"
        for a in view.alerts
    )
    return f"<ul>{items or '<li>none</li>'}</ul>"


def render(view: UserView) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>decay · {html.escape(view.user_id)}</title><style>{STYLE}</style>"
        f"</head><body><h1>User {html.escape(view.user_id)}</h1>{_facts(view)}"
        f"<h2>Interest over time</h2>{_charts(view)}"
        f"<h2>Category interest now</h2>{_categories(view)}{_fading(view)}"
        f"<h2>Alerts</h2>{_alerts(view)}</body></html>"
    )


def user_page(
    user_id: str,
    st: UserState,
    scorer: AnyScorer,
    threshold: float,
    clock: Clock,
    related: Mapping[str, Sequence[Suggestion]] | None = None,
) -> str:
    return render(user_view(user_id, st, scorer, threshold, clock, related))
