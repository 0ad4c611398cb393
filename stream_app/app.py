"""The Faust app, built by a factory from the settings. Nothing runs at import time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.types import TP
from prometheus_client import CollectorRegistry

from decay.engagement import DAY_MS, EngagementRules
from decay.events import Invalid, parse_erase_request
from decay.scoring import AnyScorer
from decay.settings import Settings
from decay_kafka.kafka_client import ssl_context
from decay_kafka.topics import STATE_TABLE
from decay_kafka.topics import message_limits as topic_limits
from stream_app import dead_letters, offsets, outbox, rocks
from stream_app.intake import Intake
from stream_app.metrics import Metrics
from stream_app.outbox import Outgoing
from stream_app.processor import BatchOutput, DeadLetter, Processor, ProcessorConfig, Record
from stream_app.rollout import ModelWatcher, load_scorer, pseudonymizer
from stream_app.store import FaustTableStore
from stream_app.transactions import PartitionTransactions
from stream_app.web import register_pages

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Worker:
    """What a running worker holds: the app, its processor and metrics."""

    app: faust.App
    processor: Processor
    metrics: Metrics
    registry: CollectorRegistry


def processor_config(settings: Settings) -> ProcessorConfig:
    return ProcessorConfig(
        max_events=settings.window_events,
        grace_ms=int(settings.grace_s * 1000),
        threshold=settings.threshold,
        engagement=EngagementRules(
            half_life_ms=int(settings.category_half_life_days * DAY_MS),
            min_peak=settings.category_min_peak,
            min_silence_ms=int(settings.category_min_silence_days * DAY_MS),
        ),
        publish_scores=settings.scores_topic is not None,
        score_min_change=settings.score_min_change,
        partitions=settings.partitions,
        erase_hold_ms=int(settings.erase_hold_days * 86_400_000),
    )


def broker_credentials(settings: Settings) -> faust.SASLCredentials | None:
    """Faust's SASL credentials (with a TLS context for SASL_SSL); None for PLAINTEXT."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    assert settings.sasl_password is not None  # Settings checks it with SASL
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context(settings),  # given: SASL_SSL; None: SASL_PLAINTEXT
    )


def faust_app(settings: Settings, max_request_bytes: int | None = None) -> faust.App:
    """The Faust app with the worker's configuration and nothing registered on it yet (the
    benchmarks build their reference agents on the same). ``max_request_bytes``: the
    producer's request limit, at least the largest message the output topics accept."""
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=broker_credentials(settings),
        store="rocksdb://",
        Table=rocks.StateTable,  # one RocksDB memory budget for all partitions of a table
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        producer_acks=-1,
        # Changelog records and alerts of a batch go out in a few requests, not one each.
        producer_linger=0.005,
        producer_max_request_size=max_request_bytes or dead_letters.DEFAULT_MAX_MESSAGE_BYTES,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust binds to web_bind, by default every interface
        web_port=settings.web_port,
        web_in_thread=False,
        # Where the other workers forward /users requests for this worker's partitions.
        canonical_url=f"http://{settings.web_advertised_host or settings.web_host}:"
        f"{settings.web_port}",
        table_standby_replicas=0,
    )


def create_app(
    settings: Settings,
    scorer: AnyScorer | None = None,
    registry: CollectorRegistry | None = None,
    message_limits: dict[str, int] | None = None,
) -> Worker:
    """The worker. ``message_limits``: the largest record each topic accepts (read from the
    broker when not given, see decay_kafka.topics.message_limits)."""
    scorer = scorer or load_scorer(settings)
    registry = registry or CollectorRegistry()
    metrics = Metrics.create(registry)
    metrics.model_info.labels(scorer.version).set(1)
    if message_limits is None:
        message_limits = asyncio.run(topic_limits(settings))
    dead_letter_max = message_limits.get(
        settings.dead_letter_topic, dead_letters.DEFAULT_MAX_MESSAGE_BYTES
    )
    request_max = max(message_limits.values(), default=dead_letters.DEFAULT_MAX_MESSAGE_BYTES)
    app = faust_app(settings, request_max)
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    codecs: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}

    def topic(name: str) -> Any:
        return app.topic(name, partitions=settings.partitions, **raw, **codecs)

    topics = {
        name: topic(name)
        for name in (
            settings.alerts_topic,
            settings.dead_letter_topic,
            settings.scores_topic,
            settings.repartition,
        )
        if name
    }
    # Co-partitioned with events (same count, the user id as key): Faust assigns partition p
    # of all three to one worker.
    erase = topics[settings.erase_topic] = topic(settings.erase_topic)
    repartition = topics[settings.repartition]

    def dead_letter_failed(m: Outgoing, exc: BaseException) -> None:
        """Counted and logged, never a stop (see stream_app.outbox)."""
        metrics.dead_letters_failed.inc()
        log.error("dead letter of %s not sent to %s: %s", m.origin, m.topic, exc)

    txns = (
        PartitionTransactions(settings, dead_letter_failed, max_request_size=request_max)
        if settings.exactly_once
        else None
    )
    # Keys and values are raw bytes (values: decay.state's encoding): Faust then uses its raw
    # codec, which recovers from the changelog cleanly, unlike list/dict value types.
    table = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options={
            "write_buffer_size": settings.rocksdb_write_buffer_mb * 2**20,
            "max_write_buffer_number": 2,
            rocks.CACHE_MB: settings.rocksdb_cache_mb,
        },
    )
    store = FaustTableStore(table, settings.events_topic)
    pseudonym = pseudonymizer(settings)
    processor = Processor(processor_config(settings), scorer, store, _now_ms, pseudonym)
    lock = asyncio.Lock()  # batches, erasures, sweeps and rollouts never interleave

    def committed_offsets() -> dict[int, int]:
        return offsets.committed_offsets(app.consumer, settings.events_topic)

    async def commit_applied(partitions: set[int] | None = None) -> None:
        """Commit what the processor applied; call under the lock (see stream_app.offsets)."""
        applied = processor.commit_offsets()
        if partitions is not None:
            applied = {p: o for p, o in applied.items() if p in partitions}
        await offsets.commit_applied(app.consumer, settings.events_topic, applied)

    def outgoing(out: BatchOutput) -> list[tuple[int, Outgoing]]:
        """The batch's messages, each with the events partition whose records caused it."""
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
                settings.repartition,
                fw.user_id.encode(),
                rec.value or b"",
                headers,
                partition=fw.partition,
                timestamp_ms=rec.timestamp or None,
            )
            messages.append((rec.partition, forward))
        for dl in out.dead_letters:
            rec = dl.record
            to_dead = dead_letters.dead_letter(
                settings.dead_letter_topic,
                dl.source or settings.events_topic,
                rec,
                dl.reason,
                dl.detail,
                dead_letter_max,
            )
            messages.append((rec.partition, to_dead))
        for alert in out.alerts:
            key = alert.user_id.encode()
            messages.append((alert.partition, Outgoing(settings.alerts_topic, key, alert.payload)))
        if settings.scores_topic:
            for score in out.scores:
                key = score.user_id.encode()
                messages.append(
                    (score.partition, Outgoing(settings.scores_topic, key, score.payload))
                )
        return messages

    def count_sent(out: BatchOutput) -> None:
        for dl in out.dead_letters:
            metrics.dead_letters.labels(dl.reason).inc()
        for alert in out.alerts:
            metrics.alerts.labels(alert.kind).inc()
        metrics.alerts_resent.inc(out.resent)

    async def faust_send(m: Outgoing) -> Any:
        return await topics[m.topic].send(
            key=m.key,
            value=m.value,
            partition=m.partition,
            timestamp=m.timestamp_ms / 1000.0 if m.timestamp_ms else None,
            headers=list(m.headers),
        )

    def delivered(fut: asyncio.Future[Any]) -> None:
        """An alert or score the producer gave up on: nothing more may be committed (the
        records that caused it are applied again after the restart)."""
        if not fut.cancelled() and fut.exception() is not None:
            exc = fut.exception()
            assert exc is not None
            processor.halt(exc)
            app.add_future(stop_worker(exc, "a message was not delivered"))

    async def publish(out: BatchOutput) -> list[Any]:
        """At least once: hand the messages to Faust's producer (flushed before commits)."""
        futures = []
        for _, m in outgoing(out):
            fut = await outbox.send(faust_send, m, dead_letter_failed)
            if not m.best_effort:  # a dead letter that fails is handled by the outbox
                assert fut is not None
                fut.add_done_callback(delivered)
                futures.append(fut)
        count_sent(out)
        return futures

    async def commit_in_transactions(outs: list[BatchOutput], txns: PartitionTransactions) -> None:
        """Exactly once: per partition, its messages and its next offset in one transaction,
        once the state writes are on the broker (see stream_app.transactions)."""
        await app.producer.flush()
        messages: dict[int, list[Outgoing]] = {}
        for out in outs:
            for p, m in outgoing(out):
                messages.setdefault(p, []).append(m)
        applied = processor.commit_offsets()
        committed = committed_offsets()
        moved = {p: o for p, o in applied.items() if o > committed.get(p, -1)}
        async with offsets.commit_slot(app.consumer):
            for p in sorted(set(messages) | set(moved)):
                await txns.commit(p, messages.get(p, []), moved.get(p))
                if p in moved:  # so that Faust's own commits never go back below it
                    offsets.set_committed(app.consumer, settings.events_topic, p, moved[p])
        for out in outs:
            count_sent(out)

    async def deliver(outs: list[BatchOutput]) -> None:
        if txns is None:
            for out in outs:
                await publish(out)
        else:
            await commit_in_transactions(outs, txns)

    def apply_writes(out: BatchOutput) -> None:
        for (partition, key), value in out.writes.items():
            store.put(partition, key, value)
        for partition, key in out.deletes:
            store.delete(partition, key)

    def observe(out: BatchOutput) -> None:
        for result, n in out.counts.items():
            metrics.events.labels(result).inc(n)
        for peak in out.peaks:
            metrics.interest.observe(peak)
        metrics.pending_deadlines.set(processor.pending_deadlines())
        metrics.users_tracked.set(processor.users_tracked())
        now = time.time()
        for p, wm in processor.watermarks().items():
            metrics.watermark.labels(str(p)).set(max(wm, 0) / 1000.0)
            metrics.watermark_lag.labels(str(p)).set(now - max(wm, 0) / 1000.0)

    async def settle(out: BatchOutput) -> None:
        """For work no offset holds back (timers): see the messages delivered, then write."""
        if txns is None:
            pending = await publish(out)
            if pending:
                await asyncio.gather(*pending)
        else:
            await commit_in_transactions([out], txns)
        apply_writes(out)
        observe(out)

    gaps = offsets.GapReader(settings)
    # One thread for all batches (they run one at a time under the lock): the default pool
    # would spread them over several threads, and glibc gives each its own malloc arena.
    batch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decay-batch")
    tail = offsets.TailWatch(settings.batch_max)
    # A partition whose records wait in the intake's queue is not stalled.
    intake = Intake(app, settings.events_topic, on_fetch=lambda p: tail.delivered((p,)))

    group_offsets = offsets.GroupOffsets(settings)

    async def look_up_committed(partitions: Iterable[int]) -> None:
        """Before this worker applies anything of ``partitions`` (not yet active here): their
        committed offsets as the broker has them now, where the processor starts (see
        offsets.GroupOffsets). With transactions, the previous owners are fenced first, so
        none of them commits after the look-up."""
        new = sorted(set(partitions) - set(processor.active_partitions()))
        if not new:
            return
        if txns is not None:
            await txns.fence(new)
        found = await group_offsets.fetch(settings.events_topic, new)
        for p in new:
            if p in found:
                processor.committed[p] = found[p]
                offsets.set_committed(app.consumer, settings.events_topic, p, found[p])
            else:
                processor.committed.pop(p, None)

    async def run_batch(records: list[Record]) -> list[BatchOutput]:
        """Process, write, publish; then fill the offset gaps the batch had, if any, and
        process the records held behind them."""
        await look_up_committed({r.partition for r in records})
        outs = []
        for _ in range(len(records) + 1):  # each round applies at least one record
            # In a thread: a partition's activation reads all its users (half a minute at a
            # million users), and Faust's fetching, timers and web pages go on meanwhile.
            # Only code holding the lock touches the processor's partitions.
            out = await asyncio.get_running_loop().run_in_executor(
                batch_thread, processor.process, records
            )
            apply_writes(out)
            outs.append(out)
            records = []
            for p, (missing, came) in out.gaps.items():
                found = await gaps.read(settings.events_topic, p, missing, came)
                log.warning(
                    "partition %d: offset %d came before %d; read %d missing records",
                    p,
                    came,
                    missing,
                    len(found),
                )
                metrics.refetched.inc(len(found))
                processor.accept_gap(p, came)
                records += [
                    Record(r.partition, r.offset, r.key, r.value, r.timestamp) for r in found
                ]
                records += [r for r in out.held if r.partition == p]
            if not records:
                break
        await deliver(outs)
        return outs

    async def stop_worker(exc: BaseException, what: str) -> None:
        """Halt the processor first: until Faust has stopped, timers must neither commit
        nor apply what a failed batch left half done (see Processor.halt)."""
        log.exception("%s; stopping the worker", what, exc_info=exc)
        processor.halt(exc)
        await app.crash(exc)

    def fatal(timer: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A timer whose failure stops the worker, as a failed batch does."""

        @functools.wraps(timer)
        async def run() -> None:
            if processor.halted is not None:
                return
            try:
                await timer()
            except Exception as exc:
                await stop_worker(exc, f"{timer.__name__} failed")

        return run

    @app.task
    async def consume() -> None:
        """The events topic, a micro-batch at a time, straight from Faust's fetches (see
        stream_app.intake). Offsets are committed from what the processor applied, after the
        batch's state writes and messages are handed to the producer, which is flushed before
        each commit: a failure before that leaves them uncommitted."""
        while True:
            fetched = await intake.take(settings.batch_max, settings.batch_within_s)
            started = time.perf_counter()
            n = sum(len(f.records) for f in fetched)
            try:
                async with lock:
                    # A record fetched before the latest rebalance is not this worker's to
                    # apply: its partition's owner (maybe this worker again) reads it anew
                    # from the committed offset. Applying it could write over the owner's
                    # state in the changelog.
                    # As a Faust stream: nothing while a rebalance holds the flow (from
                    # before the revocation until the partitions are sought again).
                    generation = app.consumer_generation_id
                    flowing = app.flow_control.is_active()
                    assigned = {
                        tp.partition
                        for tp in app.consumer.assignment()
                        if tp.topic == settings.events_topic
                    }
                    records = [
                        Record(f.partition, r.offset, r.key, r.value, r.timestamp)
                        for f in fetched
                        if flowing and f.generation == generation and f.partition in assigned
                        for r in f.records
                    ]
                    metrics.stale_records.inc(n - len(records))
                    processor.committed = committed_offsets()
                    outs = await run_batch(records) if records else []
            except Exception as exc:
                # Stop the worker rather than go on past a hole in the committed offsets.
                await stop_worker(exc, f"batch of {n} records failed")
                return
            now_ms = time.time() * 1000.0
            for f in fetched:
                for r in f.records:
                    metrics.event_to_score.observe(max(now_ms - r.timestamp, 0.0) / 1000.0)
            for out in outs:
                observe(out)
                metrics.scoring_seconds.observe(out.score_seconds)
            metrics.batch_size.observe(n)
            metrics.batch_seconds.observe(time.perf_counter() - started)

    def record_of(msg: Any) -> Record:
        timestamp = int(msg.timestamp * 1000) if msg.timestamp else 0
        return Record(msg.partition, msg.offset, msg.key, msg.value, timestamp)

    async def erase_request(rec: Record) -> None:
        """Erase, or forward the request to its user's own partition (where the state is), or
        dead-letter it."""
        user = parse_erase_request(rec.value, rec.key)
        if isinstance(user, Invalid):
            dead = DeadLetter(rec, user.reason, user.detail, settings.erase_topic)
            await settle(BatchOutput(dead_letters=[dead]))
            return
        own = processor.own_partition(user)
        if own != rec.partition:
            forward = Outgoing(
                settings.erase_topic,
                user.encode(),
                user.encode(),
                partition=own,
                timestamp_ms=rec.timestamp or None,
            )
            await (await faust_send(forward))  # delivered before this one is acked
            metrics.events.labels("erase_forwarded").inc()
            return
        await look_up_committed([rec.partition])
        await settle(processor.erase(rec.partition, rec.offset, user, rec.timestamp or None))

    @app.agent(erase)
    async def erase_users(stream: Any) -> None:
        async for event in stream.noack().events():
            rec = record_of(event.message)
            try:
                async with lock:
                    await erase_request(rec)
            except Exception as exc:  # unacked, so the request is not lost
                await stop_worker(exc, f"erase request at offset {rec.offset} failed")
                return
            await stream.ack(event)

    @app.agent(repartition)
    async def apply_forwarded(stream: Any) -> None:
        """Events forwarded to their user's partition (see Processor.process_forwarded), one
        at a time, as Faust's stream hands them: acked once their output is handed to the
        producer, which Faust flushes before it commits them."""
        async for event in stream.noack().events():
            rec = record_of(event.message)
            if TP(settings.repartition, rec.partition) not in app.consumer.assignment():
                continue  # revoked meanwhile: its new owner reads it from the commit
            try:
                async with lock:
                    await look_up_committed([rec.partition])
                    # With transactions its output is committed before the next batch.
                    out = processor.process_forwarded([rec], resend=txns is None)
                    await deliver([out])
                    apply_writes(out)
            except Exception as exc:  # unacked, so the event is not lost
                await stop_worker(exc, f"forwarded event at offset {rec.offset} failed")
                return
            observe(out)
            await stream.ack(event)

    if settings.live:

        @app.timer(interval=min(settings.idle_s, 5.0))
        @fatal
        async def advance_idle_partitions() -> None:
            async with lock:
                partitions = [
                    tp.partition
                    for tp in app.consumer.assignment()
                    if tp.topic == settings.events_topic
                ]
                await look_up_committed(partitions)
                assigned = {p: processor.committed.get(p, 0) for p in partitions}
                out = processor.tick(_now_ms(), int(settings.idle_s * 1000), assigned)
                await settle(out)

    if settings.state_ttl_days > 0:

        @app.timer(interval=settings.ttl_sweep_s)
        @fatal
        async def expire_idle_users() -> None:
            async with lock:
                await settle(processor.expire(int(settings.state_ttl_days * 86_400_000)))

    if settings.model_dir is not None:

        def refused(path: Any, exc: Exception) -> None:
            metrics.models_refused.inc()

        watcher = ModelWatcher(settings.model_dir, settings, refused)

        @app.timer(interval=settings.model_poll_s)
        async def roll_out_models() -> None:
            new = await asyncio.to_thread(watcher.poll)
            if new is None:
                return
            async with lock:  # between two batches: each batch is scored by one model
                metrics.model_info.labels(processor.scorer.version).set(0)
                processor.scorer = new
                metrics.model_info.labels(new.version).set(1)

    @app.timer(interval=5.0)
    async def read_stalled_partitions() -> None:
        """Apply the records Faust's consumer will not deliver (see offsets.TailWatch). A
        read that fails (the broker away) is tried again at the next check; a failure once
        records are being applied stops the worker, as in a batch."""
        consumer = app.consumer
        async with lock:
            if app.rebalancing or app.in_recovery or processor.halted is not None:
                return  # Faust holds partitions back during the first two, rightly
            if intake.fetches.backlog():
                return  # busy: fetches wait for their turn (a full queue holds fetching)
            # Paused: waiting for the table's recovery, not stalled (Faust internal, pinned).
            paused = consumer._paused_partitions  # type: ignore[attr-defined]
            assigned = [
                tp.partition
                for tp in consumer.assignment()
                if tp.topic == settings.events_topic and tp not in paused
            ]
            committed = committed_offsets()
            applied = processor.commit_offsets()
            # Applied: where this worker's unbroken run ends; else where Faust will start.
            nexts = {
                p: applied[p] if p in applied else committed[p]
                for p in assigned
                if p in applied or p in committed
            }
            if not nexts:
                return
            try:
                ends = await gaps.end_offsets(settings.events_topic, nexts)
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning("tail check: no end offsets (%s); trying again later", exc)
                return
            for p, (start, end) in tail.stalled(nexts, ends).items():
                try:
                    found = await gaps.read(settings.events_topic, p, start, end)
                except (KafkaError, TimeoutError, OSError) as exc:
                    log.warning("tail check: partition %d not read (%s); later", p, exc)
                    continue
                metrics.refetched.inc(len(found))
                if not found:  # only transaction markers there
                    processor.accept_gap(p, end)
                    continue
                log.warning(
                    "partition %d: no record delivered past offset %d of %d; read %d",
                    p,
                    start - 1,
                    end,
                    len(found),
                )
                processor.committed = committed
                records = [
                    Record(r.partition, r.offset, r.key, r.value, r.timestamp) for r in found
                ]
                try:
                    outs = await run_batch(records)
                except Exception as exc:
                    await stop_worker(exc, f"records read from partition {p} failed")
                    return
                for out in outs:
                    observe(out)

    if txns is None:  # else every batch commits its offsets in its transactions

        @app.timer(interval=settings.commit_interval_s)
        async def commit_processed() -> None:
            async with lock:
                await commit_applied()

    @app.timer(interval=5.0)
    async def sample_lag() -> None:
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        metrics.recovery_remaining.set(recovery.active_remaining_total())
        async with lock:
            last_offsets = processor.last_offsets()
        assigned = app.consumer.assignment()
        for p, last in last_offsets.items():
            tp = TP(settings.events_topic, p)
            if tp not in assigned:
                continue
            try:
                highwater = app.consumer.highwater(tp)
            except AssertionError:  # revoked meanwhile (aiokafka runs in its own thread)
                continue
            if highwater is not None:
                metrics.consumer_lag.labels(str(p)).set(max(highwater - last - 1, 0))

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == settings.events_topic}
        async with lock:
            try:  # the next owner then starts where this worker stopped, not at older commits
                if txns is None:
                    await commit_applied(gone)
                else:  # committed with each batch; the next owner's producer fences these
                    await txns.close(gone)
            except Exception:  # it redoes what this worker did: duplicates, nothing lost
                log.exception("could not commit partitions %s on revocation", sorted(gone))
            processor.revoke(sorted(gone))
            offsets.forget_committed(app.consumer, settings.events_topic, gone)
        for p in gone:  # a partition's series belong to its owner from now on
            for gauge in (metrics.watermark, metrics.watermark_lag, metrics.consumer_lag):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(p))

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        if txns is None:  # a graceful stop hands over what was applied, as a revocation does
            async with lock:  # Faust has stopped fetching: the batch under way is the last
                try:  # (a halted processor commits nothing)
                    await commit_applied()
                except Exception:  # the next start redoes it: duplicates, nothing lost
                    log.exception("could not commit on shutdown")
        await gaps.stop()
        await group_offsets.stop()
        batch_thread.shutdown(wait=False)
        if txns is not None:
            await txns.close()

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]
    register_pages(app, table, store, processor, registry, settings, pseudonym, _now_ms)
    return Worker(app=app, processor=processor, metrics=metrics, registry=registry)
