"""The worker's logic for one micro-batch, free of Faust and Kafka.

``Processor.process`` takes the records of a batch in the order the consumer delivered them
(offset order within each partition) and returns what to write and what to send. The agent in
``stream_app.agents`` is thin wiring around it; the unit tests drive it with an in-memory store.

Event time (docs/design.md, "Time"): each partition keeps a watermark, the newest event time seen
minus a grace period. A user's dormancy deadline is computed when the event arrives; it fires
when the partition's watermark passes it and the user has had no event since. Deadlines are
checked after every event, not once per batch, so the alerts (and their ids) do not depend on
how records are cut into batches.

Each batch is two passes: (1) validate, drop duplicates and update windows, collecting a window
snapshot per applied event; the scorer is called once for all snapshots; (2) walk the events in
order again, running the alert state machine and the deadline schedule.

An incremental scorer (``decay.scoring.StepScorer``, the lapse step model) gets each user's
events of the batch in order instead, and steps them in rounds (round r: every user's r-th
event of the batch, one model call), each from the state its previous event left in
``UserState.model_state``. A user's state after an event depends only on the user's events
before it, never on where the batch boundaries fell.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import numpy as np

from decay import alerts as al
from decay.categories import recent_mix
from decay.engagement import EngagementRules, add_event, review, session_of
from decay.errors import DecayError
from decay.events import Event, Invalid, Limits, parse_event
from decay.scoring import AnyScorer, Scores, StepScorer
from decay.state import (
    StateError,
    StoredAlert,
    UserState,
    decode_state,
    encode_state,
    event_id_hash,
    peek_state,
)
from decay.window import NO_CATEGORY, Window
from stream_app.queries import partition_for

log = logging.getLogger(__name__)

WATERMARK_KEY: Final = "\x00watermark"
_WM = struct.Struct("<qq")  # newest event time seen, offset of the last record applied
# An erased user's marker: the erase request's record time, so that the user's events
# produced before it and still in a backlog are dropped when they come (see Processor.erase).
ERASED_PREFIX: Final = "\x00erased:"
_ERASED = struct.Struct("<q")


def erased_key(user_key: str) -> str:
    return ERASED_PREFIX + user_key


def _erased_what(raw: bytes | None) -> str:
    """What an erasure removed, for its confirmation."""
    if raw is None:
        return "no state held for this user"
    try:
        st = decode_state(raw)
    except StateError:
        return "state erased on request (it was unreadable)"
    span = f"{al.rfc3339(st.first_ts_ms)} to {al.rfc3339(st.last_ts_ms)}" if st.n_events else ""
    return (
        f"state erased on request: {st.n_total} events, the last {st.n_events} of them "
        f"({span}) kept with {len(st.alerts)} alerts"
    )


def _typical_gap(window: Window, sessions: int) -> float | None:
    """The window's median gap between visits; a short window within one visit (a lapse
    model keeps 10 events): the mean over the user's whole history of visits."""
    gap = window.typical_gap_ms()
    if gap is None and sessions > 1:
        return (window.last_ts_ms - window.first_ts_ms) / (sessions - 1)
    return gap


def _f32(value: float) -> float:
    """Round to what the stored state keeps (float32), so that a value does not depend on
    whether it went through the store between two events, i.e. on the batch boundaries."""
    return float(np.float32(value))


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
    caller applies the batch's writes and deletes."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...

    def delete(self, partition: int, key: str) -> None: ...

    def scan(self, partition: int) -> Iterator[tuple[str, bytes]]: ...


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


@dataclass(slots=True)
class _Partition:
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


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to create, once per event
class _Step:
    event: Event
    offset: int
    partition: int
    window: Window
    max_ts: int  # the partition's newest event time after this event


class Processor:
    def __init__(
        self,
        config: ProcessorConfig,
        scorer: AnyScorer,
        store: StateStore,
        clock_ms: Callable[[], int],
        pseudonymize: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.store = store
        self.clock_ms = clock_ms
        self.pseudonymize = pseudonymize
        # Committed offset (next to consume) per partition, kept current by the caller: alerts
        # caused by records from there on are kept in state until committed (see _activate).
        self.committed: dict[int, int] = {}
        self._partitions: dict[int, _Partition] = {}
        self._owners: dict[str, int] = {}  # user id -> own partition, see own_partition
        self.halted: BaseException | None = None

    @property
    def threshold(self) -> float:
        """The scorer's own dormancy threshold (a lapse model's serving point), else ours."""
        own = getattr(self.scorer, "threshold", None)
        return self.config.threshold if own is None else float(own)

    @property
    def max_events(self) -> int:
        """Events kept per user: the configured number, else what the scorer reads."""
        own = getattr(self.scorer, "window_events", 64)
        return self.config.max_events if self.config.max_events is not None else int(own)

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

    # -- partition lifecycle -------------------------------------------------------------

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
        """The partition's event-time clock (newest event seen), None before its first."""
        part = self._partitions.get(partition)
        return part.max_ts if part is not None and part.max_ts else None

    def watermarks(self) -> dict[int, int]:
        return {n: p.watermark(self.config.grace_ms) for n, p in self._partitions.items()}

    def _activate(self, partition: int, first_offset: int, out: BatchOutput) -> _Partition:
        """Rebuild a partition's deadline schedule from its stored users.

        Records from ``first_offset`` on were not committed, so whatever processing them had
        produced may not have reached the broker before a crash: re-send the alerts they
        emitted (same ids) and re-write the states they touched (so the changelog has them).
        """
        # From the committed offset (the broker's, looked up by the caller at activation)
        # whatever record comes first: one fetched before a rebalance may be past it, and the
        # alerts of the records in between must still be re-sent; one before it had its
        # alerts delivered with its commit.
        first_offset = self.committed.get(partition, first_offset)
        raw = self.store.get(partition, WATERMARK_KEY)
        max_ts, last_offset = _WM.unpack(raw) if raw else (0, -1)
        part = _Partition(max_ts=max_ts, last_offset=last_offset)
        for user_id, value in self.store.scan(partition):
            if user_id.startswith("\x00"):  # not a user: the watermark, erasure markers
                if user_id.startswith(ERASED_PREFIX):
                    part.erased[user_id[len(ERASED_PREFIX) :]] = _ERASED.unpack(value)[0]
                continue
            part.users += 1
            try:
                # The header says all but the few users touched since the commit need.
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
        self._partitions[partition] = part
        log.info(
            "partition %d active from offset %d: %d pending deadlines, %d alerts re-sent",
            partition,
            first_offset,
            len(part.current),
            out.resent,
        )
        return part

    # -- the batch -----------------------------------------------------------------------

    def process(self, records: Sequence[Record]) -> BatchOutput:
        """The events topic's records. A valid event on a partition that is not its user's
        own is not applied here: it is in ``forwards``, for the caller to send on."""
        return self._guarded(self._process, records, None)

    def process_forwarded(self, records: Sequence[Record], resend: bool = True) -> BatchOutput:
        """Records of the repartition topic (forwarded by ``process``), each applied to its
        partition's users as an event of the events topic would be, minus the offset
        bookkeeping: a copy delivered twice is a duplicate event id. ``resend``: what it
        emits may be lost in a crash (handed to the producer, not yet delivered), so it is
        re-sent after one until the events partition's commit passes it; False when the
        caller sees it delivered (committed in a transaction) before anything else."""
        return self._guarded(self._process, records, resend)

    def own_partition(self, user_id: str) -> int:
        """The partition of ``user_id`` (as producers know it) that holds its state."""
        n = self.config.partitions
        if n is None:
            raise ValueError("no partition count configured: events are not routed")
        got = self._owners.get(user_id)
        if got is None:
            if len(self._owners) >= 1 << 16:  # a cache: murmur2 in Python is ~2 us a call
                self._owners.clear()
            got = self._owners[user_id] = partition_for(user_id.encode(), n)
        return got

    def _process(self, records: Sequence[Record], resend: bool | None) -> BatchOutput:
        """``resend`` None: the events topic's records; else forwarded ones (see above)."""
        forwarded = resend is not None
        out = BatchOutput()
        cache: dict[tuple[int, str], UserState] = {}
        touched: set[tuple[int, str]] = set()
        steps: list[_Step] = []
        # Each user's window as pass 2 has reached it: as loaded, then as of its last step.
        # A deadline that fires mid-batch must not see the user's later events of the batch.
        windows: dict[tuple[int, str], Window] = {}
        now = self.clock_ms()
        limits = Limits(max_ts_ms=now + self.config.max_future_ms)
        max_ts: dict[int, int] = {}

        for rec in records:
            part = self._partitions.get(rec.partition)
            if part is None:
                part = self._activate(rec.partition, 0 if forwarded else rec.offset, out)
            part.last_seen_wall_ms = now
            part.max_record_ts = max(part.max_record_ts, rec.timestamp)
            # A forwarded event's alerts and state count as caused by the partition's next
            # events offset: re-sent (same ids) after a crash until a commit passes it; or
            # by none (-1), when delivered before anything else.
            offset, redelivered = (part.last_offset + 1 if resend else -1), False
            if not forwarded:
                again = self._next_offset(rec, part, out)
                if again is None:
                    continue
                offset, redelivered = rec.offset, again
            parsed = parse_event(rec.value, rec.key, limits)
            if isinstance(parsed, Invalid):
                # Sent again even when redelivered: its first copy may have died with the crash.
                out.dead_letters.append(DeadLetter(rec, parsed.reason, parsed.detail))
                out.counts["invalid"] += 1
                continue
            if not forwarded and self.config.partitions is not None:
                own = self.own_partition(parsed.user_id)
                if own != rec.partition:  # sent on even when redelivered, as dead letters are
                    out.forwards.append(Forward(rec, own, parsed.user_id))
                    out.counts["forwarded"] += 1
                    continue
            if redelivered:
                out.counts["redelivered"] += 1
                continue
            if self.pseudonymize is not None:
                parsed = replace(parsed, user_id=self.pseudonymize(parsed.user_id))
            erased_at = part.erased.get(parsed.user_id)
            if erased_at is not None and rec.timestamp <= erased_at:
                out.counts["dropped_erased"] += 1  # produced before its user's erase request
                continue
            ukey = (rec.partition, parsed.user_id)
            st = self._load(ukey, cache, windows)
            touched.add(ukey)
            id_hash = event_id_hash(parsed.event_id)  # once for both calls: it shows in profiles
            if st.has_event(parsed.event_id, id_hash):
                out.counts["duplicate"] += 1
                continue
            newest = max_ts.get(rec.partition, part.max_ts)
            late = parsed.ts_ms < newest - self.config.grace_ms
            if not st.add(parsed, offset, self.max_events, id_hash):
                out.counts["late"] += 1  # older than a full window: nothing to update
                continue
            out.counts["late" if late else "ok"] += 1
            if st.n_total == 1:
                part.users += 1
            st.partition = rec.partition
            max_ts[rec.partition] = max(newest, parsed.ts_ms)
            steps.append(_Step(parsed, offset, rec.partition, st.window(), max_ts[rec.partition]))
        self._apply_scores(steps, cache, touched, windows, out)
        self._finish(out, cache, touched, {rec.partition for rec in records})
        return out

    def _next_offset(self, rec: Record, part: _Partition, out: BatchOutput) -> bool | None:
        """The offset bookkeeping of an events topic record: None when it is held behind a
        gap, else whether it was applied before (redelivered after a crash)."""
        seen = part.seen
        if seen is None:
            # The run starts at the committed offset, where Faust's consumer seeks: a first
            # record past it means the ones in between were skipped on their way here.
            start = self.committed.get(rec.partition, rec.offset)
            seen = (start if start <= rec.offset else rec.offset) - 1
        if rec.partition in out.gaps or rec.offset > seen + 1:
            # A record went missing on its way here (seen after rebalances): applying the
            # later ones would lose it for good.
            out.gaps.setdefault(rec.partition, (seen + 1, rec.offset))
            out.held.append(rec)
            return None
        part.seen = max(seen, rec.offset)
        redelivered = rec.offset <= part.last_offset  # after a crash: applied already
        part.last_offset = max(part.last_offset, rec.offset)
        return redelivered

    def _apply_scores(
        self,
        steps: list[_Step],
        cache: dict[tuple[int, str], UserState],
        touched: set[tuple[int, str]],
        windows: dict[tuple[int, str], Window],
        out: BatchOutput,
    ) -> None:
        """Pass 2: one scorer call for the batch's events, then, event by event in order,
        the alert state machine and the deadline schedule."""
        started = time.perf_counter()
        if isinstance(self.scorer, StepScorer):
            scores = self._step_rounds(self.scorer, steps, cache, windows)
        else:
            scores = self.scorer.score([s.window for s in steps], self.threshold)
            for s in steps:  # a step model's state misses this event now: never resume from it
                cache[(s.partition, s.event.user_id)].model_state = b""
        out.score_seconds = time.perf_counter() - started
        out.peaks = scores.peak.tolist()
        # Converted once per batch (numpy scalars one at a time are slow); to float32 as in
        # _f32: the same rounding, value by value.
        peaks = scores.peak.astype(np.float32).tolist()
        half_lives = scores.half_life_s.astype(np.float32).tolist()
        deadlines = scores.deadline_s.astype(np.float64).tolist()
        for i, step in enumerate(steps):
            ukey = (step.partition, step.event.user_id)
            st = cache[ukey]
            part = self._partitions[step.partition]
            windows[ukey] = step.window
            last_ts = step.window.last_ts_ms
            self._count_session(st, step)
            if step.event.ts_ms >= last_ts:
                self._on_event(ukey, st, step, out)
                deadline_s = deadlines[i]
                before = st.peak_score
                st.peak_score = peaks[i]
                st.half_life_s = half_lives[i]
                self._update_categories(ukey, st, step, out)
                if math.isfinite(deadline_s) and not st.dormant_since_ms:
                    st.deadline_ms = last_ts + int(deadline_s * 1000)
                    part.schedule(step.event.user_id, st.deadline_ms)
                else:
                    st.deadline_ms = 0
                    part.cancel(step.event.user_id)
                moved = abs(st.peak_score - before) > self.config.score_min_change
                if self.config.publish_scores and (moved or self.config.score_min_change == 0):
                    out.scores.append(self._score_message(ukey, st, step))
            part.max_ts = max(part.max_ts, step.max_ts)
            self._fire_due(step.partition, part, step.offset, cache, touched, windows, out)

    def _step_rounds(
        self,
        scorer: StepScorer,
        steps: list[_Step],
        cache: dict[tuple[int, str], UserState],
        windows: dict[tuple[int, str], Window],
    ) -> Scores:
        """The batch's events through an incremental scorer: each user's events in order,
        from the model state in its ``UserState`` (the scorer steps them in rounds, one
        model call per round); then the scores of every step's new state, in steps' order."""
        of_user: dict[tuple[int, str], list[int]] = {}
        for i, s in enumerate(steps):
            of_user.setdefault((s.partition, s.event.user_id), []).append(i)
        users = [cache[ukey] for ukey in of_user]
        # the windows as loaded, before this batch's events: a user whose stored state is not
        # this model's (a rollout) starts from them
        begun = scorer.resume([st.model_state for st in users], [windows.get(k) for k in of_user])
        after = scorer.step(begun, [[steps[i].event for i in idx] for idx in of_user.values()])
        states: list[bytes] = [b""] * len(steps)  # each step's state right after its event
        for st, idx, new in zip(users, of_user.values(), after, strict=True):
            for i, state in zip(idx, new, strict=True):
                states[i] = state
            st.model_state = new[-1]
        return scorer.scores(states, self.threshold)

    def erase(
        self, partition: int, offset: int, user_id: str, timestamp_ms: int | None = None
    ) -> BatchOutput:
        """Delete a user's state (a tombstone in the changelog) and confirm on the alerts topic.

        ``user_id`` is as producers know it; with pseudonymisation on, its pseudonym is erased.
        ``timestamp_ms`` is the erase request's record time: the user's events produced up to
        then that come later (a backlog, a forwarded copy) are dropped, for erase_hold_ms of
        the partition's record time, by a marker kept in the state table.
        """
        return self._guarded(self._erase, partition, offset, user_id, timestamp_ms)

    def _erase(
        self, partition: int, offset: int, user_id: str, timestamp_ms: int | None
    ) -> BatchOutput:
        out = BatchOutput()
        key = self.pseudonymize(user_id) if self.pseudonymize is not None else user_id
        erased_at = self.clock_ms() if timestamp_ms is None else timestamp_ms
        part = self._partitions.get(partition)
        raw = self.store.get(partition, key)
        if part is not None:
            part.cancel(key)
            part.users -= raw is not None
            erased_at = max(erased_at, part.erased.get(key, erased_at))
            part.erased[key] = erased_at
        if raw is not None:
            out.deletes.append((partition, key))
        out.writes[(partition, erased_key(key))] = _ERASED.pack(erased_at)
        now = self.clock_ms()
        confirmation = al.Alert(
            alert_id=al.alert_id(al.ERASED, key, offset),
            kind=al.ERASED,
            user_id=key,
            category=None,
            score=0.0,
            peak_score=0.0,
            half_life_hours=0.0,
            event_time=al.rfc3339(now),
            emitted_at=al.rfc3339(now),
            model_version=self.scorer.version,
            reasons=[
                _erased_what(raw),
                f"events of this user produced up to {al.rfc3339(erased_at)} that arrive "
                f"later are dropped (for {self.config.erase_hold_ms / 86_400_000:g} days)",
            ],
        )
        out.alerts.append(OutAlert(partition, key, al.ERASED, confirmation.to_json()))
        out.counts["erased" if raw is not None else "erase_unknown"] += 1
        return out

    def expire(self, ttl_ms: int) -> BatchOutput:
        """Delete the users of active partitions silent for longer than ``ttl_ms`` of event
        time (the partition's watermark minus their last event). A periodic sweep."""
        return self._guarded(self._expire, ttl_ms)

    def _expire(self, ttl_ms: int) -> BatchOutput:
        out = BatchOutput()
        for n, part in self._partitions.items():
            cutoff = part.watermark(self.config.grace_ms) - ttl_ms
            for user_id, value in self.store.scan(n):
                if user_id.startswith("\x00"):
                    continue
                try:
                    last = decode_state(value).last_ts_ms
                except StateError:
                    last = cutoff - 1  # undecodable state is of no use to anyone: drop it
                if last < cutoff:
                    out.deletes.append((n, user_id))
                    part.cancel(user_id)
                    part.users -= 1
        out.counts["expired"] += len(out.deletes)
        return out

    def _score_message(self, ukey: tuple[int, str], st: UserState, step: _Step) -> OutAlert:
        payload = {
            "user_id": ukey[1],
            "event_id": step.event.event_id,
            "event_time": al.rfc3339(step.event.ts_ms),
            "score": st.peak_score,
            "half_life_hours": st.half_life_s / 3600.0,
            "deadline": al.rfc3339(st.deadline_ms) if st.deadline_ms else None,
            "model_version": self.scorer.version,
        }
        return OutAlert(ukey[0], ukey[1], "score", json.dumps(payload).encode())

    def tick(
        self, now_ms: int, idle_ms: int, assigned: Mapping[int, int] | None = None
    ) -> BatchOutput:
        """Live mode: a partition with no record for ``idle_ms`` of wall-clock time moves its
        event-time clock to ``now_ms - idle_ms``, so its silent users still become dormant.
        ``assigned`` (partition -> committed offset) activates assigned partitions that have
        had no record since the assignment: their deadlines must fire all the same.
        The caller must see these alerts delivered before it applies the writes."""
        return self._guarded(self._tick, now_ms, idle_ms, assigned)

    def _tick(
        self, now_ms: int, idle_ms: int, assigned: Mapping[int, int] | None = None
    ) -> BatchOutput:
        out = BatchOutput()
        for n, committed in (assigned or {}).items():
            if n not in self._partitions:
                part = self._activate(n, committed, out)
                part.last_seen_wall_ms = now_ms  # idle from now on
        cache: dict[tuple[int, str], UserState] = {}
        touched: set[tuple[int, str]] = set()
        windows: dict[tuple[int, str], Window] = {}
        moved = set()
        for n, part in self._partitions.items():
            if now_ms - part.last_seen_wall_ms >= idle_ms and now_ms - idle_ms > part.max_ts:
                part.max_ts = now_ms - idle_ms
                moved.add(n)
                self._fire_due(n, part, part.last_offset, cache, touched, windows, out)
        self._finish(out, cache, touched, moved)
        return out

    def _finish(
        self,
        out: BatchOutput,
        cache: dict[tuple[int, str], UserState],
        touched: set[tuple[int, str]],
        partitions: set[int],
    ) -> None:
        for ukey in touched:
            out.writes[ukey] = encode_state(cache[ukey])
        # The watermark record goes last: the changelog keeps per-partition order, so a
        # recovered watermark implies the user records written before it were recovered too.
        for p in sorted(partitions):
            if p in self._partitions:
                part = self._partitions[p]
                for user_key, erased_at in list(part.erased.items()):
                    if part.max_record_ts - erased_at > self.config.erase_hold_ms:
                        del part.erased[user_key]  # the backlog has passed it
                        out.deletes.append((p, erased_key(user_key)))
                out.writes[(p, WATERMARK_KEY)] = _WM.pack(part.max_ts, part.last_offset)

    def _load(
        self,
        ukey: tuple[int, str],
        cache: dict[tuple[int, str], UserState],
        windows: dict[tuple[int, str], Window],
    ) -> UserState:
        st = cache.get(ukey)
        if st is None:
            raw = self.store.get(*ukey)
            st = UserState(partition=ukey[0])
            if raw is not None:
                try:
                    st = decode_state(raw)
                except StateError:
                    log.exception(
                        "state of a user in partition %d is corrupt; starting anew", ukey[0]
                    )
            cache[ukey] = st
            if st.n_events:
                windows[ukey] = st.window()
        return st

    def _on_event(
        self, ukey: tuple[int, str], st: UserState, step: _Step, out: BatchOutput
    ) -> None:
        """An event newer than the user's window end: closes an open dormancy episode."""
        since = st.dormant_since_ms
        if not since or step.event.ts_ms <= since:
            return
        prev = step.window.ts[:-1]
        silent = step.event.ts_ms - (int(prev[-1]) if prev.shape[0] else since)
        st.dormant_since_ms = 0
        self._emit(
            out,
            st,
            ukey,
            step.offset,
            kind=al.REENGAGED,
            anchor_ms=since,
            event_time_ms=step.event.ts_ms,
            score=1.0,
            reasons=al.reengaged_reasons(silent, since, step.event.type.name.lower()),
        )

    def _count_session(self, st: UserState, step: _Step) -> None:
        """The user's sessions and category visits, with this event (in event order)."""
        rules = self.config.engagement
        ts = step.event.ts_ms
        window = step.window
        opens = False
        if ts >= window.last_ts_ms:  # the newest: maybe a new session
            previous = int(window.ts[-2]) if window.ts.shape[0] > 1 else 0
            before, st.sessions = st.sessions, session_of(st.sessions, previous, ts, rules)
            opens = st.sessions > before
        add_event(st.engagement, step.event.category, ts, st.sessions, opens, rules)

    def _update_categories(
        self, ukey: tuple[int, str], st: UserState, step: _Step, out: BatchOutput
    ) -> None:
        """On the user's newest event: the categories whose engagement dropped just now."""
        window = step.window
        recent = [window.categories[c] if c != NO_CATEGORY else None for c in window.cats[-10:]]
        rules = self.config.engagement
        for d in review(st.engagement, step.event.ts_ms, st.sessions, recent, rules):
            score = _f32(st.peak_score * d.share)
            self._emit(
                out,
                st,
                ukey,
                step.offset,
                kind=al.CATEGORY_DECAY,
                anchor_ms=step.event.ts_ms,
                event_time_ms=step.event.ts_ms,
                score=score,
                peak=_f32(st.peak_score * d.base),
                category=d.category,
                reasons=[
                    f"no {d.category} for {d.silent_ms / 86_400_000:.1f} days and "
                    f"{d.sessions_since} sessions, though {d.base:.0%} of this user's "
                    "sessions had visited it",
                    f"{d.category} is {d.share:.0%} of the user's recent activity",
                    recent_mix(window),
                ],
            )

    def _fire_due(
        self,
        partition: int,
        part: _Partition,
        cause_offset: int,
        cache: dict[tuple[int, str], UserState],
        touched: set[tuple[int, str]],
        windows: dict[tuple[int, str], Window],
        out: BatchOutput,
    ) -> None:
        watermark = part.watermark(self.config.grace_ms)
        if not part.heap or part.heap[0][0] > watermark:
            return  # nothing due: the usual case, checked after every event
        for deadline, user_id in part.pop_due(watermark):
            ukey = (partition, user_id)
            st = self._load(ukey, cache, windows)
            if st.deadline_ms != deadline or st.dormant_since_ms:
                log.warning("schedule and state disagree for a user of partition %d", partition)
                continue
            window = windows[ukey]
            silent = deadline - window.last_ts_ms
            # The deadline is where the scorer's interest curve crosses the threshold, so the
            # interest at this moment is the threshold itself (the stored two-parameter curve
            # would only approximate it).
            score = self.threshold
            st.deadline_ms = 0
            st.dormant_since_ms = deadline
            touched.add(ukey)
            self._emit(
                out,
                st,
                ukey,
                cause_offset,
                kind=al.DORMANT,
                anchor_ms=deadline,
                event_time_ms=deadline,
                score=score,
                reasons=al.dormant_reasons(
                    silent, _typical_gap(window, st.sessions), st.peak_score, score, window.n_total
                ),
            )

    def _emit(
        self,
        out: BatchOutput,
        st: UserState,
        ukey: tuple[int, str],
        cause_offset: int,
        *,
        kind: str,
        anchor_ms: int,
        event_time_ms: int,
        score: float,
        reasons: list[str],
        category: str | None = None,
        peak: float | None = None,
    ) -> None:
        alert = al.Alert(
            alert_id=al.alert_id(kind, ukey[1], anchor_ms, category),
            kind=kind,
            user_id=ukey[1],
            category=category,
            score=round(score, 6),
            peak_score=round(st.peak_score if peak is None else peak, 6),
            half_life_hours=round(st.half_life_s / 3600.0, 3),
            event_time=al.rfc3339(event_time_ms),
            emitted_at=al.rfc3339(self.clock_ms()),
            model_version=self.scorer.version,
            reasons=reasons,
        )
        payload = alert.to_json()
        unconfirmed_from = self.committed.get(ukey[0], 0)
        st.remember_alert(
            StoredAlert(cause_offset, payload), self.config.keep_alerts, unconfirmed_from
        )
        out.alerts.append(OutAlert(ukey[0], ukey[1], kind, payload))
