"""Exactly-once delivery (``DECAY_EXACTLY_ONCE=true``): a batch's messages and its offsets in
one Kafka transaction per partition of the events topic.

Each partition has its own transactional producer, ``transactional.id`` = app id, events
topic, partition: when a partition moves (rebalance, or its worker killed), the new owner's
producer starts with the same id, which fences the old one and aborts its open transaction.
So a ``read_committed`` subscriber of the alerts topic sees a batch's alerts once, and only if
the group's offset moved past the batch's records.

State stays outside the transactions (Faust's changelog): it is flushed before each commit,
so it is never behind the committed offsets. After a crash it may be ahead of them: the next
owner skips the records already applied and re-sends the alerts the states remember for
records past the committed offset (``Processor._activate``), in its first transaction: the
aborted copies are never read. What this does not cover is in docs/delivery.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from decay.settings import Settings
from decay_kafka.kafka_client import client_kwargs
from stream_app import outbox
from stream_app.outbox import Outgoing
from stream_app.producer_batches import send_batches


def aiokafka_send(producer: AIOKafkaProducer) -> outbox.Send:
    async def send(m: Outgoing) -> Any:
        return await producer.send(
            m.topic,
            m.value,
            key=m.key,
            partition=m.partition,
            timestamp_ms=m.timestamp_ms,
            headers=list(m.headers),
        )

    return send


class PartitionTransactions:
    def __init__(
        self,
        settings: Settings,
        on_failed: outbox.OnFailed,
        limits: dict[str, int] | None = None,
        **producer: Any,
    ) -> None:
        """``limits``: the topics' ``max.message.bytes`` (the size of the record batches
        sent, see stream_app.producer_batches); ``producer``: AIOKafkaProducer options."""
        self.settings = settings
        self.on_failed = on_failed  # a best-effort message that could not be sent
        self.limits = limits or {}
        self.producer_kwargs = producer
        self.group_id = settings.app_id  # Faust's consumer group is the app id
        self._producers: dict[int, AIOKafkaProducer] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self.settings.app_id}-{self.settings.events_topic}-{partition}"

    async def _producer(self, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            producer = AIOKafkaProducer(
                **client_kwargs(self.settings),
                transactional_id=self.transactional_id(partition),
                enable_idempotence=True,
                client_id=f"{self.settings.app_id}-txn-{partition}",
                **self.producer_kwargs,
            )
            await producer.start()  # InitProducerId: fences the partition's previous owner
            self._producers[partition] = producer
        return producer

    async def fence(self, partitions: Iterable[int]) -> None:
        """Start the producers of ``partitions`` now: the partitions' previous owners are fenced
        and their open transactions aborted (or completed) before this worker looks up the
        committed offsets it starts from."""
        for p in partitions:
            await self._producer(p)

    async def commit(
        self, partition: int, messages: Sequence[Outgoing], next_offset: int | None
    ) -> None:
        """Send ``messages`` and, when given, commit ``next_offset`` of the events topic's
        ``partition`` for the group, all in one transaction. Raises when the transaction
        fails (fenced, timed out): the caller must not acknowledge the batch."""
        if not messages and next_offset is None:
            return
        producer = await self._producer(partition)
        async with producer.transaction():
            bulk = []
            for m in messages:
                if m.best_effort:
                    await outbox.send(aiokafka_send(producer), m, self.on_failed)
                else:
                    bulk.append(m)
            await send_batches(producer, bulk, self.limits)  # delivered (or raising) by the commit
            if next_offset is not None:
                tp = TopicPartition(self.settings.events_topic, partition)
                await producer.send_offsets_to_transaction({tp: next_offset}, self.group_id)

    async def close(self, partitions: Iterable[int] | None = None) -> None:
        """Stop the producers of ``partitions`` (all by default): a partition's next owner
        starts its own, with the same transactional id."""
        chosen = list(self._producers) if partitions is None else list(partitions)
        for p in chosen:
            producer = self._producers.pop(p, None)
            if producer is not None:
                await producer.stop()
