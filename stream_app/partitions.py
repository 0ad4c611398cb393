"""One partition's clock and deadline schedule, and how it is rebuilt from the state table.

Event time (docs/design.md, "Time"): each partition keeps a watermark, the newest event time
seen minus a grace period. A user's dormancy deadline is computed when the event arrives and
scheduled here; it fires when the partition's watermark passes it.

A restart reads the schedule from every stored user's header, in a thread of its own, while
the partition already applies records (see ``stream_app.activation``): a million users take
seconds to read, and nothing but the firing of their deadlines has to wait for them.
"""

from __future__ import annotations

import heapq
import logging
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

from decay.state import UserState
from decay.trends import CategoryTrends
from stream_app.batch import BatchOutput, ProcessorHalted, Record, StateStore

log = logging.getLogger(__name__)

WATERMARK_KEY: Final = "\x00watermark"
_WM = struct.Struct("<qq")  # newest event time seen, offset of the last record applied
# An erased user's marker: the erase request's record time, so that the user's events
# produced before it and still in a backlog are dropped when they come (see Processor.erase).
ERASED_PREFIX: Final = "\x00erased:"
_ERASED = struct.Struct("<q")
# The category trends' records (decay.trends: a header and a row per category).
TREND_PREFIX: Final = "\x00trend"
# The largest offset stored in the partition's users (their last record, their alerts'
# causes), written ahead of each batch's user records: a restart whose committed offset is
# past it has nothing to re-send, and need not read every user before applying records.
WRITTEN_KEY: Final = "\x00written"
_WRITTEN = struct.Struct("<q")

# What the schedule's reader hands over: pending deadline per user, the same as a sorted
# list (a valid heap), and the users read.
Loaded = tuple[dict[str, int], list[tuple[int, str]], int]


def unpack_watermark(raw: bytes | None) -> tuple[int, int]:
    """The newest event time and the last offset applied, of a watermark record."""
    return _WM.unpack(raw) if raw else (0, -1)


def unpack_erased(raw: bytes) -> int:
    return int(_ERASED.unpack(raw)[0])


def unpack_written(raw: bytes | None) -> int:
    return int(_WRITTEN.unpack(raw)[0]) if raw else -1


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
    # See WRITTEN_KEY: the largest offset stored, as of the last batch.
    max_written: int = -1
    # While the stored users' schedule is being read (see activate): its result, and the
    # users scheduled or cancelled meanwhile, whose entries here are newer than what it read.
    loading: Future[Loaded] | None = None
    touched: set[str] = field(default_factory=set)
    # Per category, the decayed interest of the partition's users (decay.trends).
    trends: CategoryTrends = field(default_factory=CategoryTrends)

    def watermark(self, grace_ms: int) -> int:
        return self.max_ts - grace_ms if self.max_ts else -(2**62)

    def watermark_record(self) -> bytes:
        return _WM.pack(self.max_ts, self.last_offset)

    def schedule(self, user_id: str, deadline_ms: int, push: bool = True) -> None:
        """``push`` False: the caller knows the deadline is replaced (or cancelled) before the
        watermark can reach it, so the heap needs no entry for it (see ``pop_due``: only the
        current deadline fires; the user's earlier entries are skipped)."""
        if self.loading is not None:
            self.touched.add(user_id)
        self.current[user_id] = deadline_ms
        if not push:
            return
        heapq.heappush(self.heap, (deadline_ms, user_id))
        if len(self.heap) > 2 * len(self.current) + 1024:
            # The live entries, once each, the same tuples: new ones by the thousand, all
            # long-lived, would set off the garbage collector's full passes.
            current = self.current
            self.heap = list(dict.fromkeys(e for e in self.heap if current.get(e[1]) == e[0]))
            heapq.heapify(self.heap)

    def cancel(self, user_id: str) -> None:
        if self.loading is not None:
            self.touched.add(user_id)
        self.current.pop(user_id, None)

    def adopt(self, user_id: str, deadline_ms: int, dormant_since_ms: int) -> bool:
        """Before a user's event is applied while the schedule is being read: schedule its
        stored deadline (from the state the caller loaded), so that it fires now if due, as
        it would have before this event. True when something was scheduled."""
        if self.loading is None or user_id in self.touched:
            return False
        self.touched.add(user_id)
        if not deadline_ms or dormant_since_ms:
            return False
        self.schedule(user_id, deadline_ms)
        return True

    def finish_loading(self) -> None:
        """Take in the schedule read from the stored users once it is read, under what was
        scheduled and cancelled meanwhile (a cheap check while it is not)."""
        loading = self.loading
        if loading is None or not loading.done():
            return
        current, heap, users = loading.result()  # the reader's error, if any, is raised here
        for user_id in self.touched:
            current.pop(user_id, None)
        current.update(self.current)
        for entry in self.heap:  # a few: those scheduled while the schedule was read
            heapq.heappush(heap, entry)
        self.current, self.heap, self.users = current, heap, self.users + users
        self.loading, self.touched = None, set()
        log.info("schedule read: %d users, %d pending deadlines", users, len(current))

    def written_record(self, offsets: Iterable[int]) -> bytes:
        """The WRITTEN_KEY record ahead of a batch that stores ``offsets``."""
        self.max_written = max(self.max_written, max(offsets, default=-1))
        return _WRITTEN.pack(self.max_written)

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
        seen, offset = self.seen, rec.offset
        if seen is None:
            # The run starts at the committed offset: a first record past it means the ones
            # in between were skipped on their way here.
            seen = (start if start <= offset else offset) - 1
        if offset > seen + 1 or (out.gaps and rec.partition in out.gaps):
            # A record went missing on its way here (seen after rebalances): applying the
            # later ones would lose it for good.
            out.gaps.setdefault(rec.partition, (seen + 1, offset))
            out.held.append(rec)
            return None
        self.seen = offset if offset > seen else seen
        if offset <= self.last_offset:
            return True  # after a crash: applied already
        self.last_offset = offset
        return False

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

    def take_in_schedules(self) -> set[int]:
        """The schedules read since the last call (see activate), taken in by ``tick``
        (stream_app.schedules runs it soon after); the partitions they are of."""
        read = set()
        for n, part in self._partitions.items():
            if part.loading is not None and part.loading.done():
                part.finish_loading()
                read.add(n)
        return read

    def schedules_read(self) -> bool:
        """A schedule read apart waits to be taken in (by ``tick``)."""
        return any(p.loading is not None and p.loading.done() for p in self._partitions.values())

    def schedules_loading(self) -> list[Future[Loaded]]:
        """The schedules being read (or read, not yet taken in)."""
        return [p.loading for p in self._partitions.values() if p.loading is not None]

    def written_records(
        self, users: Iterable[tuple[int, str]], states: Mapping[tuple[int, str], UserState]
    ) -> dict[tuple[int, str], bytes]:
        """The WRITTEN_KEY record of each partition of ``users`` (about to be written from
        ``states``): it goes ahead of them, as the watermark goes after them."""
        offsets: dict[int, list[int]] = {}
        for ukey in users:
            p, st = ukey[0], states[ukey]
            alerts = st.alerts
            cause = max([a.cause_offset for a in alerts]) if alerts else -1
            offsets.setdefault(p, []).append(max(st.last_offset, cause))
        return {
            (p, WRITTEN_KEY): self._partitions[p].written_record(found)
            for p, found in offsets.items()
            if p in self._partitions
        }

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

    def category_trends(self) -> tuple[dict[int, CategoryTrends], int]:
        """The trend table of each active partition, and the newest of their clocks (in
        live mode moved on with the wall clock while a partition is idle). Safe to call
        while a batch runs in another thread: the tables have their own locks."""
        parts = dict(self._partitions)  # one copy under the GIL: revoke may pop meanwhile
        newest = max((p.max_ts for p in parts.values()), default=0)
        return {n: p.trends for n, p in parts.items()}, newest
