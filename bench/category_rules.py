"""The worker's category rules on a simulated log, without the processor around them.

``bench/categories.py`` tunes and measures ``category_decay`` over millions of events; the
processor (scoring, window, state records) costs most of the time and does not change which
category alerts fire. This module calls, per user in event order, exactly what the stream
path calls (``stream_app.alerting.count_session`` then ``category_drops``): ``session_of``
and ``add_event`` on every event, ``review`` with the categories of the user's last 10
events. A log sorted by time (the simulator's) has every event as its user's newest, which is
when the processor reviews. ``tests/unit/test_engagement.py`` checks that the alerts equal the
processor's on a simulated log.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from decay.engagement import Engagement, EngagementRules, add_event, review, session_of

RECENT = 10  # stream_app.alerting.category_drops reads the window's last 10 events


def rule_alerts(events: pd.DataFrame, rules: EngagementRules) -> list[dict[str, Any]]:
    """The ``category_decay`` alerts of ``events`` (the contract's columns, sorted by ts):
    user, category, event time (ms) and the figures the alert reports."""
    category = events["category"].astype(object)
    frame = pd.DataFrame(
        {
            "user": events["user_id"].astype(str).to_numpy(),
            "ts": events["ts"].to_numpy(dtype=np.int64),
            "category": category.where(category.notna(), None).to_numpy(),
        }
    )
    out: list[dict[str, Any]] = []
    for user, group in frame.groupby("user", sort=False):
        out += _user_alerts(str(user), group["ts"].tolist(), group["category"].tolist(), rules)
    return out


def _user_alerts(
    user: str, times: list[int], categories: list[str | None], rules: EngagementRules
) -> list[dict[str, Any]]:
    book: dict[str, Engagement] = {}
    recent: deque[str | None] = deque(maxlen=RECENT)
    sessions, previous, out = 0, 0, []
    for ts, category in zip(times, categories, strict=True):
        before, sessions = sessions, session_of(sessions, previous, ts, rules)
        add_event(book, category, ts, sessions, sessions > before, rules)
        previous = ts
        recent.append(category)
        for d in review(book, ts, sessions, recent, rules):
            out.append(
                {
                    "user_id": user,
                    "category": d.category,
                    "ts": ts,
                    "share": d.share,
                    "base": d.base,
                    "silent_ms": d.silent_ms,
                    "sessions_since": d.sessions_since,
                }
            )
    return out
