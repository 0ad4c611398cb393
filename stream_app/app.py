"""The Faust app, built by a factory from the settings. Nothing runs at import time."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from decay.scoring import Scorer
from decay.settings import Settings
from stream_app.metrics import Metrics
from stream_app.processor import BatchOutput, Processor, ProcessorConfig, Record
from stream_app.rollout import ModelWatcher, load_scorer, pseudonymizer
from stream_app.store import FaustTableStore
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
        cat_min_peak=settings.category_min_peak,
        cat_drop=settings.category_drop,
        publish_scores=settings.scores_topic is not None,
        score_min_change=settings.score_min_change,
    )


def create_app(
    settings: Settings,
    scorer: Scorer | None = None,
    registry: CollectorRegistry | None = None,
) -> Worker:
    scorer = scorer or load_scorer(settings)
    registry = registry or CollectorRegistry()
    metrics = Metrics.create(registry)
    metrics.model_info.labels(scorer.version).set(1)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        producer_acks=-1,
        processing_guarantee=settings.processing_guarantee,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        table_standby_replicas=0,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    codecs: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}

    def topic(name: str) -> Any:
        return app.topic(name, partitions=settings.partitions, **raw, **codecs)

    events, alerts, dead = (
        topic(settings.events_topic),
        topic(settings.alerts_topic),
        topic(settings.dead_letter_topic),
    )
    erase = topic(settings.erase_topic)  # co-partitioned with events: same key, same count
    scores = topic(settings.scores_topic) if settings.scores_topic else None
    # Keys and values are raw bytes (values: decay.state's encoding): Faust then uses its raw
    # codec, which recovers from the changelog cleanly, unlike list/dict value types.
    table = app.Table(
        "user-state", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    store = FaustTableStore(table, settings.events_topic)
    pseudonym = pseudonymizer(settings)
    processor = Processor(processor_config(settings), scorer, store, _now_ms, pseudonym)
    lock = asyncio.Lock()  # batches, erasures, sweeps and rollouts never interleave

    eos = settings.processing_guarantee == "exactly_once"

    async def send(
        channel: Any,
        source_partition: int,
        key: bytes | None,
        value: bytes,
        in_transaction: bool,
        headers: dict[str, bytes] | None = None,
    ) -> Any:
        if not (eos and in_transaction):
            return await channel.send(key=key, value=value, headers=headers)
        # Faust's exactly_once picks a message's transaction from its consumer's metadata of
        # the *output* topic; it reads none of ours (alerts, dead letters, scores), so it would
        # send them outside any transaction. Send them in the transaction of the source
        # partition instead: it commits with that partition's offsets and changelog writes.
        group = app.assignor.group_for_topic(settings.events_topic)
        tid = f"{app.conf.id}-{group}-{source_partition}"
        return await app.producer.send(
            channel.get_topic_name(), key, value, None, None, headers, transactional_id=tid
        )

    async def publish(out: BatchOutput, in_transaction: bool = False) -> list[Any]:
        futures = []
        for dl in out.dead_letters:
            rec = dl.record
            headers = {
                "decay-reason": dl.reason.encode(),
                "decay-detail": dl.detail.encode(),
                "decay-source-topic": settings.events_topic.encode(),
                "decay-source-partition": str(rec.partition).encode(),
                "decay-source-offset": str(rec.offset).encode(),
            }
            futures.append(
                await send(dead, rec.partition, rec.key, rec.value or b"", in_transaction, headers)
            )
            metrics.dead_letters.labels(dl.reason).inc()
        for alert in out.alerts:
            futures.append(
                await send(
                    alerts, alert.partition, alert.user_id.encode(), alert.payload, in_transaction
                )
            )
            metrics.alerts.labels(alert.kind).inc()
        if scores is not None:
            for score in out.scores:
                futures.append(
                    await send(
                        scores,
                        score.partition,
                        score.user_id.encode(),
                        score.payload,
                        in_transaction,
                    )
                )
        metrics.alerts_resent.inc(out.resent)
        return futures

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
        pending = await publish(out)
        if pending:
            await asyncio.gather(*pending)
        apply_writes(out)
        observe(out)

    @app.agent(events)
    async def consume(stream: Any) -> None:  # a faust Stream; its stubs lack noack_take
        # noack_take: events are acknowledged (so their offsets may be committed) only after
        # their batch's state writes and messages are handed to the producer, which Faust
        # flushes before it commits. A failure before that leaves them uncommitted.
        async for batch in stream.noack_take(settings.batch_max, within=settings.batch_within_s):
            started = time.perf_counter()
            records = [
                Record(e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch
            ]
            try:
                async with lock:
                    out = processor.process(records)
                    apply_writes(out)
                    await publish(out, in_transaction=True)
            except Exception as exc:
                # Not acking is what keeps the batch; stop the worker rather than go on
                # past a hole in the committed offsets.
                log.exception("batch of %d records failed; stopping the worker", len(records))
                await app.crash(exc)
                return
            for event in batch:
                await stream.ack(event)
            now = time.time()
            for event in batch:
                metrics.event_to_score.observe(max(now - event.message.timestamp, 0.0))
            observe(out)
            metrics.scoring_seconds.observe(out.score_seconds)
            metrics.batch_size.observe(len(records))
            metrics.batch_seconds.observe(time.perf_counter() - started)

    @app.agent(erase)
    async def erase_users(stream: Any) -> None:
        async for event in stream.noack().events():
            msg = event.message
            user = (msg.key or msg.value or b"").decode(errors="replace")
            if not user:
                log.warning("erase request without a user id at offset %d", msg.offset)
            else:
                try:
                    async with lock:
                        await settle(processor.erase(msg.partition, msg.offset, user))
                except Exception as exc:  # unacked, so the request is not lost
                    log.exception("erase request at offset %d failed; stopping", msg.offset)
                    await app.crash(exc)
                    return
            await stream.ack(event)

    if settings.live:

        @app.timer(interval=min(settings.idle_s, 5.0))
        async def advance_idle_partitions() -> None:
            async with lock:
                await settle(processor.tick(_now_ms(), int(settings.idle_s * 1000)))

    if settings.state_ttl_days > 0:

        @app.timer(interval=settings.ttl_sweep_s)
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
    async def sample_lag() -> None:
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        metrics.recovery_remaining.set(recovery.active_remaining_total())
        for p, last in processor.last_offsets().items():
            highwater = app.consumer.highwater(TP(settings.events_topic, p))
            if highwater is not None:
                metrics.consumer_lag.labels(str(p)).set(max(highwater - last - 1, 0))

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        processor.revoke([tp.partition for tp in revoked if tp.topic == settings.events_topic])

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    register_pages(app, table, store, processor, registry, settings, pseudonym, _now_ms)
    return Worker(app=app, processor=processor, metrics=metrics, registry=registry)
