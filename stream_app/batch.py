"""What a batch of the processor takes and gives, and how it is configured.

Kept apart from ``stream_app.processor`` so that the worker, the delivery and the tests can
name these types without the processor's logic (``stream_app.processor`` re-exports them).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from decay.engagement import EngagementRules
from decay.errors import DecayError
from decay.events import Event
from decay.explanations import EVENTS
from decay.rows import Snapshot
from decay.state import UserState
from decay.trends import TrendRules


def f32(value: float) -> float:
    """Round to what the stored state keeps (float32), so that a value does not depend on
    whether it went through the store between two events, i.e. on the batch boundaries."""
    return float(np.float32(value))


UserKey = tuple[int, str]  # (partition, user's state key)


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0  # the record's Kafka timestamp, epoch ms


@dataclass(frozen=True, slots=True)
class Forward:
    """A valid event that came on a partition not its user's own: it goes to ``partition``
    through the repartition topic (see Processor.process_forwarded)."""

    record: Record
    partition: int
    user_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str
    detail: str
    source: str | None = None  # the topic it came from, when not the events topic


@dataclass(frozen=True, slots=True)
class OutAlert:
    partition: int
    user_id: str
    kind: str
    payload: bytes


@dataclass(slots=True)
class BatchOutput:
    """What a batch produced. ``writes`` maps (partition, key) to the new record."""

    writes: dict[tuple[int, str], bytes] = field(default_factory=dict)
    deletes: list[tuple[int, str]] = field(default_factory=list)
    alerts: list[OutAlert] = field(default_factory=list)
    scores: list[OutAlert] = field(default_factory=list)  # for the optional scores topic
    dead_letters: list[DeadLetter] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # ok, invalid, duplicate, late...
    resent: int = 0
    # A partition whose records jumped past the next offset: partition -> (the missing
    # offset, the offset that came instead). Its records from there on are in ``held``, not
    # applied: the caller finds out whether the missing offsets exist (see accept_gap).
    gaps: dict[int, tuple[int, int]] = field(default_factory=dict)
    held: list[Record] = field(default_factory=list)
    score_seconds: float = 0.0
    peaks: list[float] = field(default_factory=list)  # interest right after each event


class ProcessorHalted(DecayError, RuntimeError):
    """Raised by a processor that halted after a failed batch (see Processor.halt)."""


class StateStore(Protocol):
    """Per-partition key/value storage: stream_app.store.MemoryStore, and the Faust RocksDB
    table of the worker (stream_app.runtime.table_store). The processor only reads; its
    caller applies the batch's writes and deletes with ``write``."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...

    def delete(self, partition: int, key: str) -> None: ...

    async def write(
        self, puts: Mapping[UserKey, bytes], deletes: Collection[UserKey]
    ) -> list[asyncio.Future[Any]]:
        """A batch's changes: per partition, ``puts`` in their order, then ``deletes``, in one
        step. The futures of their delivery to the store's changelog, if it has one: a
        failed one means the store's backup is behind what was applied."""
        ...

    def scan(self, partition: int, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """The partition's keys that start with ``prefix``, with their values, as they are
        when called (a snapshot, which another thread may read while the store is written)."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    max_events: int | None = None  # None: the scorer's window_events (else 64)
    grace_ms: int = 60 * 60 * 1000
    threshold: float = 0.2
    keep_alerts: int = 4
    max_future_ms: int = 7 * 86_400_000
    # When a category's engagement has really dropped (decay.engagement).
    engagement: EngagementRules = field(default_factory=EngagementRules)
    # Publish a user's score after an event when it moved by more than score_min_change
    # since the user's previous event (0: after every event).
    publish_scores: bool = False
    score_min_change: float = 0.1
    # The events topic's partition count: a user's own partition is where Kafka's default
    # (murmur2) partitioner puts the user id; events that came elsewhere are forwarded there.
    # None: every event is applied on the partition it came on.
    partitions: int | None = None
    # How long (in record time) an erased user's marker drops the user's older events.
    erase_hold_ms: int = 7 * 86_400_000
    # The per-category decayed interest of the partition's users (decay.trends).
    trends: TrendRules = field(default_factory=TrendRules)
    # Each alert names which of the user's last explain_events events moved its score most
    # (stream_app.explaining; 0: alerts carry no explanation).
    explain_events: int = EVENTS


class Step(Snapshot):
    """An applied event of a batch, with its user's window right after it (``window``,
    made when read). Not a dataclass: one is made per event."""

    __slots__ = ("event", "max_ts", "offset", "partition", "ukey")

    def __init__(
        self, event: Event, offset: int, ukey: UserKey, st: UserState, max_ts: int
    ) -> None:
        self.event = event
        self.offset = offset
        self.partition, self.ukey = ukey[0], ukey
        self.max_ts = max_ts  # the partition's newest event time after this event
        self.take(st)
