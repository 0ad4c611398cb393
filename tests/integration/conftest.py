"""Fixtures for the integration tests that need a real Kafka broker (``pytest.mark.kafka``)."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: KafkaBroker) -> str:
    """``bootstrap.servers`` of the session broker."""
    return kafka_broker.bootstrap
