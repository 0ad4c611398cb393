"""Prometheus metrics of a worker, created on a registry passed in (tests read them)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class Metrics:
    events: Counter
    dead_letters: Counter
    alerts: Counter
    alerts_resent: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    scoring_seconds: Histogram
    pending_deadlines: Gauge
    watermark: Gauge
    model_info: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            events=Counter(
                "decay_events", "Events consumed, by result", ["result"], registry=registry
            ),
            dead_letters=Counter(
                "decay_dead_letters",
                "Messages sent to the dead-letter topic",
                ["reason"],
                registry=registry,
            ),
            alerts=Counter("decay_alerts", "Alerts emitted, by kind", ["kind"], registry=registry),
            alerts_resent=Counter(
                "decay_alerts_resent", "Alerts re-sent after a restart", registry=registry
            ),
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
            pending_deadlines=Gauge(
                "decay_pending_deadlines", "Dormancy deadlines waiting", registry=registry
            ),
            watermark=Gauge(
                "decay_watermark_seconds",
                "Event-time watermark per partition",
                ["partition"],
                registry=registry,
            ),
            model_info=Gauge(
                "decay_model_info", "The scorer in use", ["version"], registry=registry
            ),
        )
