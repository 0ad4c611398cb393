"""The Faust app, built by a factory from the settings around the worker (stream_app.worker):
this module is wiring only. Nothing runs at import time."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from decay.engagement import DAY_MS, EngagementRules
from decay.scoring import AnyScorer
from decay.settings import Settings
from decay.trends import TrendRules
from decay_kafka.kafka_client import ssl_context
from decay_kafka.topics import STATE_TABLE
from decay_kafka.topics import message_limits as topic_limits
from stream_app import dead_letters, schedules, tail_check
from stream_app.category_vectors import CategoryVectors
from stream_app.delivery import Delivery
from stream_app.metrics import Metrics
from stream_app.ports import Ports
from stream_app.processor import Processor, ProcessorConfig
from stream_app.rollout import ModelWatcher, load_scorer, pseudonymizer
from stream_app.runtime import offsets, rocks
from stream_app.runtime.changelog_send import TableChangelog
from stream_app.runtime.faust_ports import FaustGroup, FaustProducer, each_record
from stream_app.runtime.intake import Intake
from stream_app.runtime.table_store import FaustTableStore
from stream_app.tail import TailWatch
from stream_app.web import register_pages, register_trend_pages
from stream_app.worker import Worker

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Built:
    """What create_app returns: the app to run, and for benchmarks its processor and
    metrics."""

    app: faust.App
    processor: Processor
    metrics: Metrics
    registry: CollectorRegistry


def processor_config(settings: Settings) -> ProcessorConfig:
    return ProcessorConfig(
        max_events=settings.window_events,
        grace_ms=int(settings.grace_s * 1000),
        threshold=settings.dormancy_threshold,
        engagement=EngagementRules(
            half_life_ms=int(settings.category_half_life_days * DAY_MS),
            min_peak=settings.category_min_peak,
            min_silence_ms=int(settings.category_min_silence_days * DAY_MS),
        ),
        publish_scores=settings.scores_topic is not None,
        score_min_change=settings.score_min_change,
        partitions=settings.partitions,
        erase_hold_ms=int(settings.erase_hold_days * 86_400_000),
        trends=TrendRules(
            half_life_ms=int(settings.trend_half_life_days * DAY_MS),
            max_categories=settings.trend_max_categories,
        ),
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
        consumer_group_instance_id=settings.group_instance_id,
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
) -> Built:
    """The worker, wired into a Faust app. ``message_limits``: the largest record each topic
    accepts (read from the broker when not given, see decay_kafka.topics.message_limits)."""
    scorer = scorer or load_scorer(settings)
    registry = registry or CollectorRegistry()
    metrics = Metrics.create(registry)
    metrics.model_info.labels(scorer.version).set(1)
    if message_limits is None:
        message_limits = asyncio.run(topic_limits(settings))
    request_max = max(message_limits.values(), default=dead_letters.DEFAULT_MAX_MESSAGE_BYTES)
    app = faust_app(settings, request_max)
    topics = declare_topics(app, settings)
    table = state_table(app, settings)
    changelog = TableChangelog(app, table, message_limits)
    store = FaustTableStore(table, settings.events_topic, changelog)
    pseudonym = pseudonymizer(settings)
    config = processor_config(settings)
    vectors = CategoryVectors.load(config.engagement, metrics)  # off without the embed extra
    processor = Processor(config, scorer, store, _now_ms, pseudonym, vectors)
    tail = TailWatch(settings.batch_max)
    ports = Ports(
        group=FaustGroup(app),
        # A partition whose records wait in the intake's queue is not stalled.
        batches=Intake(
            app,
            settings.events_topic,
            lambda p: tail.delivered((p,)),
            4 * settings.batch_max,
            metrics.changelog_bulk.inc,
        ),
        committed=offsets.GroupOffsets(settings),
        reader=offsets.GapReader(settings),
        producer=FaustProducer(app, topics, message_limits),
    )
    delivery = Delivery(
        settings, ports.group, ports.producer, processor, store, metrics, message_limits
    )
    worker = Worker(settings, ports, processor, delivery, metrics, _now_ms, tail)
    register(app, settings, worker, topics)
    register_pages(app, table, store, processor, registry, settings, pseudonym, _now_ms)
    register_trend_pages(app, processor, metrics.category_interest, settings)
    return Built(app=app, processor=processor, metrics=metrics, registry=registry)


def declare_topics(app: faust.App, settings: Settings) -> dict[str, Any]:
    """The topics the worker writes to or reads with Faust's agents, raw bytes both ways."""
    names = (
        settings.alerts_topic,
        settings.dead_letter_topic,
        settings.scores_topic,
        settings.repartition,
        # Co-partitioned with events (same count, the user id as key): Faust assigns
        # partition p of the events, erase and repartition topics to one worker.
        settings.erase_topic,
    )
    return {
        name: app.topic(
            name,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        for name in names
        if name
    }


def state_table(app: faust.App, settings: Settings) -> Any:
    """The users' state. Keys and values are raw bytes (values: decay.state's encoding):
    Faust then uses its raw codec, which recovers from the changelog cleanly, unlike
    list/dict value types."""
    return app.Table(
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


def register(app: faust.App, settings: Settings, worker: Worker, topics: dict[str, Any]) -> None:
    """The worker's handlers as Faust's task, agents, timers and signal receivers (named as
    they always were: Faust knows agents and timers by name)."""

    @app.task
    async def consume() -> None:
        await worker.consume()

    @app.agent(topics[settings.erase_topic])
    async def erase_users(stream: Any) -> None:
        await each_record(stream, worker.erase)

    @app.agent(topics[settings.repartition])
    async def apply_forwarded(stream: Any) -> None:
        await each_record(stream, worker.apply_forwarded)

    register_timers(app, settings, worker)

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await worker.on_revoked({tp.partition for tp in revoked if tp.topic == events})

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await worker.on_shutdown()

    events = settings.events_topic
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]


def register_timers(app: faust.App, settings: Settings, worker: Worker) -> None:
    """The worker's periodic handlers as Faust timers."""

    if settings.live:

        @app.timer(interval=min(settings.idle_s, 5.0))
        async def advance_idle_partitions() -> None:
            await worker.fatal(worker.advance_idle_partitions)()

    if settings.state_ttl_days > 0:

        @app.timer(interval=settings.ttl_sweep_s)
        async def expire_idle_users() -> None:
            await worker.fatal(worker.expire_idle_users)()

    if settings.model_dir is not None:
        watcher = ModelWatcher(
            settings.model_dir, settings, lambda path, exc: worker.metrics.models_refused.inc()
        )

        @app.timer(interval=settings.model_poll_s)
        async def roll_out_models() -> None:
            new = await asyncio.to_thread(watcher.poll)
            if new is not None:
                await worker.roll_out(new)

    @app.timer(interval=0.5)  # a restart's schedules, once read (stream_app.schedules)
    async def fire_read_schedules() -> None:
        await schedules.fire_read(worker)

    @app.timer(interval=5.0)
    async def read_stalled_partitions() -> None:
        await tail_check.read_stalled_partitions(worker)

    if not settings.exactly_once:  # else every batch commits its offsets in its transactions

        @app.timer(interval=settings.commit_interval_s)
        async def commit_processed() -> None:
            await worker.commit_processed()

    @app.timer(interval=5.0)
    async def sample_lag() -> None:
        await worker.sample_lag()
