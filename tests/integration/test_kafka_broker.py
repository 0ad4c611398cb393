"""The real broker works end to end: topic creation via the Kafka CLI, produce and consume."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from decay.kafka_broker import KafkaBroker

N_MESSAGES = 100
PARTITIONS = 3
DEADLINE_S = 30.0


async def _produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(N_MESSAGES):
            await producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str) -> dict[bytes, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        got: dict[bytes, int] = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < N_MESSAGES and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    assert record.value is not None
                    got[record.value] = tp.partition
        return got
    finally:
        await consumer.stop()


@pytest.mark.kafka
def test_create_topic_produce_consume(kafka_broker: KafkaBroker, bootstrap: str) -> None:
    topic = "it-broker-smoke"
    created = kafka_broker.run_tool(
        "topics",
        "--bootstrap-server", bootstrap,
        "--create", "--topic", topic,
        "--partitions", str(PARTITIONS), "--replication-factor", "1",
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr

    asyncio.run(_produce(bootstrap, topic))
    got = asyncio.run(_consume(bootstrap, topic))

    assert sorted(got) == sorted(f"v{i}".encode() for i in range(N_MESSAGES))
    assert set(got.values()) == set(range(PARTITIONS))  # the keys spread over all partitions
