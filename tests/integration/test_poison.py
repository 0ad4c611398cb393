"""Records the broker accepts but the worker cannot apply (a record of the topic's maximum
size, a 10,000-byte key) are dead-lettered, cut to what the dead-letter topic takes, and
counted; the worker goes on and applies what follows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from decay_cli.replay import encode
from decay_kafka.topics import message_limits
from stream_app import dead_letters
from tests.integration.harness import (
    Setup,
    WorkerProcess,
    read_topic,
    run_to_end,
)

pytestmark = pytest.mark.kafka


def largest_value(key: bytes, limit: int) -> int:
    """The longest value that, with ``key``, is a record batch of at most ``limit`` bytes."""
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if dead_letters.record_size(key, b"x" * mid, ()) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


async def produce_large(bootstrap: str, topic: str, messages: list, limit: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=limit, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at_least_once", "exactly_once"])
def test_a_record_of_the_broker_maximum_size_is_dead_lettered_and_the_worker_goes_on(
    bootstrap: str, tmp_path: Path, exactly_once: bool
) -> None:
    name = f"poison-{'eos' if exactly_once else 'alo'}"
    setup = Setup(name, bootstrap, tmp_path / "state", overrides={"exactly_once": exactly_once})
    setup.create_topics()
    s = setup.settings()
    limit = asyncio.run(message_limits(s, [s.events_topic]))[s.events_topic]
    key = b"mallory"
    huge = b'"' + b"x" * (largest_value(key, limit) - 2) + b'"'
    assert dead_letters.record_size(key, huge, ()) == limit  # as large as the broker takes
    long_key = b"k" * 10_000
    good = [
        encode(
            {
                "event_id": f"e{i}",
                "user_id": key.decode(),
                "ts": 1_704_100_000_000 + i,
                "type": "view",
            }
        )
        for i in range(20)
    ]
    messages = [*good[:10], (key, huge), (long_key, b"{}"), *good[10:]]
    asyncio.run(produce_large(bootstrap, s.events_topic, messages, limit))

    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        run_to_end(worker, setup, len(messages), 120)
        m = worker.metrics()
        assert m['decay_events_total{result="ok"}'] == len(good)
        assert m['decay_dead_letters_total{reason="too_large"}'] == 1
        assert m["decay_dead_letters_failed_total"] == 0
        dead = read_topic(bootstrap, s.dead_letter_topic)
        assert len(dead) == 2
        by_offset = {int(dict(d.headers)["decay-source-offset"]): d for d in dead}
        big, odd = by_offset[10], by_offset[11]

        h = {k: v.decode() for k, v in big.headers}
        assert h["decay-reason"] == "too_large"
        assert h[dead_letters.TRUNCATED] == "value"
        assert int(h[dead_letters.ORIGINAL_VALUE_BYTES]) == len(huge)
        assert big.key == key
        assert huge.startswith(big.value) and len(big.value) > len(huge) - 2048
        assert dead_letters.record_size(big.key, big.value, tuple(big.headers)) <= limit

        h = {k: v.decode() for k, v in odd.headers}
        assert h[dead_letters.TRUNCATED] == "key"
        assert int(h[dead_letters.ORIGINAL_KEY_BYTES]) == len(long_key)
        assert odd.key == long_key[: dead_letters.MAX_KEY_BYTES]
        assert odd.value == b"{}"

        status, body = worker.user(key.decode())
        assert status == 200 and body["events_seen"] == len(good)
        assert worker.proc.poll() is None  # still running
    finally:
        assert worker.stop() == 0
