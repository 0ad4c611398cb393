"""The Faust app, built by a factory from the settings. Nothing runs at import time."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from decay.scoring import ExponentialDecayScorer, Scorer
from decay.settings import Settings
from decay.state import decode_state
from stream_app.metrics import Metrics
from stream_app.processor import BatchOutput, Processor, ProcessorConfig, Record
from stream_app.queries import describe_user, partition_for
from stream_app.store import FaustTableStore

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


def default_scorer(settings: Settings) -> Scorer:
    return ExponentialDecayScorer(half_life_s=settings.half_life_hours * 3600.0)


def create_app(
    settings: Settings,
    scorer: Scorer | None = None,
    registry: CollectorRegistry | None = None,
) -> Worker:
    scorer = scorer or default_scorer(settings)
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
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        table_standby_replicas=0,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    codecs: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events_topic, partitions=settings.partitions, **raw, **codecs)
    alerts = app.topic(settings.alerts_topic, partitions=settings.partitions, **raw, **codecs)
    dead = app.topic(settings.dead_letter_topic, partitions=settings.partitions, **raw, **codecs)
    # Keys and values are raw bytes (values: decay.state's encoding): Faust then uses its raw
    # codec, which recovers from the changelog cleanly, unlike list/dict value types.
    table = app.Table(
        "user-state", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    store = FaustTableStore(table, settings.events_topic)
    config = ProcessorConfig(
        max_events=settings.window_events,
        grace_ms=int(settings.grace_s * 1000),
        threshold=settings.threshold,
    )
    processor = Processor(config, scorer, store, _now_ms)
    lock = asyncio.Lock()  # a batch and a live-mode tick never interleave their writes

    async def publish(out: BatchOutput) -> list[Any]:
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
            futures.append(await dead.send(key=rec.key, value=rec.value or b"", headers=headers))
            metrics.dead_letters.labels(dl.reason).inc()
        for alert in out.alerts:
            futures.append(await alerts.send(key=alert.user_id.encode(), value=alert.payload))
            metrics.alerts.labels(alert.kind).inc()
        metrics.alerts_resent.inc(out.resent)
        return futures

    def apply_writes(out: BatchOutput) -> None:
        for (partition, key), value in out.writes.items():
            store.put(partition, key, value)

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

    @app.timer(interval=5.0)
    async def sample_lag() -> None:
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        metrics.recovery_remaining.set(recovery.active_remaining_total())
        for p, last in processor.last_offsets().items():
            highwater = app.consumer.highwater(TP(settings.events_topic, p))
            if highwater is not None:
                metrics.consumer_lag.labels(str(p)).set(max(highwater - last - 1, 0))

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
                    await publish(out)
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

    if settings.live:

        @app.timer(interval=min(settings.idle_s, 5.0))
        async def advance_idle_partitions() -> None:
            async with lock:
                out = processor.tick(_now_ms(), int(settings.idle_s * 1000))
                if out.alerts:
                    # These alerts have no offset to hold back: see them delivered first.
                    await asyncio.gather(*(await publish(out)))
                apply_writes(out)
            observe(out)

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        processor.revoke([tp.partition for tp in revoked if tp.topic == settings.events_topic])

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus reads plain text as v0.0.4.
        return web.bytes(generate_latest(registry), content_type="text/plain")

    @app.page("/users/{user_id}")
    async def user_page(web: Any, request: Any, user_id: str) -> Any:
        partition = partition_for(user_id.encode(), settings.partitions)
        raw = store.get(partition, user_id)
        if raw is None:
            return web.json({"error": "unknown user", "user_id": user_id}, status=404)
        return web.json(describe_user(user_id, decode_state(raw), scorer, _now_ms()))

    return Worker(app=app, processor=processor, metrics=metrics, registry=registry)
