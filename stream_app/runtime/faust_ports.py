"""The worker's ports (stream_app.ports) over Faust's app, consumer and producer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TP

from decay.errors import DecayError
from stream_app.outbox import Outgoing
from stream_app.processor import Record
from stream_app.producer_batches import send_batches
from stream_app.runtime import offsets


class FaustGroup:
    """``stream_app.ports.Group`` over a Faust app's consumer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def assigned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    def flowing(self) -> bool:
        return bool(self.app.flow_control.is_active())

    def holding(self) -> bool:
        return bool(self.app.rebalancing or self.app.in_recovery)

    def paused(self, topic: str) -> set[int]:
        paused = offsets.paused_partitions(self.app.consumer)
        return {tp.partition for tp in paused if tp.topic == topic}

    def highwater(self, topic: str, partition: int) -> int | None:
        tp = TP(topic, partition)
        if tp not in self.app.consumer.assignment():
            return None
        try:
            found = self.app.consumer.highwater(tp)
        except AssertionError:  # revoked meanwhile (aiokafka runs in its own thread)
            return None
        return None if found is None else int(found)

    def recovery_remaining(self) -> int:
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]
        return int(recovery.active_remaining_total())

    def committed(self, topic: str) -> dict[int, int]:
        return offsets.committed_offsets(self.app.consumer, topic)

    def set_committed(self, topic: str, partition: int, offset: int) -> None:
        offsets.set_committed(self.app.consumer, topic, partition, offset)

    def forget_committed(self, topic: str, partitions: Iterable[int]) -> None:
        offsets.forget_committed(self.app.consumer, topic, partitions)

    async def commit(
        self, topic: str, applied: Mapping[int, int], valid: Callable[[], bool] | None = None
    ) -> int:
        return await offsets.commit_applied(self.app.consumer, topic, applied, valid)

    def commit_slot(self) -> AbstractAsyncContextManager[None]:
        return offsets.commit_slot(self.app.consumer)

    async def crash(self, exc: BaseException) -> None:
        await self.app.crash(exc)

    def spawn(self, work: Awaitable[None]) -> None:
        self.app.add_future(work)


class ProducerNotReady(DecayError, RuntimeError):
    """The app's producer has not started (or has stopped): nothing can be sent."""


def aiokafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The app's started aiokafka producer, inside Faust's (``Producer._producer``)."""
    producer = app.producer._producer  # type: ignore[attr-defined]
    if producer is None:
        raise ProducerNotReady("the app's producer is not running")
    return cast(AIOKafkaProducer, producer)


class FaustProducer:
    """``stream_app.ports.Producer`` over the app's topics (declared raw bytes both ways)."""

    def __init__(
        self, app: faust.App, topics: dict[str, Any], limits: Mapping[str, int] | None = None
    ) -> None:
        """``limits``: the topics' ``max.message.bytes``, the size of the record batches
        ``send_batches`` hands over (stream_app.producer_batches.record_batch_bytes)."""
        self.app = app
        self.topics = topics
        self.limits = limits or {}

    async def send_batches(self, messages: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
        if not messages:
            return []
        return await send_batches(aiokafka_producer(self.app), messages, self.limits)

    async def send(self, m: Outgoing) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = await self.topics[m.topic].send(
            key=m.key,
            value=m.value,
            partition=m.partition,
            timestamp=m.timestamp_ms / 1000.0 if m.timestamp_ms else None,
            headers=list(m.headers),
        )
        return fut

    async def flush(self) -> None:
        await self.app.producer.flush()


def record_of(msg: Any) -> Record:
    """A Faust message as the processor's record (its Kafka timestamp in ms)."""
    timestamp = int(msg.timestamp * 1000) if msg.timestamp else 0
    return Record(msg.partition, msg.offset, msg.key, msg.value, timestamp)


async def each_record(stream: Any, handle: Callable[[Record], Awaitable[str]]) -> None:
    """A Faust agent's stream, one record at a time, acked only when ``handle`` says "ack";
    the agent ends when it says "stop" (the worker is stopping)."""
    async for event in stream.noack().events():
        verdict = await handle(record_of(event.message))
        if verdict == "stop":
            return
        if verdict == "ack":
            await stream.ack(event)
