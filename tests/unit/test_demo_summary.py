"""The demo's judgement of dormant alerts: precision and recall after the training cut."""

from __future__ import annotations

import pandas as pd

from decay_cli.demo import dormant_outcome, dormant_recall

DAY = 86_400_000
T0 = 1_704_067_200_000
H = 90 * DAY


def iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def dormant(user: str, at: int) -> dict[str, str]:
    return {"kind": "dormant", "user_id": user, "event_time": iso(at)}


# a: buys on day 0 and day 200 (away 200 days); b: day 0 and day 30 (never away 90 days
# before day 30, then away to the end at day 400); c: day 300 only (away to the end, 100 days).
EVENTS = pd.DataFrame(
    {
        "user_id": ["a", "a", "b", "b", "c", "z"],
        "ts": [T0, T0 + 200 * DAY, T0, T0 + 30 * DAY, T0 + 300 * DAY, T0 + 400 * DAY],
    }
)


def test_precision_counts_alerts_from_the_cut_only() -> None:
    alerts = [
        dormant("a", T0 + 20 * DAY),  # before the cut: not judged
        dormant("a", T0 + 150 * DAY),  # a comes back on day 200, within 90 days: wrong
        dormant("b", T0 + 100 * DAY),  # b never comes back: right
    ]
    out = dormant_outcome(alerts, EVENTS, H, from_ms=T0 + 50 * DAY)
    assert (out.judged, out.stayed_away) == (2, 1)


def test_recall_is_the_share_of_away_episodes_with_an_alert_inside() -> None:
    # Away episodes whose 90 days end after day 50: a from day 0 (ends day 90), b from day 30
    # (ends 120), c from day 300 (ends 390); a from day 200 ends day 290 too. z has none.
    alerts = [dormant("a", T0 + 60 * DAY), dormant("c", T0 + 395 * DAY)]
    got = dormant_recall(alerts, EVENTS, H, from_ms=T0 + 50 * DAY)
    assert got.episodes == 4
    assert got.caught == 1  # a's first; c's alert came after its 90 days


def test_the_offline_judgement_of_deadlines_equals_the_demos() -> None:
    """decay_cli.serving_point judges a serving point from deadlines per event; the demo
    from the alerts a worker sent. On the alerts those deadlines raise, they agree."""
    import numpy as np

    from decay_cli.serving_point import GRACE_MS, Log, judge

    rng = np.random.default_rng(3)
    users = rng.integers(0, 60, 600).astype(str)
    ts = T0 + rng.integers(0, 400 * DAY, 600)
    log = Log.of(users, ts)
    order = np.lexsort((ts, users))
    users = users[order]
    deadlines = rng.choice([0.0, 20.0, 60.0, 89.0, 95.0, 200.0, np.inf], 600) * DAY
    alerts = [
        dormant(str(u), int(t + d))
        for u, t, n, d in zip(users, log.ts, log.nxt, deadlines, strict=True)
        if np.isfinite(d) and t + d < n and t + d <= log.end - GRACE_MS
    ]
    frame = pd.DataFrame({"user_id": users, "ts": log.ts})
    cut = T0 + 100 * DAY
    out = dormant_outcome(alerts, frame, H, from_ms=cut)
    got = dormant_recall(alerts, frame, H, from_ms=cut)
    mine = judge(log, deadlines, H, cut)
    assert (mine.judged, mine.episodes) == (out.judged, got.episodes)
    assert (mine.precision, mine.recall) == (out.share, got.share)
    assert 0 < got.caught < got.episodes and 0 < out.stayed_away < out.judged


def test_a_short_window_inside_one_visit_still_gives_the_typical_gap() -> None:
    import numpy as np

    from decay.window import Window
    from stream_app.alerting import typical_gap as _typical_gap

    minute, day = 60_000, DAY
    ts = np.array([T0 + 10 * day + i * minute for i in range(10)], dtype=np.int64)
    w = Window(ts, np.zeros(10, np.uint8), np.full(10, 255, np.uint8), np.zeros(10, np.float32),
               (), n_total=30, first_ts_ms=T0)  # fmt: skip
    assert _typical_gap(w, sessions=1) is None
    assert _typical_gap(w, sessions=3) == (ts[-1] - T0) / 2
