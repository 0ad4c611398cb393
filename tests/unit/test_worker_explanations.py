"""The whole worker over in-memory ports (stream_app.testing): its alerts say which events
moved their score, and a batch's explanations cost one scorer call, whatever the batch size."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from prometheus_client import CollectorRegistry

from stream_app.app import processor_config
from stream_app.delivery import Delivery
from stream_app.metrics import Metrics
from stream_app.processor import Processor
from stream_app.store import MemoryStore
from stream_app.tail import TailWatch
from stream_app.testing import MemoryLog, memory_ports
from stream_app.worker import Worker
from tests.unit.test_explanations import CountingScorer
from tests.unit.test_worker import NOW, PARTITIONS, SETTINGS, alerts, assign, drain, produce


def build(log: MemoryLog, scorer: CountingScorer) -> Worker:
    ports = memory_ports(log, SETTINGS.events_topic)
    processor = Processor(processor_config(SETTINGS), scorer, MemoryStore(), lambda: NOW)
    metrics = Metrics.create(CollectorRegistry())
    delivery = Delivery(SETTINGS, ports.group, ports.producer, processor, processor.store,
                        metrics, {})  # fmt: skip
    return Worker(SETTINGS, ports, processor, delivery, metrics, lambda: NOW, TailWatch(100))


def run(max_records: int) -> tuple[list[dict[str, object]], CountingScorer, int]:
    """The worker over 10 users' events (3 each, 10 h apart, view events without a
    category: each goes dormant 48 h after its last one); returns the alerts, the scorer's
    calls, and how many batches sent alerts."""
    log, scorer = MemoryLog(PARTITIONS), CountingScorer()
    produce(log, users=10, rounds=3)
    worker = build(log, scorer)
    assign(worker, list(range(PARTITIONS)))
    alerting = 0
    for fetched in drain(worker, max_records):
        before = len(alerts(log))
        assert asyncio.run(worker.handle(fetched))
        alerting += len(alerts(log)) > before
    asyncio.run(worker.commit_processed())
    return alerts(log), scorer, alerting


def test_every_alert_is_explained_with_one_scorer_call_per_batch() -> None:
    got, scorer, alerting = run(max_records=100_000)  # the whole log in one batch
    dormant = [a for a in got if a["kind"] == "dormant"]
    assert len(dormant) == 10 and alerting == 1
    # at the deadline interest is 0.25; without the user's last event the silence would be
    # 58 h, not 48 h: 2^(-58/24) = 0.19
    assert all(
        a["explanation"] == ["the view event on Jan 1 raised interest most (+0.06)"]
        for a in dormant
    )
    curves = [n for call, n in scorer.calls if call == "curves"]
    assert curves == [10 * (1 + 3)]  # one call: each alert's window whole and 3 times less
    assert [call for call, _ in scorer.calls] == ["score", "curves"]


def test_small_batches_explain_the_same_with_one_call_per_batch_that_alerts() -> None:
    one, _, _ = run(max_records=100_000)
    got, scorer, alerting = run(max_records=7)
    assert got == one
    calls = [call for call, _ in scorer.calls]
    assert calls.count("curves") == alerting > 1
    assert ("curves", "curves") not in set(pairwise(calls))  # never two for one batch
