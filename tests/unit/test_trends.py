"""Category trends: the decayed sums, the daily snapshots, the day/week change, their storage
in the state table, and that batch boundaries and restarts change nothing."""

import json
import random

import pytest

from decay.scoring import ExponentialDecayScorer
from decay.trends import (
    DAY_MS,
    HEADER_KEY,
    ROW_PREFIX,
    CategoryTrends,
    TrendRules,
    TrendStateError,
    read,
    top,
)
from stream_app.activation import activate
from stream_app.batch import BatchOutput
from stream_app.erasure import expire_users
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.store import MemoryStore
from stream_app.trends import describe, query_args

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, a midnight
RULES = TrendRules(half_life_ms=2 * DAY_MS)
CATS = ["running shoes", "trail running", "cookware", "chef knives", "coffee"]


def brute(events: list[tuple[int, str]], category: str, t_ms: int, h: int) -> float:
    return sum(2 ** (-(t_ms - ts) / h) for ts, c in events if c == category and ts <= t_ms)


def test_one_event_decays_by_half_each_half_life() -> None:
    table = CategoryTrends(rules=RULES)
    table.add([(T0 + 5 * HOUR, "coffee")])
    (got,) = read([table], T0 + 5 * HOUR + 2 * DAY_MS).categories
    assert got.category == "coffee" and got.interest == pytest.approx(0.5, rel=1e-12)
    (got,) = read([table], T0 + 5 * HOUR + 4 * DAY_MS).categories
    assert got.interest == pytest.approx(0.25, rel=1e-12)


def test_interest_and_changes_match_a_sum_over_the_events() -> None:
    rng = random.Random(3)
    # In time order, so every snapshot holds exactly the events before its midnight.
    events = sorted((T0 + rng.randrange(20 * DAY_MS), rng.choice(CATS)) for _ in range(3000))
    table = CategoryTrends(rules=RULES)
    table.add(events)
    now = events[-1][0]
    today = now // DAY_MS
    reading = read([table])
    assert reading.day_known and reading.week_known
    assert reading.day_ref_ms == (today - 1) * DAY_MS
    assert reading.week_ref_ms == (today - 7) * DAY_MS
    h = RULES.half_life_ms
    for t in reading.categories:
        want_now = brute(events, t.category, now, h)
        assert t.interest == pytest.approx(want_now, rel=1e-9)
        day_ref = brute(events, t.category, reading.day_ref_ms, h)
        week_ref = brute(events, t.category, reading.week_ref_ms, h)
        assert t.day_change == pytest.approx(want_now - day_ref, rel=1e-9, abs=1e-9)
        assert t.week_change == pytest.approx(want_now - week_ref, rel=1e-9, abs=1e-9)
    # Read two days after the last event: the table decays on, midnights included.
    later = now + 2 * DAY_MS
    for t in read([table], later).categories:
        want = brute(events, t.category, later, h)
        assert t.interest == pytest.approx(want, rel=1e-9)
        day_ref = brute(events, t.category, (later // DAY_MS - 1) * DAY_MS, h)
        assert t.day_change == pytest.approx(want - day_ref, rel=1e-9, abs=1e-9)


def test_changes_are_unknown_until_there_is_that_much_history() -> None:
    table = CategoryTrends(rules=RULES)
    table.add([(T0 + HOUR, "coffee"), (T0 + DAY_MS + HOUR, "coffee")])
    reading = read([table])  # yesterday's midnight came before the first event
    assert not reading.day_known and reading.categories[0].day_change is None
    table.add([(T0 + 2 * DAY_MS + HOUR, "coffee")])
    reading = read([table])
    assert reading.day_known and not reading.week_known
    assert reading.categories[0].day_change is not None
    assert reading.categories[0].week_change is None


def test_a_rising_and_a_falling_category_rank_as_such() -> None:
    events = [(T0 + d * DAY_MS + i * HOUR, "cookware") for d in range(10) for i in range(10)]
    events += [(T0 + d * DAY_MS + i * HOUR, "coffee") for d in range(8, 10) for i in range(20)]
    events.sort()
    table = CategoryTrends(rules=RULES)
    table.add(events)
    table.add([(T0 + 12 * DAY_MS, None)])  # an uncategorised event moves the clock
    ranked = top(read([table]), 5)  # two silent days: both fall, the bigger one most
    assert [t.category for t in ranked["falling"]] == ["coffee", "cookware"]
    assert ranked["rising"] == [] and ranked["top"][0].category == "coffee"
    table = CategoryTrends(rules=RULES)
    table.add(e for e in events if e[0] < T0 + 9 * DAY_MS + 12 * HOUR)
    ranked = top(read([table]), 5)
    assert ranked["rising"][0].category == "coffee"  # from nothing at midnight of day 8
    with pytest.raises(ValueError, match="by must be"):
        top(read([table]), 5, by="month")


def test_more_categories_than_allowed_are_counted_not_summed() -> None:
    table = CategoryTrends(rules=TrendRules(max_categories=2))
    table.add([(T0 + i, c) for i, c in enumerate(CATS)])
    reading = read([table])
    assert {t.category for t in reading.categories} == set(CATS[:2])
    assert reading.untracked == 3


def test_storage_round_trip_and_bad_records() -> None:
    table = CategoryTrends(rules=RULES)
    table.add([(T0 + d * 7 * HOUR, CATS[d % 5]) for d in range(60)])
    records = table.flush()
    assert set(records) == {HEADER_KEY} | {ROW_PREFIX + c for c in CATS}
    assert table.flush() == {}  # nothing changed since
    back = CategoryTrends.restore(records, RULES)
    assert read([back]).categories == read([table]).categories
    table.add([(T0 + 3 * DAY_MS, "coffee")])  # same day: one row and the header change
    assert set(table.flush()) == {HEADER_KEY, ROW_PREFIX + "coffee"}
    with pytest.raises(TrendStateError):
        CategoryTrends.restore({HEADER_KEY: b"short"}, RULES)


def sim_records(n: int, seed: int) -> list[Record]:
    """Events of 40 users over about 20 days on two partitions, a little out of order (late
    within the grace), some sent twice, some without a category."""
    rng = random.Random(seed)
    out: list[Record] = []
    offsets, t = [0, 0], T0
    for i in range(n):
        t += rng.randrange(20 * 60_000)
        user = rng.randrange(40)
        p = user % 2
        value = {"event_id": f"e{i}", "user_id": f"u{user}", "ts": t - rng.randrange(HOUR // 2)}
        value["type"] = "view"
        category = rng.choice([*CATS, None])
        if category is not None:
            value["category"] = category
        for _ in range(2 if rng.random() < 0.03 else 1):  # a duplicate: applied once
            out.append(Record(p, offsets[p], f"u{user}".encode(), json.dumps(value).encode(), t))
            offsets[p] += 1
    return out


CONFIG = ProcessorConfig(grace_ms=HOUR, threshold=0.25, trends=RULES)
SCORER = ExponentialDecayScorer(half_life_s=24 * 3600.0)


def run(records: list[Record], size: int, restart_every: int = 0) -> MemoryStore:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: T0 + 400 * DAY_MS)
    for n, start in enumerate(range(0, len(records), size)):
        if restart_every and n and n % restart_every == 0:  # a new worker, from the store
            proc = Processor(CONFIG, SCORER, store, lambda: T0 + 400 * DAY_MS)
        out = proc.process(records[start : start + size])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
    return store


def trend_records(store: MemoryStore) -> dict[tuple[int, str], bytes]:
    return {
        (p, k): v
        for p, kv in store.data.items()
        for k, v in kv.items()
        if k == HEADER_KEY or k.startswith(ROW_PREFIX)
    }


def test_batch_boundaries_and_restarts_do_not_change_the_trends() -> None:
    records = sim_records(3000, seed=11)
    one = trend_records(run(records, 1))
    assert len(one) == 2 * (1 + len(CATS))
    assert trend_records(run(records, 500)) == one  # byte for byte
    assert trend_records(run(records, 37, restart_every=5)) == one


def test_the_processor_feeds_the_tables_and_describe_answers() -> None:
    records = sim_records(3000, seed=12)
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: T0 + 400 * DAY_MS)
    applied = []
    for start in range(0, len(records), 200):
        out = proc.process(records[start : start + 200])
        applied += [json.loads(r.value) for r in records[start : start + 200]]
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
    tables, now_ms = proc.category_trends()
    assert sorted(tables) == [0, 1]
    page = describe(tables, now_ms, 3, "week", RULES.half_life_ms)
    assert page["partitions"] == [0, 1] and page["changes_known"]
    assert len(page["top"]) == 3 and page["ranked_by"] == "week_change"
    # The sum over categories: every distinct event with a category, decayed to now.
    seen = {e["event_id"]: e for e in applied if "category" in e}
    want = sum(2 ** (-(now_ms - e["ts"]) / RULES.half_life_ms) for e in seen.values())
    got = sum(t.interest for t in read(tables.values(), now_ms).categories)
    assert got == pytest.approx(want, rel=1e-9)


def test_activation_and_expiry_skip_the_trend_records() -> None:
    records = sim_records(600, seed=13)
    store = run(records, 100)
    users = {k for k in store.data[0] if not k.startswith("\x00")}
    out = BatchOutput()
    part = activate(store, 0, 10**9, out, RULES)
    if part.loading is not None:  # the schedule is read in a thread (stream_app.activation)
        part.loading.result(timeout=60)
        part.finish_loading()
    assert part.users == len(users)
    assert set(part.trends.names) == set(CATS) and part.trends.rules == RULES
    assert not any(k.startswith("\x00") for _, k in out.writes)
    # Expiry with a ttl of 0 days: every user goes, the trend records stay.
    gone = expire_users(store, {0: part}, grace_ms=HOUR, ttl_ms=-(10**12))
    assert {k for _, k in gone.deletes} == users
    assert not any(k.startswith("\x00") for _, k in gone.deletes)


def test_query_arguments_are_checked() -> None:
    assert query_args({}) == (10, "day")
    assert query_args({"n": "3", "by": "week"}) == (3, "week")
    for bad in ({"n": "0"}, {"n": "x"}, {"n": "5000"}, {"by": "hour"}):
        assert isinstance(query_args(bad), str)
