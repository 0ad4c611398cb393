"""Offsets against Faust's consumer: commits from what the processor applied (not from
Faust's per-message acks), and a reader for the records Faust's consumer skipped.

Faust commits, per partition, the end of the first unbroken run of acked offsets. After some
rebalances (seen in tests/integration/test_faults.py's two-worker test, faust-streaming 0.15.3)
a newly assigned partition has every record delivered twice, and the duplicate acks break
those runs: its commits then creep forward an offset or two per interval, or stop, while the
worker is long done, and a late one can move the group's offset back. The worker now takes
the events topic's records past Faust's acks altogether (stream_app/runtime/intake.py: subscribed
with ``acks=False``, so Faust never commits that topic) and commits it itself: per active
partition, the offset after the unbroken run of offsets its processor applied, under the
worker's lock (no batch half done), after the producer is flushed (Faust's
``_commit_offsets`` does that first). This reaches into Faust's consumer (``_commit_fut``,
``_commit_offsets``, ``_committed_offset``, ``_paused_partitions``): pinned by
tests/unit/test_runtime_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.types import TP

from decay.settings import Settings
from decay_kafka.kafka_client import client_kwargs

log = logging.getLogger(__name__)


def committed_offsets(consumer: Any, topic: str) -> dict[int, int]:
    """What Faust last committed (or found committed at assignment) for ``topic``: the next
    offset to consume, per partition."""
    offsets = consumer._committed_offset
    return {
        tp.partition: offset
        for tp, offset in list(offsets.items())
        if tp.topic == topic and offset is not None
    }


@contextlib.asynccontextmanager
async def commit_slot(consumer: Any) -> AsyncIterator[None]:
    """Hold Faust's commit slot: Faust's own commits wait for it, and it waits for theirs,
    so that neither overwrites the other with an older offset."""
    await consumer.maybe_wait_for_commit_to_finish()
    consumer._commit_fut = asyncio.get_running_loop().create_future()
    try:
        yield
    finally:
        fut, consumer._commit_fut = consumer._commit_fut, None
        if fut is not None and not fut.done():
            fut.set_result(None)


def paused_partitions(consumer: Any) -> set[TP]:
    """The partitions Faust's consumer holds paused (during a table's recovery)."""
    return set(consumer._paused_partitions)


def forget_committed(consumer: Any, topic: str, partitions: Iterable[int]) -> None:
    """Drop what Faust's consumer holds as committed for revoked ``partitions``. Faust drops
    it when the revocation starts, but a commit under way then (the worker's, or one in a
    transaction) writes it back when it ends; if the partition comes back after another worker
    moved it on, that old offset would be taken for the committed one (seen in CI: alerts sent
    by the other worker re-sent)."""
    for p in partitions:
        consumer._committed_offset.pop(TP(topic, p), None)


def set_committed(consumer: Any, topic: str, partition: int, offset: int) -> None:
    """Tell Faust's consumer an offset was committed elsewhere (in a transaction): it
    commits only offsets above the last one it knows of."""
    consumer._committed_offset[TP(topic, partition)] = offset


async def commit_applied(
    consumer: Any, topic: str, applied: Mapping[int, int], valid: Callable[[], bool] | None = None
) -> int:
    """Commit ``applied`` (partition -> next offset) where it is ahead of the committed offset
    and the partition is still assigned; returns how many partitions moved. ``valid``: asked
    once the commit slot is held (nothing committed when False)."""
    async with commit_slot(consumer):
        if valid is not None and not valid():
            return 0
        committed = committed_offsets(consumer, topic)
        assigned = consumer.assignment()
        offsets = {
            TP(topic, p): offset
            for p, offset in applied.items()
            if offset > committed.get(p, -1) and TP(topic, p) in assigned
        }
        if offsets:
            await consumer._commit_offsets(offsets)
    return len(offsets)


class GroupOffsets:
    """The group's committed offsets, asked of its coordinator (OffsetFetch).

    A partition's records are applied from its committed offset on, and the alerts of the
    records past it are re-sent: that offset must be the broker's, as of the activation, not
    Faust's record of it, which lags behind after a rebalance (Faust looks it up again only
    after it resumes fetching) and can hold an offset from before another worker moved the
    partition on."""

    def __init__(self, settings: Settings, timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None

    async def fetch(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The next offset to consume per partition; partitions never committed are left
        out."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                **client_kwargs(self.settings), client_id=f"{self.settings.app_id}-offsets"
            )
            await admin.start()
            self._admin = admin
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return {}
        found = await self._ask(tps)
        return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def _ask(self, tps: list[TopicPartition]) -> dict[TopicPartition, Any]:
        """The OffsetFetch, asked again while the broker answers with a retriable error (a
        coordinator not yet elected after a broker restart), for up to ``timeout_s``."""
        assert self._admin is not None
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + self.timeout_s, 0.1
        while True:
            try:
                found: dict[TopicPartition, Any] = await self._admin.list_consumer_group_offsets(
                    self.settings.app_id, partitions=tps
                )
                return found
            except KafkaError as exc:
                if not exc.retriable or loop.time() + backoff > deadline:
                    raise
                log.warning("committed offsets not read (%s); asking again", exc)
                await asyncio.sleep(backoff)  # a retry's back-off, not a wait for an event
                backoff = min(backoff * 2, 2.0)

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


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

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **client_kwargs(self.settings),
                group_id=None,
                enable_auto_commit=False,
                client_id=f"{self.settings.app_id}-gap-reader",
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def start_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The offset of each partition's first record (its log start)."""
        consumer = await self._started()
        tps = [TopicPartition(topic, p) for p in partitions]
        starts = await consumer.beginning_offsets(tps) if tps else {}
        return {tp.partition: offset for tp, offset in starts.items()}

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The offset after each partition's last record (its log end)."""
        consumer = await self._started()
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: offset for tp, offset in ends.items()}

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """The records at offsets ``start`` (included) to ``end`` (excluded). Raises
        TimeoutError when the consumer has not got past ``end - 1`` within the timeout."""
        consumer = await self._started()
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
