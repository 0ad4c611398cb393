"""The worker's ports in memory (after kstreams' test_utils): a log of topics, a consumer
group whose assignment a test moves by hand, and a producer that appends to the log. With
them a test drives a real ``Worker`` through batches, commits, rebalances and failures
without a broker; the integration suite runs the same worker over Faust and Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from stream_app.outbox import Outgoing
from stream_app.ports import Fetched, Ports
from stream_app.queries import partition_for


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record as a consumer reads it (aiokafka's fields; timestamp in ms)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class MemoryLog:
    """Topics of ``partitions`` partitions each, and the group's committed offsets."""

    partitions: int
    topics: dict[str, list[list[LogRecord]]] = field(default_factory=dict)
    group_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def of(self, topic: str) -> list[list[LogRecord]]:
        return self.topics.setdefault(topic, [[] for _ in range(self.partitions)])

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int = 0,
        partition: int | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
    ) -> tuple[int, int]:
        """Append as Kafka's default partitioner would (murmur2 of the key); (partition,
        offset)."""
        if partition is None:
            partition = partition_for(key or b"", self.partitions)
        records = self.of(topic)[partition]
        records.append(LogRecord(partition, len(records), key, value, timestamp_ms, tuple(headers)))
        return partition, len(records) - 1

    def read(self, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
        return self.of(topic)[partition][start:end]

    def values(self, topic: str) -> list[bytes]:
        return [r.value or b"" for part in self.of(topic) for r in part]


class MemoryGroup:
    """``stream_app.ports.Group`` for one worker: ``assign`` is a rebalance."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.assignment: dict[str, set[int]] = {}
        self.gen = 0
        self.flow = True
        self.known: dict[tuple[str, int], int] = {}  # the consumer's view of its commits
        self.crashed: BaseException | None = None
        self.tasks: list[asyncio.Future[Any]] = []

    def assign(self, topics: Iterable[str], partitions: Iterable[int]) -> None:
        parts = set(partitions)
        self.assignment = {t: set(parts) for t in topics}
        self.gen += 1
        for t in self.assignment:
            for p in parts:
                if (t, p) in self.log.group_offsets:
                    self.known[(t, p)] = self.log.group_offsets[(t, p)]

    def assigned(self, topic: str) -> set[int]:
        return set(self.assignment.get(topic, set()))

    def generation(self) -> int:
        return self.gen

    def flowing(self) -> bool:
        return self.flow

    def holding(self) -> bool:
        return not self.flow

    def paused(self, topic: str) -> set[int]:
        return set()

    def highwater(self, topic: str, partition: int) -> int | None:
        if partition not in self.assigned(topic):
            return None
        return len(self.log.of(topic)[partition])

    def recovery_remaining(self) -> int:
        return 0

    def committed(self, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self.known.items() if t == topic}

    def set_committed(self, topic: str, partition: int, offset: int) -> None:
        self.known[(topic, partition)] = offset

    def forget_committed(self, topic: str, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.known.pop((topic, p), None)

    async def commit(
        self, topic: str, offsets: Mapping[int, int], valid: Callable[[], bool] | None = None
    ) -> int:
        if valid is not None and not valid():
            return 0
        moved = 0
        for p, offset in offsets.items():
            if offset > self.known.get((topic, p), -1) and p in self.assigned(topic):
                self.known[(topic, p)] = self.log.group_offsets[(topic, p)] = offset
                moved += 1
        return moved

    def commit_slot(self) -> AbstractAsyncContextManager[None]:
        return _no_wait()

    async def crash(self, exc: BaseException) -> None:
        self.crashed = exc

    def spawn(self, work: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(work))


@contextlib.asynccontextmanager
async def _no_wait() -> AsyncIterator[None]:
    yield  # one worker per group object, and its commits run under the worker's lock


class MemoryBatches:
    """``stream_app.ports.Batches``: each take reads the assigned partitions on from where
    the previous one stopped (from the committed offset after a rebalance)."""

    def __init__(self, log: MemoryLog, group: MemoryGroup, topic: str) -> None:
        self.log = log
        self.group = group
        self.topic = topic
        self.positions: dict[int, int] = {}
        self._gen = -1

    def fetch(self, max_records: int) -> list[Fetched]:
        if self._gen != self.group.gen:  # a rebalance: seek to the committed offsets
            self._gen = self.group.gen
            self.positions = {
                p: self.group.known.get((self.topic, p), 0) for p in self.group.assigned(self.topic)
            }
        fetched = []
        for p in sorted(self.positions):
            start = self.positions[p]
            records = self.log.read(self.topic, p, start, start + max_records)
            if records:
                fetched.append(Fetched(self.group.gen, p, records, time.time()))
                self.positions[p] = start + len(records)
        return fetched

    async def take(self, max_records: int, within_s: float) -> list[Fetched]:
        return self.fetch(max_records)

    def backlog(self) -> bool:
        return False


class MemoryLookup:
    """``stream_app.ports.CommittedLookup``: the log's group offsets."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log

    async def fetch(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        offsets = self.log.group_offsets
        return {p: offsets[(topic, p)] for p in partitions if (topic, p) in offsets}

    async def stop(self) -> None:
        return None


class MemoryReader:
    """``stream_app.ports.TopicReader`` over the log."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log

    async def start_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: 0 for p in partitions}  # nothing is deleted from a memory log

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: len(self.log.of(topic)[p]) for p in partitions}

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        return list(self.log.read(topic, partition, start, end))

    async def stop(self) -> None:
        return None


class MemoryProducer:
    """``stream_app.ports.Producer``: appends to the log at once. ``fail_topic``: the
    deliveries to that topic fail (the broker refused them), to test what follows."""

    def __init__(self, log: MemoryLog, fail_topic: str | None = None) -> None:
        self.log = log
        self.fail_topic = fail_topic

    async def send(self, message: Outgoing) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if message.topic == self.fail_topic:
            fut.set_exception(RuntimeError(f"delivery to {message.topic} refused"))
            return fut
        where = self.log.append(
            message.topic,
            message.key,
            message.value,
            message.timestamp_ms or 0,
            message.partition,
            message.headers,
        )
        fut.set_result(where)
        return fut

    async def send_batches(self, messages: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
        return [await self.send(m) for m in messages]

    async def flush(self) -> None:
        return None


def memory_ports(log: MemoryLog, topic: str, fail_topic: str | None = None) -> Ports:
    """A worker's ports over ``log``, consuming ``topic``."""
    group = MemoryGroup(log)
    return Ports(
        group=group,
        batches=MemoryBatches(log, group, topic),
        committed=MemoryLookup(log),
        reader=MemoryReader(log),
        producer=MemoryProducer(log, fail_topic),
    )
