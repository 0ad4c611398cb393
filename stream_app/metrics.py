"""Prometheus metrics of a worker, created on a registry passed in (tests read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_app.record_histogram import RecordHistogram

# Seconds; fine around the 250 ms latency goal (docs/performance.md, "Event-to-score latency").
LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    *(0.75, 1, 1.5, 2, 2.5, 5, 10, 30, 60),
)
# The stages of a record's path through a worker (decay_record_stage_seconds{stage=...}):
#   fetch    its Kafka timestamp -> its fetch reached the intake (the producer's linger, the
#            broker, aiokafka's fetch and buffer, Faust's consumer thread)
#   queue    the fetch reached the intake -> its batch started (the intake's queue, the wait
#            for the batch to fill, the batch before it)
#   process  its batch started -> the batch's messages were handed to the producer
#   send     handed to the producer -> the broker acknowledged the batch's last message
STAGES = ("fetch", "queue", "process", "send")


@dataclass(frozen=True)
class Metrics:
    events: Counter
    dead_letters: Counter
    dead_letters_failed: Counter
    alerts: Counter
    alerts_resent: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    scoring_seconds: Histogram
    pending_deadlines: Gauge
    schedules_loading: Gauge
    watermark: Gauge
    watermark_lag: Gauge
    consumer_lag: Gauge
    event_to_score: RecordHistogram
    stages: RecordHistogram
    interest: RecordHistogram  # observed a batch at a time: one value per event
    users_tracked: Gauge
    recovery_remaining: Gauge
    model_info: Gauge
    models_refused: Counter
    stale_records: Counter
    refetched: Counter
    changelog_bulk: Counter
    category_interest: Gauge
    category_names: Counter
    embed_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(**_counters(registry), **_gauges(registry), **_histograms(registry))


def _counters(registry: CollectorRegistry) -> dict[str, Any]:
    """The worker's counters."""
    return dict(
        events=Counter("decay_events", "Events consumed, by result", ["result"], registry=registry),
        dead_letters=Counter(
            "decay_dead_letters",
            "Messages sent to the dead-letter topic",
            ["reason"],
            registry=registry,
        ),
        dead_letters_failed=Counter(
            "decay_dead_letters_failed",
            "Dead letters that could not be sent (logged with their source offset)",
            registry=registry,
        ),
        alerts=Counter("decay_alerts", "Alerts emitted, by kind", ["kind"], registry=registry),
        stale_records=Counter(
            "decay_stale_records",
            "Records delivered after their partition was revoked or reassigned; skipped "
            "(the partition's owner reads them again from the committed offset)",
            registry=registry,
        ),
        refetched=Counter(
            "decay_refetched_records",
            "Records Faust's consumer skipped, read again by the worker's gap reader",
            registry=registry,
        ),
        changelog_bulk=Counter(
            "decay_changelog_bulk_records",
            "State changelog records written to RocksDB a fetch at a time during recovery "
            "(the rest go through Faust's recovery)",
            registry=registry,
        ),
        alerts_resent=Counter(
            "decay_alerts_resent", "Alerts re-sent after a restart", registry=registry
        ),
        models_refused=Counter(
            "decay_models_refused", "Models refused at rollout", registry=registry
        ),
        # stream_app.category_vectors: each name embedded once, else read back from the state.
        category_names=Counter(
            "decay_category_names",
            "Category names new to this worker: embedded, read back from the state table, "
            "over the limit of names kept (not embedded), or failed (the encoder's error)",
            ["result"],
            registry=registry,
        ),
    )


def _gauges(registry: CollectorRegistry) -> dict[str, Any]:
    """The worker's gauges."""
    return dict(
        pending_deadlines=Gauge(
            "decay_pending_deadlines", "Dormancy deadlines waiting", registry=registry
        ),
        schedules_loading=Gauge(
            "decay_schedules_loading",
            "Partitions whose deadline schedule is still being read after a restart (their due "
            "deadlines fire once it is in)",
            registry=registry,
        ),
        watermark=Gauge(
            "decay_watermark_seconds",
            "Event-time watermark per partition",
            ["partition"],
            registry=registry,
        ),
        watermark_lag=Gauge(
            "decay_watermark_lag_seconds",
            "Wall clock minus the event-time watermark, per partition",
            ["partition"],
            registry=registry,
        ),
        consumer_lag=Gauge(
            "decay_consumer_lag",
            "Records in the events topic not yet processed, per partition",
            ["partition"],
            registry=registry,
        ),
        users_tracked=Gauge(
            "decay_users_tracked", "Users with state in this worker", registry=registry
        ),
        recovery_remaining=Gauge(
            "decay_recovery_remaining_records",
            "Changelog records still to restore into the tables",
            registry=registry,
        ),
        model_info=Gauge("decay_model_info", "The scorer in use", ["version"], registry=registry),
        # Category trends: set when scraped, for the top-N categories only (bounded labels).
        category_interest=Gauge(
            "decay_category_interest",
            "Decayed events per category summed over this worker's users, top-N categories",
            ["category"],
            registry=registry,
        ),
    )


def _histograms(registry: CollectorRegistry) -> dict[str, Any]:
    """The worker's histograms (prometheus_client's, and per-record ones)."""
    return dict(
        batch_size=Histogram(
            "decay_batch_size",
            "Records per micro-batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=registry,
        ),
        batch_seconds=Histogram(
            "decay_batch_seconds", "Time to process one micro-batch", registry=registry
        ),
        scoring_seconds=Histogram(
            "decay_scoring_seconds", "Scorer time per micro-batch", registry=registry
        ),
        event_to_score=RecordHistogram(
            "decay_event_to_score_seconds",
            "From the event's Kafka timestamp to its score handed to the producer",
            LATENCY_BUCKETS,
            registry=registry,
        ),
        stages=RecordHistogram(
            "decay_record_stage_seconds",
            "Time each record spent in each stage: fetch, queue, process, send "
            "(stream_app/metrics.py)",
            LATENCY_BUCKETS,
            label="stage",
            registry=registry,
        ),
        embed_seconds=Histogram(
            "decay_category_embed_seconds",
            "Sentence-encoder time per call embedding a batch's new category names",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        ),
        interest=RecordHistogram(
            "decay_interest_score",
            "Interest right after each event",
            (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
            registry=registry,
        ),
    )
