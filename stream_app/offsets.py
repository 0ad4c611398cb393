"""Offsets against Faust's consumer: commits from what the processor applied (not from
Faust's per-message acks), and a reader for the records Faust's consumer skipped.

Faust commits, per partition, the end of the first unbroken run of acked offsets. After some
rebalances (seen in tests/integration/test_faults.py's two-worker test, faust-streaming 0.15.3)
a newly assigned partition has every record delivered twice, and the duplicate acks break
those runs: its commits then creep forward an offset or two per interval, or stop, while the
worker is long done. The worker acks anyway (so that Faust's wait for unacked messages during a
rebalance ends), and also commits itself: per active partition, the offset after the unbroken
run of offsets its processor applied, under the worker's lock (no batch half done), after the
producer is flushed (Faust's ``_commit_offsets`` does that first). This reaches into Faust's
consumer (``_commit_fut``, ``_commit_offsets``, ``_committed_offset``): pinned in pyproject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from decay.kafka_client import client_kwargs
from decay.settings import Settings


def committed_offsets(consumer: Any, topic: str) -> dict[int, int]:
    """What Faust last committed (or found committed at assignment) for ``topic``: the next
    offset to consume, per partition."""
    offsets = consumer._committed_offset
    return {
        tp.partition: offset
        for tp, offset in list(offsets.items())
        if tp.topic == topic and offset is not None
    }


async def commit_applied(consumer: Any, topic: str, applied: Mapping[int, int]) -> int:
    """Commit ``applied`` (partition -> next offset) where it is ahead of the committed offset
    and the partition is still assigned; returns how many partitions moved. One commit at a
    time with Faust's own, so that neither can overwrite the other with an older offset."""
    await consumer.maybe_wait_for_commit_to_finish()
    committed = committed_offsets(consumer, topic)
    assigned = consumer.assignment()
    offsets = {
        TP(topic, p): offset
        for p, offset in applied.items()
        if offset > committed.get(p, -1) and TP(topic, p) in assigned
    }
    if not offsets:
        return 0
    consumer._commit_fut = asyncio.get_running_loop().create_future()
    try:
        await consumer._commit_offsets(offsets)
    finally:
        fut, consumer._commit_fut = consumer._commit_fut, None
        if fut is not None and not fut.done():
            fut.set_result(None)
    return len(offsets)


class GapReader:
    """Reads a partition's records in an offset range with a consumer of its own (no group).

    When the worker is handed offset ``y`` of a partition where ``x < y`` was next, either
    nothing is stored at ``x .. y-1`` (transaction markers, compaction) or Faust's consumer
    dropped those records on their way in (it does after some rebalances: a fetch answered
    after its seek moves its read offset past them). Reading them here, rather than seeking
    Faust's consumer back, avoids that same race."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """The records at offsets ``start`` (included) to ``end`` (excluded). Raises
        TimeoutError when the consumer has not got past ``end - 1`` within the timeout."""
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **client_kwargs(self.settings),
                group_id=None,
                enable_auto_commit=False,
                client_id=f"{self.settings.app_id}-gap-reader",
            )
            await consumer.start()
            self._consumer = consumer
        consumer = self._consumer
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while await consumer.position(tp) < end:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"offsets {start}..{end - 1} of partition {partition}")
            got = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000))
            records += [r for r in got.get(tp, []) if start <= r.offset < end]
        return records

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
