"""Fixtures for the integration tests that need a real Kafka broker (``pytest.mark.kafka``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from decay.kafka_broker import KafkaBroker, find_repo_root

# Not 19092/19093: those are the developer's demo broker (deploy/kafka/kafka.sh defaults).
TEST_KAFKA_PORT = 19192
TEST_KAFKA_CONTROLLER_PORT = 19193


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A fresh single-node broker for the whole session, on its own data dir and ports."""
    broker = KafkaBroker(
        find_repo_root(),
        data_dir=tmp_path_factory.mktemp("kafka"),
        port=TEST_KAFKA_PORT,
        controller_port=TEST_KAFKA_CONTROLLER_PORT,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _warm_group_coordinator(bootstrap: str) -> None:
    """Join and commit in a throwaway group, so the broker creates and loads its offsets topic.

    On a brand-new broker the first group join races the creation of ``__consumer_offsets``
    ("coordinator not available" / "marking the coordinator dead"); doing it once here keeps
    that out of the tests' timings.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="warm-up", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.commit({TopicPartition("__warm_up", 0): 0}), 60)
    except Exception:  # the topic need not exist: the join is what warms the coordinator
        pass
    finally:
        await consumer.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: KafkaBroker) -> str:
    """``bootstrap.servers`` of the session broker, its group coordinator ready."""
    asyncio.run(_warm_group_coordinator(kafka_broker.bootstrap))
    return kafka_broker.bootstrap
