"""An empty aiokafka record batch of a given size.

``AIOKafkaProducer.create_batch`` makes batches of the producer's ``max_batch_size`` (16 KB as
Faust configures it), and aiokafka keeps one batch per topic partition in its accumulator
and one produce request per broker in flight: a batch's state changelog of a few hundred KB
went out as tens of requests, each waiting for the broker's acknowledgement of the one before,
with their futures, callbacks and persisted-offset writes. A batch as large as the topic
takes (``max.message.bytes``) sends them in one.

Makes the batch as ``MessageAccumulator.create_builder`` does (the producer's compression,
its transactional flag, its serializers) but for the given size: uses aiokafka's
``_message_accumulator``, ``_compression_type``, ``_txn_manager``, ``_key_serializer`` and
``_value_serializer``, pinned by tests/unit/test_runtime_contract.py.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder


def new_batch(producer: AIOKafkaProducer, max_bytes: int) -> BatchBuilder:
    """An empty batch of ``producer`` that takes records up to ``max_bytes`` in all (its
    first record whatever its size, as aiokafka's batches do)."""
    accumulator = producer._message_accumulator
    txn = accumulator._txn_manager
    return BatchBuilder(
        max_bytes,
        accumulator._compression_type,
        is_transactional=txn is not None and txn.transactional_id is not None,
        key_serializer=producer._key_serializer,
        value_serializer=producer._value_serializer,
    )
