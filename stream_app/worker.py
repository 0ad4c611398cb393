"""The worker: one method per thing it reacts to, over the ports create_app gives it
(stream_app.ports: Faust's in production, stream_app.testing's in memory). ``consume`` takes the
events topic a micro-batch at a time (``handle`` is one); ``erase`` and ``apply_forwarded`` one
record of the erase and repartition topics; the rest are timers and rebalance signals.
Whatever touches the processor holds the worker's lock: batches, erasures, sweeps and rollouts
never interleave.
A batch's order (look up the committed offsets, process, write, refill offset gaps, deliver)
is ``run_batch``'s; delivery and commits are stream_app.delivery's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from decay.events import Invalid, parse_erase_request
from decay.scoring import AnyScorer
from decay.settings import Settings
from stream_app import heap, stages
from stream_app.delivery import Delivery
from stream_app.metrics import Metrics
from stream_app.outbox import Outgoing
from stream_app.ports import Fetched, Ports
from stream_app.processor import BatchOutput, DeadLetter, Processor, Record
from stream_app.tail import TailWatch

log = logging.getLogger(__name__)

# How long the batch thread may hold the GIL while another thread waits for it (CPython's
# default 5 ms). The consumer's and the event loop's threads take it for a moment at every
# fetch, socket write and acknowledgement; at 5 ms a wait each, a fetch's records sat tens
# of milliseconds, hundreds in a burst, behind a batch (bench/latency.py's fetch stage).
SWITCH_INTERVAL_S = 0.0005

# What became of one record of the erase or repartition topic: acked, left unacked (its
# partition was revoked), or the worker stops.
Verdict = Literal["ack", "skip", "stop"]


def as_records(found: Iterable[Any]) -> list[Record]:
    """Consumer records (aiokafka's, or any with these fields; timestamps in ms) as the
    processor's."""
    return [Record(r.partition, r.offset, r.key, r.value, r.timestamp) for r in found]


class Worker:
    def __init__(
        self,
        settings: Settings,
        ports: Ports,
        processor: Processor,
        delivery: Delivery,
        metrics: Metrics,
        clock_ms: Callable[[], int],
        tail: TailWatch,
    ) -> None:
        """``tail``: told of every fetch as it comes (see stream_app.tail_check)."""
        self.settings = settings
        self.group = ports.group
        self.batches = ports.batches
        self.group_offsets = ports.committed
        self.gaps = ports.reader
        self.tail = tail
        self.processor = processor
        self.delivery = delivery
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.lock = asyncio.Lock()
        self.revocations = 0  # on_revoked calls so far
        # One thread for all batches (they run one at a time under the lock): the default
        # pool would spread them over several threads, and glibc gives each its own arena.
        self.batch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decay-batch")
        delivery.on_undelivered = self.stop

    # -- failure ---------------------------------------------------------------------------

    async def stop(self, exc: BaseException, what: str) -> None:
        """Halt the processor first: until Faust has stopped, timers must neither commit
        nor apply what a failed batch left half done (see Processor.halt)."""
        log.exception("%s; stopping the worker", what, exc_info=exc)
        self.processor.halt(exc)
        await self.group.crash(exc)

    def fatal(self, timer: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``timer``, whose failure stops the worker as a failed batch does."""

        async def run() -> None:
            if self.processor.halted is not None:
                return
            try:
                await timer()
            except Exception as exc:
                await self.stop(exc, f"{timer.__name__} failed")

        return run

    # -- the batch -------------------------------------------------------------------------

    def assigned(self, topic: str | None = None) -> set[int]:
        """The partitions of ``topic`` (default: the events topic) assigned here now."""
        return self.group.assigned(topic or self.settings.events_topic)

    async def look_up_committed(self, partitions: Iterable[int]) -> None:
        """Before this worker applies anything of ``partitions`` (not yet active here): their
        committed offsets as the broker has them now, where the processor starts (see
        runtime.offsets.GroupOffsets). With transactions, the previous owners are fenced first, so
        none of them commits after the look-up. A partition never committed starts at its log
        start, where the group starts it (auto.offset.reset=earliest), not at the first record
        that comes: what the consumer fetched while a rebalance held the flow was dropped, and
        Faust's seek to the committed offsets does not bring such a partition back (aiokafka
        seeks only to a committed offset above 0), so its first records would be lost."""
        processor, topic = self.processor, self.settings.events_topic
        new = sorted(set(partitions) - set(processor.active_partitions()))
        if not new:
            return
        if self.delivery.txns is not None:
            await self.delivery.txns.fence(new)
        found = await self.group_offsets.fetch(topic, new)
        never = [p for p in new if p not in found]
        if never:  # a first record past the log start is then a gap, read by the worker
            found.update(await self.gaps.start_offsets(topic, never))
        for p in new:
            if p in found:
                processor.committed[p] = found[p]
                self.group.set_committed(topic, p, found[p])
            else:
                processor.committed.pop(p, None)

    async def run_batch(self, records: list[Record]) -> tuple[list[BatchOutput], list[Any]]:
        """Process, write, publish; then fill the offset gaps the batch had, if any, and
        process the records held behind them. The outputs, and the delivery futures of
        their messages (none with transactions: delivered by then)."""
        await self.look_up_committed({r.partition for r in records})
        outs = []
        for _ in range(len(records) + 1):  # each round applies at least one record
            # In a thread: a partition's activation reads all its users, and Faust's
            # fetching, timers and web pages go on meanwhile. Only code holding the lock
            # touches the processor's partitions.
            out = await asyncio.get_running_loop().run_in_executor(
                self.batch_thread, self.processor.process, records
            )
            await self.delivery.apply_writes(out)
            outs.append(out)
            records = []
            for p, (missing, came) in out.gaps.items():
                found = await self.gaps.read(self.settings.events_topic, p, missing, came)
                log.warning(
                    "partition %d: offset %d came before %d; read %d missing records",
                    *(p, came, missing, len(found)),
                )
                self.metrics.refetched.inc(len(found))
                self.processor.accept_gap(p, came)
                records += as_records(found) + [r for r in out.held if r.partition == p]
            if not records:
                break
        return outs, await self.delivery.deliver(outs)

    def applicable(self, fetched: Sequence[Fetched]) -> list[Record]:
        """The records of ``fetched`` this worker may apply now. One fetched before the
        latest rebalance is not: its partition's owner (maybe this worker again) reads it
        anew from the committed offset, and applying it could write over the owner's state
        in the changelog. As a Faust stream: nothing while a rebalance holds the flow.
        The records are not copied: aiokafka's have the fields of a Record (partition,
        offset, key, value, timestamp in ms; tests/unit/test_runtime_contract.py)."""
        generation = self.group.generation()
        if not self.group.flowing():
            return []
        assigned = self.assigned()
        records: list[Record] = []
        for f in fetched:  # the consumer's records as they are: they have a Record's fields
            if f.generation == generation and f.partition in assigned:
                records += f.records
        return records

    async def consume(self) -> None:
        """The events topic, a micro-batch at a time, straight from the consumer's fetches
        (see stream_app.runtime.intake), until a batch fails (then the worker stops)."""
        s = self.settings
        heap.settle()  # started: see stream_app.heap
        before = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)  # process-wide: put back when consuming ends
        try:
            while await self.handle(await self.batches.take(s.batch_max, s.batch_within_s)):
                pass
        finally:
            sys.setswitchinterval(before)

    async def handle(self, fetched: Sequence[Fetched]) -> bool:
        """One micro-batch; False when it failed and the worker is stopping. Offsets are
        committed from what the processor applied, after the batch's state writes and
        messages are handed to the producer, which is flushed before each commit: a failure
        before that leaves them uncommitted."""
        m = self.metrics
        started, started_at = time.perf_counter(), time.time()
        n = sum(len(f.records) for f in fetched)
        try:
            async with self.lock:
                records = self.applicable(fetched)
                m.stale_records.inc(n - len(records))
                self.processor.committed = self.delivery.committed_offsets()
                outs, sent = await self.run_batch(records) if records else ([], [])
        except Exception as exc:
            # Stop the worker rather than go on past a hole in the committed offsets.
            await self.stop(exc, f"batch of {n} records failed")
            return False
        handed = time.time()
        stages.observe_batch(m, fetched, started_at, handed)
        stages.observe_sent(m, sent, handed, n)
        for out in outs:
            self.delivery.observe(out)
            m.scoring_seconds.observe(out.score_seconds)
        m.batch_size.observe(n)
        m.batch_seconds.observe(time.perf_counter() - started)
        return True

    # -- the erase and repartition topics --------------------------------------------------

    async def erase_request(self, rec: Record) -> None:
        """Erase, or forward the request to its user's own partition (where the state is), or
        dead-letter it."""
        s, processor = self.settings, self.processor
        user = parse_erase_request(rec.value, rec.key)
        if isinstance(user, Invalid):
            dead = DeadLetter(rec, user.reason, user.detail, s.erase_topic)
            await self.delivery.settle(BatchOutput(dead_letters=[dead]))
            return
        own = processor.own_partition(user)
        if own != rec.partition:
            timestamp = rec.timestamp or None
            forward = Outgoing(
                s.erase_topic, user.encode(), user.encode(), partition=own, timestamp_ms=timestamp
            )
            await (await self.delivery.send(forward))  # delivered before this one is acked
            self.metrics.events.labels("erase_forwarded").inc()
            return
        await self.look_up_committed([rec.partition])
        out = processor.erase(rec.partition, rec.offset, user, rec.timestamp or None)
        await self.delivery.settle(out)

    async def erase(self, rec: Record) -> Verdict:
        """One erase request, under the lock; "stop" when it failed (the worker stops, the
        request stays unacked, so it is not lost)."""
        try:
            async with self.lock:
                await self.erase_request(rec)
        except Exception as exc:
            await self.stop(exc, f"erase request at offset {rec.offset} failed")
            return "stop"
        return "ack"

    async def apply_forwarded(self, rec: Record) -> Verdict:
        """An event forwarded to its user's partition (see Processor.process_forwarded):
        "ack" once its output is handed to the producer (which is flushed before the record
        is committed), "stop" when it failed (the worker stops; unacked, it is not lost)."""
        delivery = self.delivery
        if rec.partition not in self.assigned(self.settings.repartition):
            return "skip"  # revoked meanwhile: its new owner reads it from the commit
        try:
            async with self.lock:
                await self.look_up_committed([rec.partition])
                # With transactions its output is committed before the next batch.
                resend = delivery.txns is None
                out = self.processor.process_forwarded([rec], resend=resend)
                await delivery.deliver([out])
                await delivery.apply_writes(out)
        except Exception as exc:
            await self.stop(exc, f"forwarded event at offset {rec.offset} failed")
            return "stop"
        delivery.observe(out)
        return "ack"

    # -- timers ----------------------------------------------------------------------------

    async def advance_idle_partitions(self) -> None:
        """Live mode's idle clock (Processor.tick). Not while Faust holds the partitions (a
        rebalance, a table recovery): a partition activated then would build its schedule
        from a table still being restored and miss the rest of its deadlines for good."""
        async with self.lock:
            if self.group.holding():
                return
            partitions = sorted(self.assigned())
            await self.look_up_committed(partitions)
            if self.group.holding():  # it began during the lookup's round trips
                return
            assigned = {p: self.processor.committed.get(p, 0) for p in partitions}
            idle_ms = int(self.settings.idle_s * 1000)
            out = self.processor.tick(self.clock_ms(), idle_ms, assigned)
            await self.delivery.settle(out)

    async def expire_idle_users(self) -> None:
        async with self.lock:
            ttl_ms = int(self.settings.state_ttl_days * 86_400_000)
            await self.delivery.settle(self.processor.expire(ttl_ms))

    async def roll_out(self, new: AnyScorer) -> None:
        """Serve ``new`` from the next batch on: each batch is scored by one model."""
        async with self.lock:
            self.metrics.model_info.labels(self.processor.scorer.version).set(0)
            self.processor.scorer = new
            self.metrics.model_info.labels(new.version).set(1)

    async def commit_processed(self) -> None:
        """The offsets applied so far, read under the lock and committed off it (see
        Delivery.commit_snapshot): a batch need not wait for the broker to acknowledge the
        last second's messages. A revocation since the read, or a halt, cancels it."""
        async with self.lock:
            applied, revocations = self.processor.commit_offsets(), self.revocations
        if not applied:
            return

        def valid() -> bool:
            return self.revocations == revocations and self.processor.halted is None

        await self.delivery.commit_snapshot(applied, valid)

    async def sample_lag(self) -> None:
        group, m = self.group, self.metrics
        m.recovery_remaining.set(group.recovery_remaining())
        async with self.lock:
            last_offsets = self.processor.last_offsets()
        for p, last in last_offsets.items():
            highwater = group.highwater(self.settings.events_topic, p)
            if highwater is not None:
                m.consumer_lag.labels(str(p)).set(max(highwater - last - 1, 0))

    # -- signals ---------------------------------------------------------------------------

    async def on_revoked(self, gone: set[int]) -> None:
        """The events topic's partitions ``gone`` are no longer this worker's."""
        txns, m = self.delivery.txns, self.metrics
        self.revocations += 1  # a commit read before this one is not made (commit_processed)
        async with self.lock:
            try:  # the next owner then starts where this worker stopped, not at older commits
                if txns is None:
                    await self.delivery.commit_applied(gone)
                else:  # committed with each batch; the next owner's producer fences these
                    await txns.close(gone)
            except Exception:  # it redoes what this worker did: duplicates, nothing lost
                log.exception("could not commit partitions %s on revocation", sorted(gone))
            self.processor.revoke(sorted(gone))
            self.group.forget_committed(self.settings.events_topic, gone)
        for p in gone:  # a partition's series belong to its owner from now on
            for gauge in (m.watermark, m.watermark_lag, m.consumer_lag):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(p))

    async def on_shutdown(self) -> None:
        txns = self.delivery.txns
        if txns is None:  # a graceful stop hands over what was applied, as a revocation does
            async with self.lock:  # Faust has stopped fetching: the batch under way is the last
                try:  # (a halted processor commits nothing)
                    await self.delivery.commit_applied()
                except Exception:  # the next start redoes it: duplicates, nothing lost
                    log.exception("could not commit on shutdown")
        await self.gaps.stop()
        await self.group_offsets.stop()
        self.batch_thread.shutdown(wait=False)
        if txns is not None:
            await txns.close()
