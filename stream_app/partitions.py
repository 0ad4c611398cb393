"""One partition's clock and deadline schedule, and how it is rebuilt from the state table.

Event time (docs/design.md, "Time"): each partition keeps a watermark, the newest event time
seen minus a grace period. A user's dormancy deadline is computed when the event arrives and
scheduled here; it fires when the partition's watermark passes it.
"""

from __future__ import annotations

import heapq
import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from decay import alerts as al
from decay.state import StateError, decode_state, peek_state
from stream_app.batch import BatchOutput, OutAlert, ProcessorHalted, Record, StateStore

log = logging.getLogger(__name__)

WATERMARK_KEY: Final = "\x00watermark"
_WM = struct.Struct("<qq")  # newest event time seen, offset of the last record applied
# An erased user's marker: the erase request's record time, so that the user's events
# produced before it and still in a backlog are dropped when they come (see Processor.erase).
ERASED_PREFIX: Final = "\x00erased:"
_ERASED = struct.Struct("<q")


def erased_key(user_key: str) -> str:
    return ERASED_PREFIX + user_key


def pack_erased(erased_at_ms: int) -> bytes:
    return _ERASED.pack(erased_at_ms)


@dataclass(slots=True)
class PartitionState:
    max_ts: int
    last_offset: int
    # Pending deadline per user, and a heap over them that may hold superseded entries
    # (they are skipped when popped, and purged when they outnumber the live ones).
    current: dict[str, int] = field(default_factory=dict)
    heap: list[tuple[int, str]] = field(default_factory=list)
    last_seen_wall_ms: int = 0
    users: int = 0
    # Erased users (state key -> the erase request's record time) and the newest record time
    # seen: a marker goes once the partition's records are erase_hold_ms past it.
    erased: dict[str, int] = field(default_factory=dict)
    max_record_ts: int = 0
    # The end of the unbroken run of offsets handed to process() since the activation (the
    # run starts at the committed offset, where Faust seeks, or at the first record when none
    # is known): everything up to it has been applied, so this + 1 is safe to commit once the
    # batch's output is delivered. None until that first record.
    seen: int | None = None

    def watermark(self, grace_ms: int) -> int:
        return self.max_ts - grace_ms if self.max_ts else -(2**62)

    def watermark_record(self) -> bytes:
        return _WM.pack(self.max_ts, self.last_offset)

    def schedule(self, user_id: str, deadline_ms: int) -> None:
        self.current[user_id] = deadline_ms
        heapq.heappush(self.heap, (deadline_ms, user_id))
        if len(self.heap) > 2 * len(self.current) + 1024:
            self.heap = [(d, u) for u, d in self.current.items()]
            heapq.heapify(self.heap)

    def cancel(self, user_id: str) -> None:
        self.current.pop(user_id, None)

    def pop_due(self, watermark: int) -> Iterator[tuple[int, str]]:
        heap = self.heap
        while heap and heap[0][0] <= watermark:
            deadline, user_id = heapq.heappop(heap)
            if self.current.get(user_id) == deadline:
                del self.current[user_id]
                yield deadline, user_id

    def next_offset(self, rec: Record, start: int, out: BatchOutput) -> bool | None:
        """The offset bookkeeping of an events topic record (``start``: the committed offset,
        where the consumer seeks): None when it is held behind a gap, else whether it was
        applied before (redelivered after a crash)."""
        seen = self.seen
        if seen is None:
            # The run starts at the committed offset: a first record past it means the ones
            # in between were skipped on their way here.
            seen = (start if start <= rec.offset else rec.offset) - 1
        if rec.partition in out.gaps or rec.offset > seen + 1:
            # A record went missing on its way here (seen after rebalances): applying the
            # later ones would lose it for good.
            out.gaps.setdefault(rec.partition, (seen + 1, rec.offset))
            out.held.append(rec)
            return None
        self.seen = max(seen, rec.offset)
        redelivered = rec.offset <= self.last_offset  # after a crash: applied already
        self.last_offset = max(self.last_offset, rec.offset)
        return redelivered

    def expired_markers(self, hold_ms: int) -> list[str]:
        """Erasure markers the partition's record time has passed by ``hold_ms``: the
        backlog they guarded against is gone. They are forgotten here."""
        gone = [u for u, at in self.erased.items() if self.max_record_ts - at > hold_ms]
        for user_key in gone:
            del self.erased[user_key]
        return gone


class PartitionBook:
    """The partitions a processor holds, what the worker asks of them between batches, and
    whether a failed batch halted it."""

    def __init__(self, grace_ms: int, store: StateStore) -> None:
        self.grace_ms = grace_ms
        self.store = store
        # Committed offset (next to consume) per partition, kept current by the caller: alerts
        # caused by records from there on are kept in state until committed (see activate).
        self.committed: dict[int, int] = {}
        self._partitions: dict[int, PartitionState] = {}
        self.halted: BaseException | None = None

    # -- failure -------------------------------------------------------------------------

    def halt(self, cause: BaseException) -> None:
        """A batch failed part way (here or in the caller, before its output was delivered):
        what this processor holds in memory may be ahead of what reached the broker. From now
        on it commits nothing and processes nothing; the worker stops, and the next one
        starts again from the committed offsets."""
        if self.halted is None:
            self.halted = cause

    def _guarded(self, work: Callable[..., BatchOutput], *args: Any) -> BatchOutput:
        if self.halted is not None:
            raise ProcessorHalted("a previous batch failed") from self.halted
        try:
            return work(*args)
        except BaseException as exc:
            self.halt(exc)
            raise

    def revoke(self, partitions: Sequence[int]) -> None:
        for p in partitions:
            self._partitions.pop(p, None)

    def active_partitions(self) -> list[int]:
        return sorted(self._partitions)

    def pending_deadlines(self) -> int:
        return sum(len(p.current) for p in self._partitions.values())

    def users_tracked(self) -> int:
        return sum(p.users for p in self._partitions.values())

    def last_offsets(self) -> dict[int, int]:
        return {n: p.last_offset for n, p in self._partitions.items()}

    def accept_gap(self, partition: int, offset: int) -> None:
        """The caller has the records of the gap process() reported below ``offset`` (it read
        them itself; there may be none: transaction markers, compaction) and hands them in
        next, with the held ones: the unbroken run goes on to ``offset``."""
        part = self._partitions.get(partition)
        if part is not None:
            part.seen = offset - 1 if part.seen is None else max(part.seen, offset - 1)

    def commit_offsets(self) -> dict[int, int]:
        """The offset to commit per active partition (the next record to consume), once the
        outputs of every batch so far are delivered: the end of the unbroken run of offsets
        this worker applied, not its consumer's acks, so a record delivered twice (as Faust
        does after some rebalances) cannot hold the commit back, nor a skipped one let it
        pass."""
        if self.halted is not None:
            return {}
        return {n: p.seen + 1 for n, p in self._partitions.items() if p.seen is not None}

    def newest_event_ms(self, partition: int) -> int | None:
        """The partition's event-time clock (newest event seen), None before its first;
        as stored by its last owner while the partition has had no record here."""
        part = self._partitions.get(partition)
        if part is None:
            raw = self.store.get(partition, WATERMARK_KEY)
            return (_WM.unpack(raw)[0] or None) if raw else None
        return part.max_ts or None

    def watermarks(self) -> dict[int, int]:
        return {n: p.watermark(self.grace_ms) for n, p in self._partitions.items()}


def activate(
    store: StateStore, partition: int, first_offset: int, out: BatchOutput
) -> PartitionState:
    """Rebuild a partition's deadline schedule from its stored users.

    Records from ``first_offset`` on were not committed, so whatever processing them had
    produced may not have reached the broker before a crash: re-send the alerts they emitted
    (same ids) and re-write the states they touched (so the changelog has them). Only the
    header of each state is read, but for the few users touched since the commit.
    """
    raw = store.get(partition, WATERMARK_KEY)
    max_ts, last_offset = _WM.unpack(raw) if raw else (0, -1)
    part = PartitionState(max_ts=max_ts, last_offset=last_offset)
    for user_id, value in store.scan(partition):
        if user_id.startswith("\x00"):  # not a user: the watermark, erasure markers
            if user_id.startswith(ERASED_PREFIX):
                part.erased[user_id[len(ERASED_PREFIX) :]] = _ERASED.unpack(value)[0]
            continue
        part.users += 1
        try:
            head = peek_state(value)
            if head.last_offset >= first_offset or head.max_cause_offset >= first_offset:
                alerts = decode_state(value).alerts
            else:
                alerts = []
        except StateError:
            log.exception("dropping undecodable state of a user in partition %d", partition)
            continue
        if head.deadline_ms and not head.dormant_since_ms:
            part.current[user_id] = head.deadline_ms
        if head.last_offset >= first_offset:
            out.writes[(partition, user_id)] = value
        for stored in alerts:
            if stored.cause_offset >= first_offset:
                kind = al.Alert.from_json(stored.payload).kind
                out.alerts.append(OutAlert(partition, user_id, kind, stored.payload))
                out.resent += 1
    part.heap = [(d, u) for u, d in part.current.items()]
    heapq.heapify(part.heap)
    log.info(
        "partition %d active from offset %d: %d pending deadlines, %d alerts re-sent",
        partition,
        first_offset,
        len(part.current),
        out.resent,
    )
    return part
