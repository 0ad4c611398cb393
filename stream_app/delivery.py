"""How a batch's output leaves the worker, and the offsets that go with it.

Its messages (events forwarded to their user's partition, dead letters, alerts, scores) are
handed to the producer (a port, stream_app.ports) a record batch per topic partition, and the
producer is flushed before every commit (at least once), or they are sent with the
partition's next offset in one Kafka transaction per partition (exactly once, see
stream_app.transactions). Its state changes go to the store in one write (the changelog's
records handed to the same producer, so the flush covers them, and one that fails halts as a
message does); its counts to the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from decay.settings import Settings
from stream_app import dead_letters, outbox
from stream_app.metrics import Metrics
from stream_app.outbox import Outgoing
from stream_app.ports import Group, Producer
from stream_app.processor import BatchOutput, Processor, ProcessorHalted, StateStore
from stream_app.transactions import PartitionTransactions

log = logging.getLogger(__name__)

# What the worker does when a message the producer gave up on means it must stop.
OnUndelivered = Callable[[BaseException, str], Awaitable[None]]


class Delivery:
    def __init__(
        self,
        settings: Settings,
        group: Group,
        producer: Producer,
        processor: Processor,
        store: StateStore,
        metrics: Metrics,
        limits: dict[str, int],
    ) -> None:
        self.settings = settings
        self.group = group
        self.producer = producer
        self.processor = processor
        self.store = store
        self.metrics = metrics
        self.dead_letter_max = limits.get(
            settings.dead_letter_topic, dead_letters.DEFAULT_MAX_MESSAGE_BYTES
        )
        request_max = max(limits.values(), default=dead_letters.DEFAULT_MAX_MESSAGE_BYTES)
        self.txns = (
            PartitionTransactions(
                settings, self.dead_letter_failed, limits, max_request_size=request_max
            )
            if settings.exactly_once
            else None
        )
        self.on_undelivered: OnUndelivered | None = None  # set by the worker
        # Delivery futures handed over since the last flush (see _flush).
        self._unsettled: list[asyncio.Future[Any]] = []

    # -- offsets ---------------------------------------------------------------------------

    def committed_offsets(self) -> dict[int, int]:
        return self.group.committed(self.settings.events_topic)

    async def _flush(self) -> None:
        """The producer flushed, and every delivery handed over before settled, its failure
        callback run (it halts the processor): a batch aiokafka has just failed may be out of
        its queues, so its flush does not wait for it, and a future's callbacks run a few
        loop steps after it fails. So the futures are awaited, and a failed one halts the
        processor here (``_delivered``, its callback, stops the worker when it runs)."""
        await self.producer.flush()
        pending, self._unsettled = self._unsettled, []
        waiting = [f for f in pending if not f.done()]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        await asyncio.sleep(0)  # a revocation woken with the flush gets in first
        for fut in pending:
            exc = None if fut.cancelled() else fut.exception()
            if exc is not None:
                self.processor.halt(exc)

    def _watch(self, fut: asyncio.Future[Any]) -> None:
        fut.add_done_callback(self._delivered)
        self._unsettled.append(fut)

    async def commit_applied(self, partitions: set[int] | None = None) -> None:
        """Commit what the processor applied; call under the worker's lock."""
        await self._flush()  # what the applied records sent is delivered first
        applied = self.processor.commit_offsets()  # none once halted
        if partitions is not None:
            applied = {p: o for p, o in applied.items() if p in partitions}
        await self.group.commit(self.settings.events_topic, applied)

    async def commit_snapshot(self, applied: dict[int, int], valid: Callable[[], bool]) -> None:
        """Commit ``applied`` (taken under the worker's lock, after the batches that applied
        it were handed to the producer) without holding that lock: the producer's flush
        waits for the broker, and batches go on meanwhile. ``valid()`` says the snapshot
        still holds (no revocation since, the processor not halted); it is asked after the
        flush and again in the commit slot, which a revocation's own commit waits for."""
        await self._flush()
        if valid():
            await self.group.commit(self.settings.events_topic, applied, valid)

    # -- messages --------------------------------------------------------------------------

    def dead_letter_failed(self, m: Outgoing, exc: BaseException) -> None:
        """Counted and logged, never a stop (see stream_app.outbox)."""
        self.metrics.dead_letters_failed.inc()
        log.error("dead letter of %s not sent to %s: %s", m.origin, m.topic, exc)

    def outgoing(self, out: BatchOutput) -> list[tuple[int, Outgoing]]:
        """The batch's messages, each with the events partition whose records caused it."""
        s = self.settings
        messages = []
        for fw in out.forwards:
            rec = fw.record
            headers = (
                ("decay-source-partition", str(rec.partition).encode()),
                ("decay-source-offset", str(rec.offset).encode()),
            )
            # Keyed by the user id and sent to its own partition; the record time kept, as
            # erasure compares it (see Processor.erase).
            forward = Outgoing(
                s.repartition,
                fw.user_id.encode(),
                rec.value or b"",
                headers,
                partition=fw.partition,
                timestamp_ms=rec.timestamp or None,
            )
            messages.append((rec.partition, forward))
        for dl in out.dead_letters:
            rec = dl.record
            source = dl.source or s.events_topic
            to_dead = dead_letters.dead_letter(
                s.dead_letter_topic, source, rec, dl.reason, dl.detail, self.dead_letter_max
            )
            messages.append((rec.partition, to_dead))
        for alert in out.alerts:
            key = alert.user_id.encode()
            messages.append((alert.partition, Outgoing(s.alerts_topic, key, alert.payload)))
        if s.scores_topic:
            for score in out.scores:
                key = score.user_id.encode()
                messages.append((score.partition, Outgoing(s.scores_topic, key, score.payload)))
        return messages

    def count_sent(self, out: BatchOutput) -> None:
        for dl in out.dead_letters:
            self.metrics.dead_letters.labels(dl.reason).inc()
        for alert in out.alerts:
            self.metrics.alerts.labels(alert.kind).inc()
        self.metrics.alerts_resent.inc(out.resent)

    async def send(self, m: Outgoing) -> Any:
        """Hand one message to the producer; the future of its delivery."""
        return await self.producer.send(m)

    def _delivered(self, fut: asyncio.Future[Any]) -> None:
        """An alert, a score or a batch of state changelog records the producer gave up on:
        nothing more may be committed (the records that caused it are applied again after
        the restart)."""
        if not fut.cancelled() and fut.exception() is not None:
            exc = fut.exception()
            assert exc is not None
            self.processor.halt(exc)
            if self.on_undelivered is not None:
                self.group.spawn(self.on_undelivered(exc, "a message was not delivered"))

    async def publish(self, out: BatchOutput) -> list[Any]:
        """At least once: hand the messages to the producer (flushed before commits), a
        record batch per topic partition; the dead letters one by one (see outbox)."""
        bulk = []
        for _, m in self.outgoing(out):
            if m.best_effort:  # a dead letter that fails is handled by the outbox
                await outbox.send(self.send, m, self.dead_letter_failed)
            else:
                bulk.append(m)
        futures = list({id(f): f for f in await self.producer.send_batches(bulk)}.values())
        for fut in futures:
            self._watch(fut)
        self.count_sent(out)
        return futures

    async def commit_in_transactions(self, outs: list[BatchOutput]) -> None:
        """Exactly once: per partition, its messages and its next offset in one transaction,
        once the state writes are on the broker (see stream_app.transactions)."""
        txns, group, topic = self.txns, self.group, self.settings.events_topic
        assert txns is not None
        await self._flush()
        if self.processor.halted is not None:  # a state change undelivered: nothing goes out
            raise ProcessorHalted("a delivery failed") from self.processor.halted
        messages: dict[int, list[Outgoing]] = {}
        for out in outs:
            for p, m in self.outgoing(out):
                messages.setdefault(p, []).append(m)
        applied = self.processor.commit_offsets()
        committed = self.committed_offsets()
        moved = {p: o for p, o in applied.items() if o > committed.get(p, -1)}
        async with group.commit_slot():
            for p in sorted(set(messages) | set(moved)):
                await txns.commit(p, messages.get(p, []), moved.get(p))
                if p in moved:  # so that Faust's own commits never go back below it
                    group.set_committed(topic, p, moved[p])
        for out in outs:
            self.count_sent(out)

    async def deliver(self, outs: list[BatchOutput]) -> list[Any]:
        """The delivery futures of the messages (at least once); none with transactions,
        whose messages are delivered when this returns."""
        if self.txns is None:
            return [fut for out in outs for fut in await self.publish(out)]
        await self.commit_in_transactions(outs)
        return []

    async def settle(self, out: BatchOutput) -> None:
        """For work no offset holds back (timers): see the messages delivered, then write."""
        if self.txns is None:
            pending = await self.publish(out)
            if pending:
                await asyncio.gather(*pending)
        else:
            await self.commit_in_transactions([out])
        await self.apply_writes(out)
        self.observe(out)

    # -- state and metrics -----------------------------------------------------------------

    async def apply_writes(self, out: BatchOutput) -> None:
        """The batch's state changes, their changelog handed to the producer (flushed before
        every commit, as the messages are; one that fails halts as a message does)."""
        for fut in await self.store.write(out.writes, out.deletes):
            self._watch(fut)

    def observe(self, out: BatchOutput) -> None:
        m, processor = self.metrics, self.processor
        for result, n in out.counts.items():
            m.events.labels(result).inc(n)
        if out.peaks:
            m.interest.observe(out.peaks)
        m.pending_deadlines.set(processor.pending_deadlines())
        m.schedules_loading.set(len(processor.schedules_loading()))
        m.users_tracked.set(processor.users_tracked())
        now = time.time()
        for p, wm in processor.watermarks().items():
            m.watermark.labels(str(p)).set(max(wm, 0) / 1000.0)
            m.watermark_lag.labels(str(p)).set(now - max(wm, 0) / 1000.0)
