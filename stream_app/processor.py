"""The worker's logic for one micro-batch, free of Faust and Kafka.

``Processor.process`` takes a batch's records in the order the consumer delivered them (offset
order within each partition) and returns what to write and send (``stream_app.batch``).

A user's dormancy deadline is computed when the event arrives and kept in the partition's
schedule (``stream_app.partitions``); it fires when the partition's watermark passes it and
the user has had no event since. Deadlines are checked after every event, not once per batch,
so the alerts (and their ids) do not depend on how records are cut into batches.

Each batch is two passes: (1) validate, drop duplicates and update windows, collecting a window
snapshot per applied event; the scorer is called once for all snapshots; (2) walk the events in
order again, running the alert rules (``stream_app.alerting``) and the deadline schedule.

An incremental scorer (``decay.scoring.StepScorer``, the lapse step model) gets each user's
events of the batch in order instead, and steps them in rounds (round r: every user's r-th
event of the batch, one model call), each from the state its previous event left in
``UserState.model_state``. A user's state after an event depends only on the user's events
before it, never on where the batch boundaries fell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from decay.events import Limits
from decay.rows import Snapshot, WindowsOf
from decay.scoring import AnyScorer, StepScorer
from decay.state import StateError, UserState, decode_state, encode_states
from stream_app import alerting
from stream_app.activation import activate
from stream_app.admission import Owners, admit
from stream_app.alerting import AlertSpec
from stream_app.batch import (
    BatchOutput,
    DeadLetter,
    Forward,
    OutAlert,
    ProcessorConfig,
    ProcessorHalted,
    Record,
    StateStore,
    Step,
    UserKey,
)
from stream_app.batch_scores import kept_events, score_steps, served_threshold, users_of
from stream_app.category_vectors import CategoryVectors
from stream_app.erasure import erase_user, expire_users
from stream_app.event_rules import EventRules
from stream_app.explaining import Pending, emit
from stream_app.partitions import (
    ERASED_PREFIX,
    WATERMARK_KEY,
    PartitionBook,
    PartitionState,
    erased_key,
)
from stream_app.trends import apply_steps

# Re-exported: callers know the batch's types and the partition records from here.
__all__ = [
    "ERASED_PREFIX",
    "WATERMARK_KEY",
    "BatchOutput",
    "DeadLetter",
    "Forward",
    "OutAlert",
    "Processor",
    "ProcessorConfig",
    "ProcessorHalted",
    "Record",
    "StateStore",
    "erased_key",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    """What one batch (or tick) holds while it runs."""

    cache: dict[UserKey, UserState] = field(default_factory=dict)
    touched: set[UserKey] = field(default_factory=set)
    steps: list[Step] = field(default_factory=list)
    # Each user's window as pass 2 has reached it: as loaded, then as of its last step.
    # A deadline that fires mid-batch must not see the user's later events of the batch.
    windows: dict[UserKey, Snapshot] = field(default_factory=dict)
    max_events: int = 64  # the processor's, read once a batch
    max_ts: dict[int, int] = field(default_factory=dict)  # newest event time per partition
    alerts: list[Pending] = field(default_factory=list)  # sent explained at the end (emit)


class Processor(PartitionBook):
    """The batch logic over the partitions it holds (see PartitionBook)."""

    def __init__(
        self,
        config: ProcessorConfig,
        scorer: AnyScorer,
        store: StateStore,
        clock_ms: Callable[[], int],
        pseudonymize: Callable[[str], str] | None = None,
        vectors: CategoryVectors | None = None,
    ) -> None:
        super().__init__(config.grace_ms, store)
        self.config = config
        self.scorer = scorer
        self.clock_ms = clock_ms
        self.pseudonymize = pseudonymize
        self._owners = Owners(config.partitions)
        self.vectors = vectors or CategoryVectors(None, config.engagement)
        self._kind: tuple[AnyScorer | None, bool] = (None, False)  # a scorer, incremental?

    @property
    def threshold(self) -> float:
        return served_threshold(self.scorer, self.config.threshold)

    @property
    def max_events(self) -> int:
        return kept_events(self.scorer, self.config.max_events)

    def _activate(self, partition: int, first_offset: int, out: BatchOutput) -> PartitionState:
        """Rebuild a partition's schedule (stream_app.activation.activate). From the
        committed offset (the broker's, looked up by the caller at activation) whatever
        record comes first: one fetched before a rebalance may be past it, and the alerts of
        the records in between must still be re-sent; one before it had its alerts delivered
        with its commit."""
        first_offset = self.committed.get(partition, first_offset)
        part = activate(self.store, partition, first_offset, out, self.config.trends)
        self._partitions[partition] = part
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
        return self._owners.of(user_id)

    def _process(self, records: Sequence[Record], resend: bool | None) -> BatchOutput:
        """``resend`` None: the events topic's records; else forwarded ones (see above)."""
        out = BatchOutput()
        batch = _Batch(max_events=self.max_events)
        self._add_all(records, resend, batch, out)
        self.vectors.learn(batch.steps, self.store, out.writes)  # before the alert rules
        self._apply_scores(batch, out)
        apply_steps(self._partitions, batch.steps, out.writes)  # category trends
        self._finish(out, batch, {rec.partition for rec in records})
        return out

    def _add_all(
        self, records: Sequence[Record], resend: bool | None, batch: _Batch, out: BatchOutput
    ) -> None:
        """Pass 1: each record admitted (stream_app.admission), then its event into its
        user's window, unless a duplicate or older than a full window; a Step per event
        applied. One loop, what it looks up hoisted: it runs per event."""
        now = self.clock_ms()
        limits = Limits(max_ts_ms=now + self.config.max_future_ms)
        owner = self._owners.of if self.config.partitions is not None else None
        parts, committed, pseudonymize = self._partitions, self.committed, self.pseudonymize
        cache, touched, steps, max_ts = batch.cache, batch.touched, batch.steps, batch.max_ts
        grace, max_events = self.config.grace_ms, batch.max_events
        duplicate = old = late = 0  # counted once, at the end (steps not late are ok)
        for rec in records:
            p = rec.partition
            part = parts.get(p)
            if part is None:
                part = self._activate(p, rec.offset if resend is None else 0, out)
            part.last_seen_wall_ms = now
            if rec.timestamp > part.max_record_ts:
                part.max_record_ts = rec.timestamp
            start = committed.get(p, rec.offset)
            admitted = admit(rec, part, resend, limits, out, start, owner, pseudonymize)
            if admitted is None:
                continue
            event, offset = admitted
            ukey = (p, event.user_id)
            st = cache.get(ukey) or self._load(ukey, batch)
            touched.add(ukey)
            added = st.add_new(event, offset, max_events)
            if not added:
                duplicate += added is None
                old += added is False  # older than a full window: nothing to update
                continue
            ts, newest = event.ts_ms, max_ts.get(p, part.max_ts)
            late += ts < newest - grace
            part.users += st.n_total == 1
            st.partition = p
            max_ts[p] = newest = ts if ts > newest else newest
            steps.append(Step(event, offset, ukey, st, newest))
        got = {"ok": len(steps) - late, "late": old + late, "duplicate": duplicate}
        out.counts.update({name: n for name, n in got.items() if n})

    def _apply_scores(self, batch: _Batch, out: BatchOutput) -> None:
        """Pass 2: one scorer call for the batch's events, then, event by event in order,
        the alert rules and the deadline schedule."""
        started = time.perf_counter()
        steps = batch.steps
        windows = WindowsOf(batch.windows)  # as loaded: only a step model reads them
        kind = self._kind
        if kind[0] is not self.scorer:  # a Protocol's isinstance is slow: once a scorer
            kind = self._kind = (self.scorer, isinstance(self.scorer, StepScorer))
        if not kind[1]:  # a window scorer reads each step's
            Snapshot.prepare(steps)
        users = users_of(steps)
        scores = score_steps(
            self.scorer, kind[1], steps, users, batch.cache, windows, self.threshold
        )
        out.score_seconds = time.perf_counter() - started
        out.peaks = scores.peak.tolist()
        rules = EventRules(
            self.config,
            self._partitions,
            self.vectors,
            self.scorer.version,
            lambda p, part, offset: self._fire_due(p, part, offset, batch),
            lambda st, ukey, offset, spec: self._emit(batch, st, ukey, offset, spec),
        )
        rules.run(steps, users, batch.cache, batch.windows, scores, out)

    # -- erasure, expiry, idle partitions ------------------------------------------------

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
        key = self.pseudonymize(user_id) if self.pseudonymize is not None else user_id
        erased_at = self.clock_ms() if timestamp_ms is None else timestamp_ms
        return erase_user(
            self.store,
            self._partitions.get(partition),
            (partition, offset),
            key,
            erased_at,
            self.clock_ms(),
            self.scorer.version,
            self.config.erase_hold_ms,
        )

    def expire(self, ttl_ms: int) -> BatchOutput:
        """Delete the users of active partitions silent for longer than ``ttl_ms`` of event
        time (the partition's watermark minus their last event). A periodic sweep."""
        return self._guarded(
            expire_users, self.store, self._partitions, self.config.grace_ms, ttl_ms
        )

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
        read = self.take_in_schedules()  # their due deadlines fire here too
        out = BatchOutput()
        for n, committed in (assigned or {}).items():
            if n not in self._partitions:
                part = self._activate(n, committed, out)
                part.last_seen_wall_ms = now_ms  # idle from now on
        batch = _Batch()
        for n, part in self._partitions.items():
            if now_ms - part.last_seen_wall_ms >= idle_ms and now_ms - idle_ms > part.max_ts:
                part.max_ts = now_ms - idle_ms
                read.add(n)
            if n in read:
                self._fire_due(n, part, part.last_offset, batch)
        self._finish(out, batch, read)
        return out

    # -- state and alerts ----------------------------------------------------------------

    def _finish(self, out: BatchOutput, batch: _Batch, partitions: set[int]) -> None:
        c = self.config
        emit(batch.alerts, out, self.scorer, c.explain_events, c.keep_alerts, self.committed)
        out.writes = {**self.written_records(batch.touched, batch.cache), **out.writes}
        users = list(batch.touched)
        for ukey, raw in zip(users, encode_states([batch.cache[k] for k in users]), strict=True):
            out.writes[ukey] = raw
        # The watermark record goes last: the changelog keeps per-partition order, so a
        # recovered watermark implies the user records written before it were recovered too.
        for p in sorted(partitions):
            part = self._partitions.get(p)
            if part is not None:
                for user_key in part.expired_markers(self.config.erase_hold_ms):
                    out.deletes.append((p, erased_key(user_key)))
                out.writes[(p, WATERMARK_KEY)] = part.watermark_record()

    def _load(self, ukey: UserKey, batch: _Batch) -> UserState:
        st = batch.cache.get(ukey)
        if st is None:
            raw = self.store.get(*ukey)
            st = None
            if raw is not None:
                try:
                    st = decode_state(raw)
                except StateError:
                    log.exception(
                        "state of a user in partition %d is corrupt; starting anew", ukey[0]
                    )
            if st is None:
                st = UserState(partition=ukey[0])
            batch.cache[ukey] = st
            if st.n_events:
                batch.windows[ukey] = Snapshot(st)
        return st

    def _fire_due(
        self,
        partition: int,
        part: PartitionState,
        cause_offset: int,
        batch: _Batch,
    ) -> None:
        watermark = part.watermark(self.config.grace_ms)
        if not part.heap or part.heap[0][0] > watermark:
            return  # nothing due: the usual case, checked after every event
        for deadline, user_id in part.pop_due(watermark):
            ukey = (partition, user_id)
            st = self._load(ukey, batch)
            if st.deadline_ms != deadline or st.dormant_since_ms:
                log.warning("schedule and state disagree for a user of partition %d", partition)
                continue
            spec = alerting.dormant(st, batch.windows[ukey].window, deadline, self.threshold)
            batch.touched.add(ukey)
            self._emit(batch, st, ukey, cause_offset, spec)

    def _emit(
        self, batch: _Batch, st: UserState, ukey: UserKey, cause_offset: int, spec: AlertSpec
    ) -> None:
        """Queued with the window it fired on; sent, explained, when the batch ends (emit)."""
        payload = alerting.to_payload(spec, ukey[1], st, self.scorer.version, self.clock_ms())
        window, at = batch.windows[ukey].window, spec.event_time_ms
        batch.alerts.append(Pending(*ukey, spec.kind, st, cause_offset, payload, window, at))
