"""What the worker needs of the world, as small interfaces (after kstreams and quixstreams:
the stream engine is injected, the logic is not tied to it).

``stream_app.runtime.faust_ports`` implements them over Faust's consumer and producer, and
``stream_app.testing`` in memory, for tests of the whole batch/commit/rebalance sequence
without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from stream_app.outbox import Outgoing


@dataclass(frozen=True, slots=True)
class Fetched:
    """The records of one partition from one fetch (aiokafka ConsumerRecords or any object
    with ``offset``, ``key``, ``value`` and ``timestamp``, in order)."""

    generation: int
    partition: int
    records: Sequence[Any]
    fetched_at: float = 0.0  # time.time() when the intake got it (the "fetch" stage's end)


class Group(Protocol):
    """The worker's place in its consumer group, and the offsets it committed."""

    def assigned(self, topic: str) -> set[int]: ...

    def generation(self) -> int: ...

    def flowing(self) -> bool:
        """False while a rebalance holds the flow: nothing fetched may be applied."""
        ...

    def holding(self) -> bool:
        """A rebalance or a table's recovery is under way (partitions are held back)."""
        ...

    def paused(self, topic: str) -> set[int]: ...

    def highwater(self, topic: str, partition: int) -> int | None: ...

    def recovery_remaining(self) -> int: ...

    def committed(self, topic: str) -> dict[int, int]:
        """The next offset to consume per partition, as last committed or found committed."""
        ...

    def set_committed(self, topic: str, partition: int, offset: int) -> None:
        """An offset committed elsewhere (in a transaction, or looked up on the broker)."""
        ...

    def forget_committed(self, topic: str, partitions: Iterable[int]) -> None: ...

    async def commit(
        self, topic: str, offsets: Mapping[int, int], valid: Callable[[], bool] | None = None
    ) -> int:
        """Commit where ahead of the committed offset and still assigned; how many moved.
        ``valid``: asked once this commit holds the commit slot; nothing is committed if
        it says False."""
        ...

    def commit_slot(self) -> AbstractAsyncContextManager[None]:
        """Held while committing: no other commit may overwrite this one with an older offset."""
        ...

    async def crash(self, exc: BaseException) -> None:
        """Stop the worker for good."""
        ...

    def spawn(self, work: Awaitable[None]) -> None: ...


class Batches(Protocol):
    """The events topic's fetches, taken in micro-batches."""

    async def take(self, max_records: int, within_s: float) -> list[Fetched]: ...

    def backlog(self) -> bool:
        """Whether fetched records wait to be taken."""
        ...


class CommittedLookup(Protocol):
    """The group's committed offsets as the broker has them now."""

    async def fetch(self, topic: str, partitions: Iterable[int]) -> dict[int, int]: ...

    async def stop(self) -> None: ...


class TopicReader(Protocol):
    """Reads a partition's records directly: the ones the consumer skipped or stalled on."""

    async def start_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The offset of each partition's first record (its log start)."""
        ...

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]: ...

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]: ...

    async def stop(self) -> None: ...


class Producer(Protocol):
    async def send(self, message: Outgoing) -> asyncio.Future[Any]:
        """Hand one message over; the future of its delivery."""
        ...

    async def send_batches(self, messages: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
        """Hand ``messages`` over in a few record batches (in order per topic partition;
        each with a key or a partition); per message, the future of its batch's delivery."""
        ...

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Ports:
    group: Group
    batches: Batches
    committed: CommittedLookup
    reader: TopicReader
    producer: Producer
