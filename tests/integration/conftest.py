"""Fixtures for the integration tests that need a real Kafka broker (``pytest.mark.kafka``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from decay_kafka.kafka_broker import KafkaBroker, find_repo_root


def _free_ports(n: int) -> list[int]:
    """Free loopback ports (not 19092/19093, the developer's demo broker, and not another test
    session's: several sessions may run on one machine)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A fresh single-node broker for the whole session, on its own data dir and ports."""
    port, controller_port = _free_ports(2)
    broker = KafkaBroker(
        find_repo_root(),
        data_dir=tmp_path_factory.mktemp("kafka"),
        port=port,
        controller_port=controller_port,
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
