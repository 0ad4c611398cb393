"""The worker owns each user's state whatever partitioner or key the producer used, and an
erase request removes every event of its user produced before it, wherever the event is
(real broker; a librdkafka producer, whose default partitioner is not Java's murmur2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.integration.harness import Setup, WorkerProcess, read_alerts, worker_log_errors

pytestmark = pytest.mark.kafka

T0 = 1_704_067_200_000


def librdkafka_produce(bootstrap: str, topic: str, messages: list) -> None:
    """``messages``: (key or None, value, record time ms or None), with librdkafka's default
    partitioner (consistent_random: CRC32 of the key; a keyless message anywhere)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[str] = []

    def report(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value, ts in messages:
        producer.produce(topic, value, key, on_delivery=report, **({"timestamp": ts} if ts else {}))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []


def event(user: str, i: int, **extra: object) -> bytes:
    body = {"event_id": f"{user}-{i}", "user_id": user, "ts": T0 + i * 60_000, "type": "view"}
    return json.dumps({**body, **extra}).encode()


def count(worker: WorkerProcess, result: str) -> float:
    return worker.metrics().get(f'decay_events_total{{result="{result}"}}', 0)


def erased(bootstrap: str, topic: str) -> dict[str, dict]:
    return {a["user_id"]: a for a in read_alerts(bootstrap, topic) if a["kind"] == "erased"}


def test_one_state_per_user_whatever_the_partitioner_or_key(bootstrap: str, tmp_path: Path):
    setup = Setup("route", bootstrap, tmp_path / "state", partitions=4)
    setup.create_topics()
    s = setup.settings()
    keyed = [f"user-{u}" for u in range(24)]
    keyless = [f"anon-{u}" for u in range(6)]
    messages = [(u.encode(), event(u, i), None) for i in range(5) for u in keyed]
    messages += [(None, event(u, i), None) for i in range(6) for u in keyless]
    librdkafka_produce(bootstrap, s.events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: count(worker, "ok") >= len(messages), 120, "every event")
        m = worker.metrics()
        assert m['decay_events_total{result="ok"}'] == len(messages)
        assert m["decay_users_tracked"] == len(keyed) + len(keyless)  # no ghost states
        assert m['decay_events_total{result="forwarded"}'] > 0  # the partitioners differ
        for user in keyed:
            status, body = worker.user(user)
            assert status == 200 and body["events_seen"] == 5, user
        for user in keyless:
            status, body = worker.user(user)
            assert status == 200 and body["events_seen"] == 6, user

        # Erase requests through the same producer: most land on another erase partition.
        gone = keyed[:8] + keyless[:2]
        requests = [(u.encode(), u.encode(), None) for u in gone[:-1]] + [
            (None, gone[-1].encode(), None)  # keyless: the user id is the value
        ]
        librdkafka_produce(bootstrap, s.erase_topic, requests)
        worker.wait_for(
            lambda: set(gone) <= set(erased(bootstrap, s.alerts_topic)), 60, "confirmations"
        )
        confirmations = erased(bootstrap, s.alerts_topic)
        for user in gone:
            assert worker.user(user)[0] == 404, user
            assert confirmations[user]["reasons"][0].startswith("state erased on request: ")
        assert worker.metrics()["decay_users_tracked"] == len(keyed) + len(keyless) - len(gone)
        assert worker.user(keyed[-1])[0] == 200
    finally:
        assert worker.stop() == 0
    assert worker_log_errors(worker.log_path) == []


def test_erase_covers_the_backlog_and_holds_across_restarts(bootstrap: str, tmp_path: Path):
    setup = Setup("erase-order", bootstrap, tmp_path / "state", partitions=3)
    setup.create_topics()
    s = setup.settings()
    # A backlog: the user's events, then the erase request, all before the worker starts.
    # Whichever the worker takes first, nothing of the user may remain.
    erase_at = int(time.time() * 1000)
    backlog = [(b"zoe", event("zoe", i), erase_at - 60_000 + i) for i in range(40)]
    others = [(b"yan", event("yan", i), erase_at - 60_000 + i) for i in range(10)]
    librdkafka_produce(bootstrap, s.events_topic, backlog + others)
    librdkafka_produce(bootstrap, s.erase_topic, [(b"zoe", b"zoe", erase_at)])
    log = tmp_path / "worker.log"
    worker = WorkerProcess(setup, log)
    try:
        worker.wait_for(
            lambda: (
                count(worker, "ok") + count(worker, "dropped_erased") >= 50
                and "zoe" in erased(bootstrap, s.alerts_topic)
            ),
            120,
            "the backlog and the erasure",
        )
        assert worker.user("zoe")[0] == 404
        assert worker.user("yan")[1]["events_seen"] == 10
        # Events of the user produced before the request that come later still, e.g. from
        # a lagging producer: dropped.
        late = [(b"zoe", event("zoe", 100 + i), erase_at - 1) for i in range(4)]
        librdkafka_produce(bootstrap, s.events_topic, late)
        worker.wait_for(lambda: count(worker, "dropped_erased") >= 4, 60, "late events dropped")
        assert worker.user("zoe")[0] == 404
    finally:
        assert worker.stop() == 0

    worker = WorkerProcess(setup, log)
    try:
        # The marker is in the state table: it holds after the restart, then a new event
        # (produced after the request) starts a new state.
        librdkafka_produce(
            bootstrap,
            s.events_topic,
            [(b"zoe", event("zoe", 200), erase_at - 1), (b"zoe", event("zoe", 201), None)],
        )
        worker.wait_for(
            lambda: count(worker, "dropped_erased") >= 1 and count(worker, "ok") >= 1,
            120,
            "the two events",
        )
        status, body = worker.user("zoe")
        assert status == 200 and body["events_seen"] == 1
    finally:
        assert worker.stop() == 0
    assert worker_log_errors(log) == []
