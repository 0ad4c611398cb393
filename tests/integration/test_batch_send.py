"""Messages handed over a record batch per topic partition (stream_app.producer_batches)
land as ``AIOKafkaProducer.send`` puts them: same partition (the key's, or the one given),
key, value, headers and timestamp, in order, however many batches they fill: one per
partition when the topic takes them all in one, several when its limit is lower."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.outbox import Outgoing
from stream_app.producer_batches import send_batches

PARTITIONS = 3
DEADLINE_S = 30.0


def messages(topic: str) -> list[Outgoing]:
    out = []
    for i in range(300):  # ~1 KB each: several batches per partition at a 16 KB limit
        key = f"user-{i % 40}".encode()
        value = bytes([i % 256]) * 1000
        if i % 3 == 0:
            out.append(Outgoing(topic, key, value, (("h", str(i).encode()),)))
        elif i % 3 == 1:
            out.append(Outgoing(topic, key, value, partition=i % PARTITIONS, timestamp_ms=1000 + i))
        else:
            out.append(Outgoing(topic, key, value, timestamp_ms=1_704_067_200_123 + i))
    return out


async def _read(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[Any] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                got += records
        return got
    finally:
        await consumer.stop()


async def _send_both(bootstrap: str, limit: int | None) -> tuple[list[Any], list[Any], int]:
    one, batched = f"one-{uuid.uuid4().hex[:8]}", f"batched-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (one, batched)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1, linger_ms=5)
    await producer.start()
    try:
        for m in messages(one):
            await producer.send(
                one, m.value, key=m.key, partition=m.partition, timestamp_ms=m.timestamp_ms,
                headers=list(m.headers),
            )  # fmt: skip
        limits = {} if limit is None else {batched: limit}
        futures = await send_batches(producer, messages(batched), limits)
        await producer.flush()
        results = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    n = len(messages(one))
    return await _read(bootstrap, one, n), await _read(bootstrap, batched, n), len(set(results))


def _fields(r: Any) -> tuple[Any, ...]:
    return (r.partition, r.offset, r.key, r.value, tuple(r.headers))


@pytest.mark.kafka
@pytest.mark.parametrize("limit", [16_384, 1_048_588, None])
def test_batched_messages_land_as_one_by_one_sends_put_them(
    bootstrap: str, limit: int | None
) -> None:
    one, batched, batches = asyncio.run(_send_both(bootstrap, limit))
    assert len(one) == len(batched) == 300
    order = sorted(one, key=lambda r: (r.partition, r.offset))
    got = sorted(batched, key=lambda r: (r.partition, r.offset))
    assert [_fields(r) for r in got] == [_fields(r) for r in order]
    before = time.time() * 1000 - 86_400_000  # a timestamp given, not the producer's now

    def given(records: list[Any]) -> list[tuple[int, int, int]]:
        return [(r.partition, r.offset, r.timestamp) for r in records if r.timestamp < before]

    assert len(given(got)) == 200 and given(got) == given(order)
    assert all(r.timestamp_type == 0 for r in got)  # CreateTime, as the producer's
    if limit is not None and limit > 100_000:  # 100 KB a partition: one batch each
        assert batches == PARTITIONS
    else:  # 16 KB batches (the topic's limit, or a limit not known): a few a partition
        assert PARTITIONS < batches < 300
