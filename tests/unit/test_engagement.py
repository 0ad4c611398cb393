"""Category engagement (decay.engagement) and the category_decay alerts it drives."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from datetime import datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from decay.engagement import (
    DAY_MS,
    Engagement,
    EngagementRules,
    add_event,
    at_least,
    at_most,
    none_in,
    review,
    session_of,
)
from decay.scoring import ExponentialDecayScorer
from decay.state import UserState, decode_state, encode_state
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.store import MemoryStore

HOUR = 3_600_000
T0 = 1_704_067_200_000
SCORER = ExponentialDecayScorer(half_life_s=24 * 3600.0)
EAGER = EngagementRules(
    min_visits=2, alpha=0.5, run_alpha=0.5, min_silence_ms=HOUR, min_peak=0.2, half_life_ms=DAY_MS
)


def test_none_in_is_the_beta_binomial_chance_of_a_run_elsewhere() -> None:
    # 5 visits in 5 sessions, uniform prior: P(none in the next one) = 1/7.
    assert abs(none_in(5, 5, 1) - 1 / 7) < 1e-12
    assert none_in(5, 5, 0) == 1.0
    # More evidence of the same share, or a longer run, makes the run less likely.
    assert none_in(20, 40, 10) < none_in(2, 4, 10)
    assert none_in(20, 40, 12) < none_in(20, 40, 10)


def test_at_most_and_at_least_are_the_beta_binomial_tails() -> None:
    from scipy.stats import betabinom

    for k, m, a, b in [
        (0, 10, 3.0, 5.0),
        (3, 20, 10.5, 30.2),
        (25, 20, 2.0, 2.0),
        (4, 40, 1.0, 9.0),
    ]:
        assert abs(at_most(k, m, a, b) - float(betabinom.cdf(k, m, a, b))) < 1e-9
        assert abs(at_least(k, m, a, b) - float(betabinom.sf(k - 1, m, a, b))) < 1e-9
    # The upper tail is summed, not 1 - the CDF: a tiny value keeps its digits.
    tiny = at_least(40, 40, 1.0, 30.0)
    assert 0 < tiny < 1e-12 and abs(tiny / float(betabinom.pmf(40, 40, 1.0, 30.0)) - 1) < 1e-6


def replay(log: list[tuple[int, str]], rules: EngagementRules) -> list[tuple[int, str]]:
    """The alerts of ``review`` on each event of a user's log (one session per event)."""
    book: dict[str, Engagement] = {}
    sessions, last, recent, alerts = 0, 0, [], []
    for ts, category in log:
        sessions = session_of(sessions, last, ts, rules)
        add_event(book, category, ts, sessions, True, rules)
        last, recent = ts, [*recent, category][-10:]
        alerts += [(ts, d.category) for d in review(book, ts, sessions, recent, rules)]
    return alerts


def test_a_fall_alerts_once_per_episode_and_a_recovery_opens_the_next() -> None:
    """Books is every other daily session for 120 days, then one in 30 for 90 (a fall with
    stray visits, not a silence) while toys takes half of the sessions, back to every other
    for 120, and falls again."""
    pattern = [2] * 120 + [30] * 90 + [2] * 120 + [30] * 90

    def category(day: int, n: int) -> str:
        if day % n == 0:
            return "books"
        return "toys" if n == 30 and day % 2 else f"c{day % 3}"

    log = [(T0 + d * DAY_MS, category(d, n)) for d, n in enumerate(pattern)]
    alerts = [(int((ts - T0) // DAY_MS), c) for ts, c in replay(log, EngagementRules())]
    assert [c for _, c in alerts] == ["books", "books"], alerts
    assert 120 < alerts[0][0] < 210 and 330 < alerts[1][0] < 420, alerts


def test_a_fall_spread_over_the_other_categories_is_not_a_move() -> None:
    """The same fall with the sessions spread evenly over three categories: no category
    rose, so no alert (the user did not move to something else)."""
    pattern = [2] * 120 + [30] * 90
    log = [(T0 + d * DAY_MS, "books" if d % n == 0 else f"c{d % 3}") for d, n in enumerate(pattern)]
    assert replay(log, EngagementRules()) == []
    assert replay(log, replace(EngagementRules(), rise_alpha=1.0)) != []


def test_a_steady_share_with_gaps_does_not_decay() -> None:
    """Books holds a third of the sessions for a year, in bursts with week-long gaps."""
    rng = np.random.default_rng(5)
    log = [(T0 + d * DAY_MS, "books" if rng.random() < 1 / 3 else f"c{d % 4}") for d in range(365)]
    assert replay(log, EngagementRules()) == []


def test_a_category_the_user_keeps_coming_back_to_never_decays() -> None:
    """Books opens a session every third day for a year, among daily sessions elsewhere."""
    rules = EngagementRules()
    book: dict[str, Engagement] = {}
    sessions, last, recent = 0, 0, []
    for day in range(365):
        ts = T0 + day * DAY_MS
        category = "books" if day % 3 == 0 else f"c{day % 5}"
        sessions = session_of(sessions, last, ts, rules)
        add_event(book, category, ts, sessions, True, rules)
        last, recent = ts, [*recent, category][-10:]
        assert review(book, ts, sessions, recent, rules) == [], day


def records_of(user_events: list[tuple[int, str]]) -> list[Record]:
    out = []
    for offset, (ts, category) in enumerate(user_events):
        body = {"event_id": f"e{offset}", "user_id": "u", "ts": ts, "type": "view"}
        out.append(Record(0, offset, b"u", json.dumps({**body, "category": category}).encode()))
    return out


def category_alerts(records: list[Record], rules: EngagementRules, batch: int) -> list[dict]:
    store = MemoryStore()
    config = ProcessorConfig(grace_ms=HOUR, threshold=0.25, engagement=rules)
    proc = Processor(config, SCORER, store, lambda: T0 + 400 * DAY_MS)
    alerts = []
    for i in range(0, len(records), batch):
        out = proc.process(records[i : i + batch])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        alerts += [json.loads(a.payload) for a in out.alerts if a.kind == "category_decay"]
    return alerts


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


logs = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=4 * DAY_MS // 60_000),  # gap, minutes
        st.sampled_from(["books", "toys", "garden"]),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(logs, st.sampled_from([1, 7, 500]))
def test_no_category_decay_while_the_category_holds_half_of_the_last_10_events(
    log: list[tuple[int, str]], batch: int
) -> None:
    events, ts = [], T0
    for gap_min, category in log:
        ts += gap_min * 60_000
        events.append((ts, category))
    for rules in (EAGER, EngagementRules()):
        for alert in category_alerts(records_of(events), rules, batch):
            t = ms(alert["event_time"])
            last10 = [c for when, c in events if when <= t][-10:]
            assert 2 * last10.count(alert["category"]) < len(last10), (alert, last10)


def test_the_eager_rules_do_fire_on_a_drifting_log() -> None:
    """So that the property above is checked against alerts, not an empty list."""
    rng = np.random.default_rng(3)
    events, ts = [], T0
    for i in range(200):
        ts += int(rng.integers(1, 3 * 24 * 60)) * 60_000
        events.append((ts, ["books", "toys", "garden"][(i // 40 + int(rng.integers(0, 2))) % 3]))
    assert len(category_alerts(records_of(events), EAGER, 7)) > 3


def test_state_version_1_records_are_still_read() -> None:
    """A record written before the engagement counts (version 1): read, counts empty."""
    st_ = UserState(partition=2, n_total=0)
    v2 = encode_state(st_)
    header_v1 = struct.Struct("<BBhqIqqqffBBH")
    fields = struct.unpack_from("<BBhqIqqqffBBHIq", v2)
    v1 = header_v1.pack(1, *fields[1:-2])
    # The window is empty (no events, no category names); then one v1 category entry.
    v1 += bytes([1, 5]) + b"books" + struct.pack("<fB", 0.4, 1)
    got = decode_state(v1)
    assert got.partition == 2 and got.sessions == 0
    assert got.engagement == {"books": Engagement(fired=True)}


def test_engagement_round_trips_through_the_state_record() -> None:
    s = UserState(partition=1)
    s.sessions = 12
    s.engagement = {"books": Engagement(3.5, T0, 7, 11, True), "toys": Engagement(1.0, T0 + 1)}
    got = decode_state(encode_state(s))
    assert got.sessions == 12
    assert got.engagement == s.engagement


def test_the_bench_rules_driver_raises_what_the_processor_raises() -> None:
    """bench/categories.py tunes on bench.category_rules: on a simulated log it must raise
    exactly the processor's category_decay alerts (user, category, event time)."""
    from bench.category_rules import rule_alerts
    from decay.eventlog import frame_to_records
    from decay_cli.replay import encode
    from training.simulate import SimConfig, simulate

    config = SimConfig(rate_shape=2.0, rate_scale=0.5, dropout_a=1.0, dropout_b=80.0)
    log = simulate(n_users=60, days=90, seed=4, config=config)
    rules = EngagementRules(
        alpha=0.5, run_alpha=0.5, rise_alpha=0.5, fall=0.7, min_peak=0.2, min_silence_ms=HOUR * 6
    )
    records = [
        Record(0, i, key, value)
        for i, (key, value) in enumerate(encode(r) for r in frame_to_records(log.events))
    ]
    store = MemoryStore()
    config_ = ProcessorConfig(grace_ms=HOUR, threshold=0.25, engagement=rules)
    proc = Processor(config_, SCORER, store, lambda: int(log.end_ms))
    got = []
    for i in range(0, len(records), 997):
        out = proc.process(records[i : i + 997])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        got += [json.loads(a.payload) for a in out.alerts if a.kind == "category_decay"]
    mine = {(a["user_id"], a["category"], ms(a["event_time"])) for a in got}
    driver = {(a["user_id"], a["category"], a["ts"]) for a in rule_alerts(log.events, rules)}
    assert len(mine) >= 5, mine
    assert driver == mine


def test_float32_rounding_is_numpys() -> None:
    import random

    from decay.engagement import _f32

    rng = random.Random(3)
    values = [rng.uniform(0, 50) for _ in range(20_000)] + [
        rng.lognormvariate(0, 30) for _ in range(20_000)
    ]
    values += [0.0, -0.0, 1e-45, 1e-46, 3.4e38, 3.5e38, 1e300, float("inf"), -1e300]
    with np.errstate(over="ignore"):
        assert [_f32(v) for v in values] == [float(np.float32(v)) for v in values]


def test_may_decay_is_false_only_where_review_does_nothing() -> None:
    from decay.engagement import Engagement, may_decay, review

    rules = EngagementRules()
    weak = {"a": Engagement(1.0, 0, rules.min_visits - 1, 9, True)}
    assert not may_decay(weak, rules) and not may_decay({}, rules)
    # review passes over such a category untouched: its episode stays open
    assert review(weak, 10 * DAY_MS, 20, [], rules) == [] and weak["a"].fired
    strong = {"a": Engagement(1.0, 0, rules.min_visits, 9, True)}
    assert may_decay(strong, rules)
