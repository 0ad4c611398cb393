"""A batch's messages handed to an aiokafka producer a record batch at a time.

``AIOKafkaProducer.send`` costs an ``await``, a future and the partitioner per message, and
Faust's ``Topic.send`` in front of it more again. Here the messages of each topic partition
are appended, in their order, to aiokafka ``BatchBuilder``s (a new one when one is full) and
each is handed over with one ``send_batch``: the records are those ``send`` would write (key,
value, headers, the given timestamp or the producer's time, the partition the key hashes to
with Kafka's default partitioner when none is given, all of a topic's keys hashed at once).
Delivery is per batch: every message of a batch fails or succeeds with it. A batch holds up
to what its topic takes (``record_batch_bytes``), not the producer's ``max_batch_size`` (see
stream_app.runtime.record_batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from stream_app.key_partitions import partitions_for
from stream_app.outbox import Outgoing
from stream_app.runtime.record_batch import new_batch

# The largest record batch sent to any topic: the broker's default max.message.bytes
# (1,048,588) less a margin.
MAX_BATCH_BYTES = 1_000_000
# A topic whose limit is not known (not readable: no DescribeConfigs permission; created
# later): the producer's own batch size, which any broker takes. A guess above its real
# limit would be refused whole, and the same uncommitted records would build it again.
UNKNOWN_LIMIT_BATCH_BYTES = 16_384


def record_batch_bytes(limits: Mapping[str, int], topic: str) -> int:
    """The size of the record batches sent to ``topic``: its ``max.message.bytes`` where
    ``limits`` has it (decay_kafka.topics.message_limits), at most ``MAX_BATCH_BYTES``;
    ``UNKNOWN_LIMIT_BATCH_BYTES`` where it does not."""
    return max(min(limits.get(topic, UNKNOWN_LIMIT_BATCH_BYTES), MAX_BATCH_BYTES), 1)


async def send_batches(
    producer: AIOKafkaProducer,
    messages: Sequence[Outgoing],
    limits: Mapping[str, int] | None = None,
) -> list[asyncio.Future[Any]]:
    """Hand ``messages`` over; per message, the future of the batch that holds it.
    ``limits``: the topics' ``max.message.bytes`` (see record_batch_bytes)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, partition in enumerate(await _partitions(producer, messages)):
        groups.setdefault((messages[i].topic, partition), []).append(i)
    futures: list[Any] = [None] * len(messages)
    for (topic, partition), members in groups.items():
        size = record_batch_bytes(limits or {}, topic)
        batch, held = new_batch(producer, size), list[int]()
        for i in members:
            if not _append(batch, messages[i]):  # full
                _assign(futures, held, await _send(producer, batch, topic, partition))
                batch, held = new_batch(producer, size), list[int]()
                _append(batch, messages[i])  # an empty batch takes any record
            held.append(i)
        _assign(futures, held, await _send(producer, batch, topic, partition))
    return futures


async def _partitions(producer: AIOKafkaProducer, messages: Sequence[Outgoing]) -> list[int]:
    """Each message's partition: the one given, else its key's with Kafka's default
    partitioner (all keys of a topic hashed at once, stream_app.key_partitions)."""
    out = [-1] * len(messages)
    keyed: dict[str, list[int]] = {}
    for i, m in enumerate(messages):
        if m.partition is not None:
            out[i] = m.partition
        elif m.key is None:  # the default partitioner would pick one at random
            raise ValueError(f"a message to {m.topic} with neither key nor partition")
        else:
            keyed.setdefault(m.topic, []).append(i)
    for topic, rows in keyed.items():
        count = len(await producer.partitions_for(topic))  # waits for metadata, as send does
        found = partitions_for([messages[i].key or b"" for i in rows], count)
        for i, partition in zip(rows, found.tolist(), strict=True):
            out[i] = partition
    return out


def _append(batch: Any, m: Outgoing) -> bool:
    headers = list(m.headers)
    return (
        batch.append(key=m.key, value=m.value, timestamp=m.timestamp_ms, headers=headers)
        is not None
    )


async def _send(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> Any:
    batch.close()  # no ``send`` joins it: its records are in this order only
    return await producer.send_batch(batch, topic, partition=partition)


def _assign(futures: list[Any], members: list[int], fut: Any) -> None:
    for i in members:
        futures[i] = fut
