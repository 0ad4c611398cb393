import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from decay import alerts as al
from decay.engagement import EngagementRules
from decay.scoring import ExponentialDecayScorer
from decay.state import decode_state
from stream_app.partitions import WRITTEN_KEY
from stream_app.processor import (
    WATERMARK_KEY,
    BatchOutput,
    Processor,
    ProcessorConfig,
    ProcessorHalted,
    Record,
)
from stream_app.schedules import NEVER_IDLE_MS
from stream_app.store import MemoryStore

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01
NOW = T0 + 400 * DAY
# half-life 24 h, threshold 0.25 -> deadline 48 h after the last event
SCORER = ExponentialDecayScorer(half_life_s=24 * 3600.0)
CONFIG = ProcessorConfig(grace_ms=HOUR, threshold=0.25)


def rec(offset: int, user: str, ts: int, partition: int = 0, **extra: object) -> Record:
    value = {"event_id": f"{user}-{offset}", "user_id": user, "ts": ts, "type": "view", **extra}
    return Record(partition, offset, user.encode(), json.dumps(value).encode())


def run(store: MemoryStore, batches: list[list[Record]], proc: Processor | None = None):
    proc = proc or Processor(CONFIG, SCORER, store, lambda: NOW)
    outs = []
    for batch in batches:
        out = proc.process(batch)
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        outs.append(out)
    return proc, outs


def alerts_of(outs: list[BatchOutput]) -> list[dict]:
    return [json.loads(a.payload) for out in outs for a in out.alerts]


def test_dormant_fires_when_watermark_passes_deadline_then_reengaged() -> None:
    store = MemoryStore()
    records = [
        rec(0, "alice", T0),
        rec(1, "bob", T0 + 47 * HOUR),  # watermark T0+46h: not yet
        rec(2, "bob", T0 + 49 * HOUR + 1),  # watermark past T0+48h: alice is dormant
        rec(3, "alice", T0 + 72 * HOUR),  # alice is back
    ]
    _, outs = run(store, [records])
    got = alerts_of(outs)
    deadline = T0 + 48 * HOUR
    assert [(a["kind"], a["user_id"]) for a in got] == [
        ("dormant", "alice"),
        ("reengaged", "alice"),
    ]
    dormant, back = got
    assert dormant["alert_id"] == al.alert_id("dormant", "alice", deadline)
    assert back["alert_id"] == al.alert_id("reengaged", "alice", deadline)
    assert dormant["event_time"] == al.rfc3339(deadline)
    assert dormant["score"] == pytest.approx(0.25)
    assert dormant["half_life_hours"] == 24.0 and dormant["model_version"] == SCORER.version
    assert "no activity for 2.0 days" in dormant["reasons"][0]
    assert "back after 3.0 days" in back["reasons"][0]


def test_a_deadline_replaced_in_the_batch_fires_only_if_the_watermark_got_there_first() -> None:
    records = [
        rec(0, "alice", T0),  # deadline T0+48h: the watermark passes it (bob) before ...
        rec(1, "bob", T0 + 49 * HOUR + 1),
        rec(2, "alice", T0 + 50 * HOUR),  # ... her next event: dormant, then back
        rec(3, "carol", T0 + 51 * HOUR),  # replaced long before it could fire:
        rec(4, "carol", T0 + 52 * HOUR),  # no heap entry for the first
    ]
    kinds = []
    for size in (1, len(records)):
        proc, outs = run(MemoryStore(), batches_of(records, size))
        kinds.append([(a["kind"], a["user_id"]) for a in alerts_of(outs)])
        part = proc._partitions[0]
        assert sorted(part.current.items()) == [
            ("alice", T0 + 98 * HOUR),
            ("bob", T0 + 97 * HOUR + 1),
            ("carol", T0 + 100 * HOUR),
        ]
        live = [e for e in part.heap if part.current[e[1]] == e[0]]
        assert sorted(live) == sorted((d, u) for u, d in part.current.items())
    assert kinds[0] == kinds[1] == [("dormant", "alice"), ("reengaged", "alice")]
    assert (T0 + 99 * HOUR, "carol") not in part.heap  # in one batch: never pushed


def test_an_event_before_the_watermark_passes_cancels_the_deadline() -> None:
    store = MemoryStore()
    records = [rec(0, "alice", T0), rec(1, "alice", T0 + 40 * HOUR), rec(2, "bob", T0 + 60 * HOUR)]
    _, outs = run(store, [records])
    assert alerts_of(outs) == []  # alice's deadline moved to T0+88h
    st = decode_state(store.get(0, "alice") or b"")
    assert st.deadline_ms == T0 + 88 * HOUR


def test_one_dormant_per_episode() -> None:
    store = MemoryStore()
    records = [rec(0, "alice", T0)] + [rec(i, "bob", T0 + i * DAY) for i in range(1, 10)]
    _, outs = run(store, [records])
    assert [a["kind"] for a in alerts_of(outs) if a["user_id"] == "alice"] == ["dormant"]


def test_invalid_and_duplicate_events() -> None:
    store = MemoryStore()
    bad = Record(0, 1, b"alice", b"{oops")
    dup = rec(0, "alice", T0)
    dup = Record(0, 2, dup.key, dup.value)  # same event id, new offset: a producer retry
    _, outs = run(store, [[rec(0, "alice", T0), bad, dup]])
    out = outs[0]
    assert out.counts == {"ok": 1, "invalid": 1, "duplicate": 1}
    assert [(d.reason, d.record.offset) for d in out.dead_letters] == [("invalid_json", 1)]
    assert decode_state(store.get(0, "alice") or b"").n_total == 1


def simulated_records(n_users: int = 60, n_events: int = 3000, partitions: int = 3) -> list[Record]:
    rng = np.random.default_rng(11)
    users = rng.integers(0, n_users, n_events)
    ts = T0 + np.cumsum(rng.exponential(2 * HOUR / 10, n_events)).astype(np.int64)
    ts = ts + rng.integers(-HOUR // 2, HOUR // 2, n_events)  # a little disorder
    offsets = [0] * partitions
    out = []
    for u, t in zip(users.tolist(), ts.tolist(), strict=True):
        p = u % partitions
        category = f"c{(u + offsets[p] // 60 + int(rng.integers(0, 2))) % 9}"  # tastes drift
        out.append(rec(offsets[p], f"u{u}", t, partition=p, category=category))
        offsets[p] += 1
    return out


def batches_of(records: list[Record], size: int) -> list[list[Record]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


# Category alerts for any drift of taste: many of them, to exercise their state machinery.
EAGER_CATEGORIES = EngagementRules(
    min_visits=2, alpha=0.5, rise_alpha=0.5, min_silence_ms=HOUR, min_peak=0.2, half_life_ms=DAY
)


def test_alerts_and_state_do_not_depend_on_batch_size() -> None:
    records = simulated_records()
    results = []
    small_window = ProcessorConfig(
        grace_ms=HOUR, threshold=0.25, max_events=12, engagement=EAGER_CATEGORIES
    )
    for size in (1, 7, 250, len(records)):
        store = MemoryStore()
        proc = Processor(small_window, SCORER, store, lambda: NOW)  # categories get evicted
        _, outs = run(store, batches_of(records, size), proc=proc)
        ids = [(a["alert_id"], a["kind"], a["score"]) for a in alerts_of(outs)]
        results.append((ids, store.data))
    assert len(results[0][0]) > 20  # the log does produce alerts
    assert {kind for _, kind, _ in results[0][0]} == {"dormant", "reengaged", "category_decay"}
    for ids, data in results[1:]:
        assert ids == results[0][0]
        assert data == results[0][1]


def test_restart_redelivery_is_not_applied_twice_and_alerts_are_resent() -> None:
    records = simulated_records()
    whole = MemoryStore()
    _, outs = run(whole, batches_of(records, 100))
    expected = {a["alert_id"] for a in alerts_of(outs)}

    # Crash after 1,500 records were processed and stored, with offsets committed only up to
    # record 1,000: the records in between are delivered again to a fresh processor.
    store = MemoryStore()
    _, first = run(store, batches_of(records[:1500], 100))
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
    _, second = run(store, batches_of(records[1000:], 100), proc=restarted)
    got = alerts_of(first + second)
    assert {a["alert_id"] for a in got} == expected  # nothing lost
    assert sum(o.counts["redelivered"] for o in second) == 500
    assert sum(o.resent for o in second) > 0  # alerts from records 1000..1499 sent again
    assert store.data == whole.data  # state identical to an uninterrupted run


def test_deadline_schedule_is_rebuilt_from_the_store() -> None:
    """Read apart after a restart (nothing uncommitted to re-send): Bob's batch applies
    meanwhile, and Alice's deadline, which it passed, fires once the schedule is read."""
    store = MemoryStore()
    run(store, [[rec(0, "alice", T0)]])
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
    restarted.committed = {0: 1}
    _, outs = run(store, [[rec(1, "bob", T0 + 3 * DAY)]], proc=restarted)
    for loading in restarted.schedules_loading():
        loading.result(timeout=30)
    outs.append(restarted.tick(NOW, NEVER_IDLE_MS))
    assert [a["user_id"] for a in alerts_of(outs)] == ["alice"]
    assert restarted.pending_deadlines() == 1  # Bob's
    assert store.get(0, WATERMARK_KEY) is not None


def test_live_mode_tick_advances_idle_partitions() -> None:
    store = MemoryStore()
    wall = [T0 + HOUR]
    proc = Processor(CONFIG, SCORER, store, lambda: wall[0])
    run(store, [[rec(0, "alice", T0)]], proc=proc)
    assert proc.tick(T0 + 2 * HOUR, idle_ms=HOUR).alerts == []
    wall[0] = T0 + 50 * HOUR
    out = proc.tick(wall[0], idle_ms=HOUR)
    assert [a.kind for a in out.alerts] == ["dormant"]
    assert (0, "alice") in out.writes


def test_category_decay_fires_once_when_a_strong_category_fades() -> None:
    """Alice comes for books every day for a week, then for toys only: once her sessions
    elsewhere make it unlikely she still has her share for books, one alert."""
    store = MemoryStore()
    day = 24 * HOUR
    books = [rec(i, "alice", T0 + i * day, category="books") for i in range(8)]
    toys = [rec(8 + i, "alice", T0 + (8 + i) * day, category="toys") for i in range(40)]
    _, outs = run(store, [books + toys])
    got = [a for a in alerts_of(outs) if a["kind"] == "category_decay"]
    assert [a["category"] for a in got] == ["books"]
    alert = got[0]
    assert alert["score"] < alert["peak_score"]
    assert alert["alert_id"] == al.alert_id(
        "category_decay", "alice", int(pd_ts(alert["event_time"])), "books"
    )
    silent_days = (pd_ts(alert["event_time"]) - (T0 + 7 * day)) / day
    assert silent_days >= 3
    assert alert["reasons"][0].startswith("no books for ")
    assert "in toys" in alert["reasons"][2]


def pd_ts(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_erase_deletes_and_confirms() -> None:
    store = MemoryStore()
    proc, _ = run(store, [[rec(0, "alice", T0), rec(1, "bob", T0 + HOUR)]])
    out = proc.erase(0, 7, "alice")
    assert out.deletes == [(0, "alice")]
    (confirmation,) = [json.loads(a.payload) for a in out.alerts]
    assert confirmation["kind"] == "erased" and confirmation["user_id"] == "alice"
    assert confirmation["alert_id"] == al.alert_id("erased", "alice", 7)
    assert proc.pending_deadlines() == 1  # bob's only
    assert proc.erase(0, 8, "nobody").deletes == []


def test_expire_sweeps_users_silent_longer_than_the_ttl() -> None:
    store = MemoryStore()
    proc, _ = run(store, [[rec(0, "alice", T0), rec(1, "bob", T0 + 20 * DAY)]])
    out = proc.expire(ttl_ms=10 * DAY)
    assert out.deletes == [(0, "alice")] and out.counts["expired"] == 1


def test_pseudonyms_replace_user_ids_everywhere() -> None:
    from decay.settings import Settings
    from stream_app.rollout import pseudonymizer

    pseudo = pseudonymizer(Settings(pseudonym_key="secret"))
    assert pseudo is not None and pseudo("alice") == pseudo("alice") != pseudo("bob")
    assert pseudonymizer(Settings(pseudonym_key="other"))("alice") != pseudo("alice")  # type: ignore[misc]
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW, pseudo)
    records = [rec(0, "alice", T0), rec(1, "bob", T0 + 3 * DAY)]
    _, outs = run(store, [records], proc=proc)
    assert set(store.data[0]) == {pseudo("alice"), pseudo("bob"), WATERMARK_KEY, WRITTEN_KEY}
    assert {a["user_id"] for a in alerts_of(outs)} == {pseudo("alice")}
    assert "secret" not in repr(Settings(pseudonym_key="secret"))


def test_scores_are_published_when_asked() -> None:
    store = MemoryStore()
    config = ProcessorConfig(grace_ms=HOUR, threshold=0.25, publish_scores=True, score_min_change=0)
    proc = Processor(config, SCORER, store, lambda: NOW)
    _, outs = run(store, [[rec(0, "alice", T0), rec(1, "alice", T0 + HOUR)]], proc=proc)
    scores = [json.loads(s.payload) for s in outs[0].scores]
    assert [s["event_id"] for s in scores] == ["alice-0", "alice-1"]
    assert scores[0]["score"] == 1.0 and scores[0]["deadline"] == al.rfc3339(T0 + 48 * HOUR)


def test_crash_with_many_alerts_in_flight_loses_none() -> None:
    """Alerts of uncommitted records may die with the worker; the restarted one must send
    them again, however many a user collected since the last commit."""
    records = simulated_records(n_users=20, n_events=3000)
    config = replace(CONFIG, engagement=EAGER_CATEGORIES)
    whole = MemoryStore()
    _, outs = run(whole, batches_of(records, 100), Processor(config, SCORER, whole, lambda: NOW))
    expected = {a["alert_id"] for a in alerts_of(outs)}

    store = MemoryStore()
    proc = Processor(config, SCORER, store, lambda: NOW)
    _, first = run(store, batches_of(records[:500], 100), proc=proc)
    committed: dict[int, int] = {}
    for r in records[:500]:  # Faust committed up to here, then nothing more
        committed[r.partition] = r.offset + 1
    proc.committed = committed
    run(store, batches_of(records[500:2500], 100), proc=proc)  # its alerts are lost
    held = [len(decode_state(v).alerts) for users in store.data.values()
            for k, v in users.items() if not k.startswith("\x00")]  # fmt: skip
    assert max(held) > CONFIG.keep_alerts
    restarted = Processor(config, SCORER, store, lambda: NOW)
    _, second = run(store, batches_of(records[500:], 100), proc=restarted)
    got = {a["alert_id"] for a in alerts_of(first + second)}
    assert got == expected


def test_live_tick_activates_assigned_partitions_without_records() -> None:
    store = MemoryStore()
    run(store, [[rec(0, "alice", T0)]])  # a previous worker left alice with a deadline
    wall = T0 + 60 * HOUR
    restarted = Processor(CONFIG, SCORER, store, lambda: wall)
    assert restarted.tick(wall, idle_ms=HOUR).alerts == []  # not assigned: nothing known
    first = restarted.tick(wall, idle_ms=HOUR, assigned={0: 1})
    assert first.alerts == []
    for loading in restarted.schedules_loading():  # read apart: see partitions.activate
        loading.result(timeout=30)
    assert restarted.tick(wall, idle_ms=HOUR).alerts == []  # idle for less than an hour
    assert restarted.pending_deadlines() == 1
    out = restarted.tick(wall + 2 * HOUR, idle_ms=HOUR, assigned={0: 1})
    assert [a.kind for a in out.alerts] == ["dormant"]


def test_redelivered_invalid_records_are_dead_lettered_again() -> None:
    store = MemoryStore()
    records = [rec(0, "alice", T0), Record(0, 1, b"alice", b"not json"), rec(2, "bob", T0)]
    run(store, [records])
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
    _, outs = run(store, [records], proc=restarted)  # nothing was committed: all again
    assert [d.record.offset for d in outs[0].dead_letters] == [1]
    assert outs[0].counts == {"redelivered": 2, "invalid": 1}


def test_a_jump_in_offsets_holds_the_records_behind_it_until_the_gap_is_filled() -> None:
    """Faust's consumer can skip records after a rebalance: the processor must not apply
    the later ones (they would turn the missing ones into 'already applied')."""
    records = [rec(i, f"u{i % 3}", T0 + i * HOUR) for i in range(10)]
    whole = MemoryStore()
    _, outs = run(whole, [records])
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW)
    first = proc.process(records[:4])
    for (p, k), v in first.writes.items():
        store.put(p, k, v)
    assert proc.commit_offsets() == {0: 4}
    held = proc.process(records[6:])  # offsets 4 and 5 never arrived
    assert held.gaps == {0: (4, 6)}
    assert [r.offset for r in held.held] == [6, 7, 8, 9]
    assert not held.counts and not held.alerts
    assert proc.commit_offsets() == {0: 4}  # nothing past the gap is committed
    proc.accept_gap(0, 6)  # the caller read offsets 4 and 5 itself
    filled = proc.process(records[4:6] + held.held)
    for (p, k), v in {**held.writes, **filled.writes}.items():
        store.put(p, k, v)
    assert not filled.gaps
    assert proc.commit_offsets() == {0: 10}
    assert store.data == whole.data
    assert alerts_of([first, filled]) == alerts_of(outs)


def test_an_empty_gap_is_accepted_and_redelivered_records_do_not_move_the_commit() -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW)
    proc.process([rec(0, "a", T0), rec(1, "a", T0 + HOUR)])
    out = proc.process([rec(5, "a", T0 + 2 * HOUR)])  # 2..4: transaction markers, say
    assert out.gaps == {0: (2, 5)}
    proc.accept_gap(0, 5)
    again = proc.process([*out.held, rec(5, "a", T0 + 2 * HOUR)])
    assert again.counts == {"ok": 1, "redelivered": 1}
    assert proc.commit_offsets() == {0: 6}


def test_a_first_record_past_the_committed_offset_is_a_gap() -> None:
    """After an assignment Faust seeks to the committed offset; when its first record comes
    later than that, the records in between were skipped, not absent."""
    proc = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW)
    proc.committed = {0: 3}
    out = proc.process([rec(7, "a", T0)])
    assert out.gaps == {0: (3, 7)} and [r.offset for r in out.held] == [7]
    assert proc.commit_offsets() == {}  # nothing applied yet: nothing to commit
    # A record from before the committed offset (fetched earlier) starts the run where it is.
    other = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW)
    other.committed = {0: 3}
    assert not other.process([rec(1, "a", T0)]).gaps
    assert other.commit_offsets() == {0: 2}


def test_a_partition_is_activated_from_its_committed_offset_whichever_record_comes_first() -> None:
    """The alerts of records past the committed offset are re-sent, those before it not (they
    went out with the commit), whether the first record handed over is before or after it."""
    store = MemoryStore()
    records = [rec(0, "alice", T0), rec(1, "bob", T0 + 49 * HOUR + 1)]  # alice dormant at 1
    records += [rec(2, "alice", T0 + 72 * HOUR), rec(3, "carol", T0 + 73 * HOUR)]  # back at 2
    _, outs = run(store, [records])
    assert [a["kind"] for a in alerts_of(outs)] == ["dormant", "reengaged"]
    for first, committed, resent in ((0, 2, ["reengaged"]), (3, 2, ["reengaged"]), (0, 3, [])):
        again = Processor(CONFIG, SCORER, store, lambda: NOW)
        again.committed = {0: committed}
        out = again.process([records[first]])
        assert [a.kind for a in out.alerts] == resent, (first, committed)


def test_a_processor_halts_after_a_failed_batch() -> None:
    """Its partitions' runs may be past what reached the broker: it must neither commit
    them nor go on processing."""

    class Failing:
        version = SCORER.version

        def score(self, windows: Any, threshold: float) -> Any:
            raise RuntimeError("injected")

        def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
            return 0.0

    proc = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW)
    proc.process([rec(0, "a", T0)])
    assert proc.commit_offsets() == {0: 1}
    proc.scorer = Failing()
    with pytest.raises(RuntimeError, match="injected"):
        proc.process([rec(1, "a", T0 + HOUR)])
    assert proc.commit_offsets() == {}
    proc.scorer = SCORER
    with pytest.raises(ProcessorHalted):
        proc.process([rec(2, "a", T0 + 2 * HOUR)])
    with pytest.raises(ProcessorHalted):
        proc.tick(NOW, idle_ms=HOUR)


def test_a_window_scorer_drops_a_step_models_state_it_cannot_keep_current() -> None:
    """After a rollout from a step model to a window model, a user's stored step state misses
    the events scored since: it is dropped, so a later step model starts the user anew."""
    from decay.state import encode_state

    store = MemoryStore()
    _, _ = run(store, [[rec(0, "alice", T0)]])
    st = decode_state(store.get(0, "alice") or b"")
    st.model_state = b"\x01" * 176  # as a step model left it
    store.put(0, "alice", encode_state(st))
    run(store, [[rec(1, "alice", T0 + HOUR)]])
    back = decode_state(store.get(0, "alice") or b"")
    assert back.n_total == 2 and back.model_state == b""


class HeldStore(MemoryStore):
    """A store whose full scans wait for ``release``: a restart's schedule being read."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def scan(self, partition: int, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        stored = super().scan(partition, prefix)
        if prefix:
            return stored
        return self._held(stored)

    def _held(self, stored: Iterator[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
        assert self.release.wait(30)
        yield from stored


def test_a_deadline_not_read_yet_fires_before_its_users_next_event() -> None:
    """While the schedule is read after a restart, Alice's stored deadline is passed and she
    comes back in the same batch: dormant, then reengaged, as without the restart; and the
    schedule, once read, fires nothing twice."""
    records = [
        rec(0, "alice", T0),
        rec(1, "bob", T0 + 49 * HOUR + 1),
        rec(2, "alice", T0 + 50 * HOUR),
    ]
    _, outs = run(MemoryStore(), [records])
    expected = [(a["kind"], a["alert_id"]) for a in alerts_of(outs)]
    assert [k for k, _ in expected] == ["dormant", "reengaged"]

    store = HeldStore()
    store.release.set()
    run(store, [records[:1]])
    store.release.clear()
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
    restarted.committed = {0: 1}
    _, again = run(store, [records[1:]], proc=restarted)
    assert restarted.schedules_loading() and not restarted.schedules_read()
    store.release.set()
    for loading in restarted.schedules_loading():
        loading.result(timeout=30)
    again.append(restarted.tick(NOW, NEVER_IDLE_MS))
    assert [(a["kind"], a["alert_id"]) for a in alerts_of(again)] == expected
    assert restarted.pending_deadlines() == 2 and restarted.users_tracked() == 2


def test_the_schedules_purge_keeps_each_live_deadline_once() -> None:
    from stream_app.partitions import PartitionState

    part = PartitionState(max_ts=0, last_offset=-1)
    for i in range(3000):  # one user rescheduled again and again, two more now and then
        part.schedule("u", 10_000 + i)
        if i % 1000 == 0:
            part.schedule(f"v{i}", 5_000 + i)
            part.schedule(f"v{i}", 5_000 + i)  # the same deadline twice
    assert len(part.heap) < 1100  # purged along the way
    assert list(part.pop_due(20_000)) == [
        (5_000, "v0"),
        (6_000, "v1000"),
        (7_000, "v2000"),
        (12_999, "u"),
    ]
