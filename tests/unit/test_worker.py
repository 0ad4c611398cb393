"""The whole worker (``stream_app.worker.Worker``) over in-memory ports (stream_app.testing):
batches, commits, rebalances, offset gaps, erasure, forwarding and a failed delivery, without
a broker. The same worker over Faust and Kafka is the integration suite's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from decay.scoring import ExponentialDecayScorer
from decay.settings import Settings
from decay.state import decode_state
from stream_app.app import processor_config
from stream_app.delivery import Delivery
from stream_app.metrics import Metrics
from stream_app.ports import Fetched
from stream_app.processor import Processor, Record
from stream_app.queries import partition_for
from stream_app.store import MemoryStore
from stream_app.tail import TailWatch
from stream_app.testing import MemoryBatches, MemoryGroup, MemoryLog, MemoryProducer, memory_ports
from stream_app.worker import Worker, as_records

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01
NOW = T0 + 400 * 24 * HOUR
PARTITIONS = 2
SETTINGS = Settings(partitions=PARTITIONS, grace_s=3600.0, threshold=0.25, batch_max=1000)
SCORER = ExponentialDecayScorer(half_life_s=24 * 3600.0)  # deadline 48 h after an event


def build(log: MemoryLog, store: MemoryStore, fail_topic: str | None = None) -> Worker:
    ports = memory_ports(log, SETTINGS.events_topic, fail_topic)
    processor = Processor(processor_config(SETTINGS), SCORER, store, lambda: NOW, None)
    metrics = Metrics.create(CollectorRegistry())
    delivery = Delivery(SETTINGS, ports.group, ports.producer, processor, store, metrics, {})
    worker = Worker(SETTINGS, ports, processor, delivery, metrics, lambda: NOW, TailWatch(100))
    return worker


def group_of(worker: Worker) -> MemoryGroup:
    assert isinstance(worker.group, MemoryGroup)
    return worker.group


def assign(worker: Worker, partitions: list[int]) -> None:
    topics = (SETTINGS.events_topic, SETTINGS.repartition, SETTINGS.erase_topic)
    group_of(worker).assign(topics, partitions)


def event(user: str, n: int, ts: int) -> bytes:
    return json.dumps(
        {"event_id": f"{user}-{n}", "user_id": user, "ts": ts, "type": "view"}
    ).encode()


def produce(log: MemoryLog, users: int, rounds: int) -> None:
    """Each user active every 10 h for ``rounds`` events, then silent; a last user keeps
    the clock moving, so that the others' deadlines (48 h after their last event) pass."""
    for r in range(rounds):
        for u in range(users):
            user = f"u{u}"
            log.append(SETTINGS.events_topic, user.encode(), event(user, r, T0 + r * 10 * HOUR))
    for k in range(12):
        ts = T0 + (rounds + 10 * k) * 10 * HOUR
        for p in range(PARTITIONS):
            clock = f"clock{p}"
            while partition_for(clock.encode(), PARTITIONS) != p:
                clock += "x"
            log.append(SETTINGS.events_topic, clock.encode(), event(clock, k, ts))


def alerts(log: MemoryLog) -> list[dict[str, object]]:
    return [json.loads(v) for v in log.values(SETTINGS.alerts_topic)]


def drain(worker: Worker, max_records: int = 7) -> Iterator[list[Fetched]]:
    batches = worker.batches
    assert isinstance(batches, MemoryBatches)
    for _ in range(10_000):  # bounded: every fetch moves the positions on
        fetched = batches.fetch(max_records)
        if not fetched:
            return
        yield fetched
    raise AssertionError("the log never ran dry")


def run_all(worker: Worker, max_records: int = 7) -> None:
    for fetched in drain(worker, max_records):
        assert asyncio.run(worker.handle(fetched))


def committed(log: MemoryLog) -> dict[int, int]:
    return {p: o for (t, p), o in log.group_offsets.items() if t == SETTINGS.events_topic}


def ends(log: MemoryLog) -> dict[int, int]:
    return {p: len(records) for p, records in enumerate(log.of(SETTINGS.events_topic))}


def test_batches_then_a_commit_publish_every_alert_and_commit_the_end() -> None:
    log, store = MemoryLog(PARTITIONS), MemoryStore()
    produce(log, users=10, rounds=3)
    worker = build(log, store)
    assign(worker, [0, 1])
    run_all(worker)
    assert committed(log) == {}  # committed by the timer, not by the batches
    asyncio.run(worker.commit_processed())
    assert committed(log) == ends(log)
    got = alerts(log)
    assert sorted(a["user_id"] for a in got if a["kind"] == "dormant") == sorted(
        f"u{u}" for u in range(10)
    )
    assert worker.processor.users_tracked() == 10 + PARTITIONS


def test_batch_sizes_do_not_change_the_alerts() -> None:
    def alert_ids(max_records: int) -> list[object]:
        log = MemoryLog(PARTITIONS)
        produce(log, users=8, rounds=4)
        worker = build(log, MemoryStore())
        assign(worker, [0, 1])
        run_all(worker, max_records)
        return sorted(str(a["alert_id"]) for a in alerts(log))

    one = alert_ids(1)
    assert len(one) >= 8  # a dormant alert per user at least
    assert one == alert_ids(5) == alert_ids(1000)


def test_a_rebalance_hands_partitions_over_without_losing_or_changing_an_alert() -> None:
    single = MemoryLog(PARTITIONS)
    produce(single, users=10, rounds=3)
    one = build(single, MemoryStore())
    assign(one, [0, 1])
    run_all(one)
    expected = sorted(str(a["alert_id"]) for a in alerts(single))
    assert len(expected) >= 10

    log, store = MemoryLog(PARTITIONS), MemoryStore()  # the table, as its changelog restores it
    produce(log, users=10, rounds=3)
    first = build(log, store)
    assign(first, [0, 1])
    fetched = next(drain(first, 9))
    assert asyncio.run(first.handle(fetched))
    asyncio.run(first.on_revoked({0, 1}))  # commits what it applied
    assert committed(log) == {f.partition: len(f.records) for f in fetched}
    assign(first, [])
    second = build(log, store)
    assign(second, [0, 1])
    run_all(second)
    asyncio.run(second.commit_processed())
    assert committed(log) == ends(log)
    assert sorted({str(a["alert_id"]) for a in alerts(log)}) == expected


def test_records_fetched_before_a_rebalance_are_not_applied() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=4, rounds=2)
    worker = build(log, MemoryStore())
    assign(worker, [0, 1])
    stale = next(drain(worker))
    assign(worker, [0, 1])  # a new generation: its partitions start again at the commit
    assert asyncio.run(worker.handle(stale))
    assert worker.processor.users_tracked() == 0
    assert worker.metrics.stale_records._value.get() == sum(len(f.records) for f in stale)
    run_all(worker)
    assert worker.processor.users_tracked() == 4 + PARTITIONS


def events_applied(store: MemoryStore) -> dict[str, int]:
    """Each user's count of events applied, from the stored states."""
    return {
        user: decode_state(raw).n_total
        for users in store.data.values()
        for user, raw in users.items()
        if not user.startswith("\x00")
    }


def test_a_partition_never_committed_starts_at_its_log_start_not_at_its_first_fetch() -> None:
    """What the consumer fetches while a rebalance holds the flow is dropped, and Faust's seek
    to the committed offsets moves only partitions committed above 0 (aiokafka's
    ``seek_to_committed``): a partition never committed goes on from past the dropped
    records. Its first records must still be applied; the worker used to start such a
    partition at the first record it saw and lose the ones before (in test_faults.py's
    two-worker test that gives "3 missing, 2 unexpected" alerts, as seen under load)."""
    log, store = MemoryLog(PARTITIONS), MemoryStore()
    produce(log, users=6, rounds=3)
    worker = build(log, store)
    assign(worker, [0, 1])
    group_of(worker).flow = False  # the assignment's rebalance is not over yet
    held = next(drain(worker))
    assert asyncio.run(worker.handle(held))
    dropped = sum(len(f.records) for f in held)
    assert worker.metrics.stale_records._value.get() == dropped
    group_of(worker).flow = True
    run_all(worker)  # from past the dropped records: nothing seeks the partitions back
    asyncio.run(worker.commit_processed())
    assert committed(log) == ends(log)
    got = events_applied(store)  # every event, each once
    assert {u: n for u, n in got.items() if not u.startswith("clock")} == {
        f"u{u}": 3 for u in range(6)
    }
    assert sum(got.values()) == sum(ends(log).values())
    assert worker.metrics.refetched._value.get() == dropped  # read by the worker itself


def test_records_skipped_on_their_way_are_read_and_applied_in_order() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=6, rounds=3)
    worker = build(log, MemoryStore())
    assign(worker, [0, 1])
    p = 0
    records = log.of(SETTINGS.events_topic)[p]
    gen = group_of(worker).gen
    head, tail = Fetched(gen, p, records[:3]), Fetched(gen, p, records[6:])
    assert asyncio.run(worker.handle([head]))
    assert asyncio.run(worker.handle([tail]))  # offsets 3-5 never came: read them
    assert worker.metrics.refetched._value.get() == 3
    assert worker.processor.commit_offsets()[p] == len(records)


async def stopped(worker: Worker) -> None:
    """Until the stop a failed delivery spawned has run."""
    tasks = group_of(worker).tasks
    for _ in range(100):  # the delivery callbacks run on the loop's next turns
        if tasks:
            break
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)


def test_a_refused_alert_stops_the_worker_and_nothing_more_is_committed() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=10, rounds=3)
    worker = build(log, MemoryStore(), fail_topic=SETTINGS.alerts_topic)
    assign(worker, [0, 1])

    async def go() -> None:
        for fetched in drain(worker, 1000):
            await worker.handle(fetched)
        await stopped(worker)
        await worker.commit_processed()

    asyncio.run(go())
    assert worker.processor.halted is not None
    assert isinstance(group_of(worker).crashed, RuntimeError)
    assert committed(log) == {}


class RefusedChangelog(MemoryStore):
    """A store whose changelog's broker refuses every batch of changes after the first."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def write(
        self, puts: Mapping[tuple[int, str], bytes], deletes: Collection[tuple[int, str]]
    ) -> list[asyncio.Future[Any]]:
        await super().write(puts, deletes)
        self.writes += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.writes == 1:
            fut.set_result(None)
        else:
            fut.set_exception(RuntimeError("changelog batch refused"))
        return [fut]


def test_a_refused_changelog_batch_stops_the_worker_and_nothing_more_is_committed() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=10, rounds=3)
    store = RefusedChangelog()
    worker = build(log, store)
    assign(worker, [0, 1])
    batches = list(drain(worker, 5))

    async def go() -> None:
        await worker.handle(batches[0])
        await worker.commit_processed()  # the first batch's changelog was delivered
        first = committed(log)
        assert first and sum(first.values()) > 0
        for fetched in batches[1:]:
            await worker.handle(fetched)
        await stopped(worker)
        await worker.commit_processed()
        await worker.on_revoked({0, 1})  # its commit commits nothing either
        assert committed(log) == first

    asyncio.run(go())
    assert store.writes > 1
    assert isinstance(worker.processor.halted, RuntimeError)
    assert isinstance(group_of(worker).crashed, RuntimeError)


class ShieldedChangelog(MemoryStore):
    """A changelog whose batches are handed out as aiokafka's ``send_batch`` hands them: a
    shield of the batch's future, so a refusal reaches the callbacks a few loop steps late."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[asyncio.Future[Any]] = []

    async def write(
        self, puts: Mapping[tuple[int, str], bytes], deletes: Collection[tuple[int, str]]
    ) -> list[asyncio.Future[Any]]:
        await super().write(puts, deletes)
        batch: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches.append(batch)
        return [asyncio.shield(batch)]


class RefusedAtFlush(MemoryProducer):
    """The broker refuses the changelog batches as the flush begins: the batches are already
    out of the producer's queues, so the flush has nothing to wait for."""

    def __init__(self, log: MemoryLog, store: ShieldedChangelog) -> None:
        super().__init__(log)
        self.store = store

    async def flush(self) -> None:
        for batch in self.store.batches:
            if not batch.done():
                batch.set_exception(RuntimeError("changelog batch refused"))


def test_a_changelog_batch_refused_as_the_commit_flushes_is_seen_before_the_commit() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=10, rounds=3)
    store = ShieldedChangelog()
    worker = build(log, store)
    worker.delivery.producer = RefusedAtFlush(log, store)
    assign(worker, [0, 1])

    async def go() -> None:
        for fetched in drain(worker, 5):
            await worker.handle(fetched)
        await worker.commit_processed()
        await stopped(worker)

    asyncio.run(go())
    assert isinstance(worker.processor.halted, RuntimeError)
    assert committed(log) == {}


def test_the_idle_timer_leaves_partitions_alone_while_the_table_is_being_recovered() -> None:
    """In live mode the idle timer activates assigned partitions that get no record. During
    a recovery their table is not complete yet: a schedule built from it then would miss the
    deadlines of the users still to be restored, for good."""
    log, previous = MemoryLog(PARTITIONS), MemoryStore()
    for u in range(4):  # one event each: their deadlines pass only on the idle clock
        log.append(SETTINGS.events_topic, f"u{u}".encode(), event(f"u{u}", 0, T0))
    first = build(log, previous)
    assign(first, [0, 1])
    run_all(first)
    restored = {(p, k): v for p in range(PARTITIONS) for k, v in previous.scan(p)}
    store, clock = MemoryStore(), [NOW]
    worker = build(log, store)
    worker.clock_ms = worker.processor.clock_ms = lambda: clock[0]
    assign(worker, [0, 1])
    group_of(worker).flow = False  # the table is being recovered
    asyncio.run(worker.advance_idle_partitions())
    assert alerts(log) == [] and list(store.scan(0)) == list(store.scan(1)) == []
    for (p, k), v in restored.items():  # the recovery ends
        store.put(p, k, v)
    group_of(worker).flow = True
    asyncio.run(worker.advance_idle_partitions())
    clock[0] += int(SETTINGS.idle_s * 1000)  # idle for long enough: the clock moves
    asyncio.run(worker.advance_idle_partitions())
    dormant = sorted(str(a["user_id"]) for a in alerts(log) if a["kind"] == "dormant")
    assert dormant == ["u0", "u1", "u2", "u3"]


def test_an_erase_request_removes_the_user_and_is_confirmed() -> None:
    log, store = MemoryLog(PARTITIONS), MemoryStore()
    produce(log, users=3, rounds=2)
    worker = build(log, store)
    assign(worker, [0, 1])
    run_all(worker)
    p, offset = log.append(SETTINGS.erase_topic, b"u1", b"u1", T0 + 100 * HOUR)
    [request] = worker_records(log, SETTINGS.erase_topic, p, offset)
    assert asyncio.run(worker.erase(request)) == "ack"
    assert store.get(partition_for(b"u1", PARTITIONS), "u1") is None
    assert [a["user_id"] for a in alerts(log) if a["kind"] == "erased"] == ["u1"]


def test_an_event_on_another_partition_is_forwarded_and_applied_at_its_users_own() -> None:
    log, store = MemoryLog(PARTITIONS), MemoryStore()
    worker = build(log, store)
    assign(worker, [0, 1])
    own = partition_for(b"w", PARTITIONS)
    log.append(SETTINGS.events_topic, b"w", event("w", 0, T0), partition=1 - own)
    run_all(worker)
    assert worker.metrics.events.labels("forwarded")._value.get() == 1
    [forwarded] = worker_records(log, SETTINGS.repartition, own, 0)
    assert asyncio.run(worker.apply_forwarded(forwarded)) == "ack"
    assert store.get(own, "w") is not None
    assign(worker, [1 - own])  # a forwarded record of a partition revoked meanwhile
    assert asyncio.run(worker.apply_forwarded(forwarded)) == "skip"


def worker_records(log: MemoryLog, topic: str, partition: int, offset: int) -> list[Record]:
    return as_records(log.read(topic, partition, offset, offset + 1))


@pytest.mark.parametrize("partition", [0, 1])
def test_the_lag_is_sampled_from_the_high_watermark(partition: int) -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=4, rounds=2)
    worker = build(log, MemoryStore())
    assign(worker, [0, 1])
    first = next(drain(worker, 2))
    assert asyncio.run(worker.handle(first))
    asyncio.run(worker.sample_lag())
    lag = worker.metrics.consumer_lag.labels(str(partition))._value.get()
    applied = worker.processor.last_offsets()[partition] + 1
    assert lag == ends(log)[partition] - applied


class GatedFlush(MemoryProducer):
    """The in-memory producer, whose flush waits until the test opens the gate (a broker
    slow to acknowledge)."""

    def __init__(self, log: MemoryLog) -> None:
        super().__init__(log)
        self.gate = asyncio.Event()
        self.flushing = asyncio.Event()

    async def flush(self) -> None:
        self.flushing.set()
        await self.gate.wait()


def gated(log: MemoryLog) -> tuple[Worker, GatedFlush]:
    worker = build(log, MemoryStore())
    producer = GatedFlush(log)
    worker.delivery.producer = producer
    return worker, producer


def test_batches_go_on_while_a_commit_waits_for_the_flush_and_it_commits_its_snapshot() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=6, rounds=3)
    worker, producer = gated(log)
    assign(worker, [0, 1])
    batches = drain(worker, 4)

    async def go() -> dict[int, int]:
        assert await worker.handle(next(batches))
        snapshot = worker.processor.commit_offsets()
        commit = asyncio.ensure_future(worker.commit_processed())
        await asyncio.wait_for(producer.flushing.wait(), 10)
        for fetched in batches:  # the lock is free: the rest is applied meanwhile
            assert await asyncio.wait_for(worker.handle(fetched), 10)
        assert committed(log) == {}
        producer.gate.set()
        await asyncio.wait_for(commit, 10)
        return snapshot

    snapshot = asyncio.run(go())
    assert committed(log) == snapshot != ends(log)  # what was applied when it was asked
    assert worker.processor.commit_offsets() == ends(log)


def test_a_revocation_during_the_flush_cancels_the_commit_read_before_it() -> None:
    log = MemoryLog(PARTITIONS)
    produce(log, users=6, rounds=3)
    worker, producer = gated(log)
    assign(worker, [0, 1])
    batches = drain(worker, 4)

    async def go() -> None:
        assert await worker.handle(next(batches))
        commit = asyncio.ensure_future(worker.commit_processed())
        await asyncio.wait_for(producer.flushing.wait(), 10)
        assert await worker.handle(next(batches))
        producer.gate.set()  # the revocation's own commit flushes too
        await asyncio.wait_for(worker.on_revoked({0}), 10)
        assign(worker, [1])
        revoked_at = committed(log)
        await asyncio.wait_for(commit, 10)
        assert committed(log) == revoked_at  # the older snapshot was not committed

    asyncio.run(go())
    assert set(committed(log)) == {0}  # partition 1's commit was cancelled with it
