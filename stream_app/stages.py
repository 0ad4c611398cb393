"""Where a record's time goes between its producer and its score: the stage histograms of
stream_app.metrics (``decay_record_stage_seconds``) and ``decay_event_to_score_seconds``,
observed once per batch with arrays (every record counted, no per-record call)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from stream_app.metrics import STAGES, Metrics
from stream_app.ports import Fetched


def observe_batch(
    metrics: Metrics, fetched: Sequence[Fetched], started: float, handed: float
) -> None:
    """The fetch, queue and process stages of a batch's records and their event-to-score
    time. ``started``/``handed``: time.time() when the batch started and when its messages
    were handed to the producer."""
    if not fetched:
        return
    # Kafka timestamps (ms) -> s; a record without one (0) has no fetch or event-to-score time.
    stamps = np.array([r.timestamp for f in fetched for r in f.records], dtype=np.float64)
    arrived = np.repeat([f.fetched_at for f in fetched], [len(f.records) for f in fetched])
    stamped = stamps > 0
    if not stamped.all():
        stamps, arrived = stamps[stamped], arrived[stamped]
    stamps /= 1000.0
    n = sum(len(f.records) for f in fetched)
    stages = metrics.stages
    stages.observe(np.maximum(arrived - stamps, 0.0), "fetch")
    for f in fetched:  # one value per fetch: its records were queued together
        stages.observe(max(started - f.fetched_at, 0.0), "queue", len(f.records))
    stages.observe(max(handed - started, 0.0), "process", n)
    metrics.event_to_score.observe(np.maximum(handed - stamps, 0.0))


def observe_sent(metrics: Metrics, sent: Sequence[Any], handed: float, n: int) -> None:
    """The send stage of a batch's ``n`` records: from ``handed`` to the broker's
    acknowledgement of the last of its messages (``sent``: their delivery futures)."""
    futures = [f for f in sent if isinstance(f, asyncio.Future)]
    if not futures or n <= 0:
        return
    left = [len(futures)]

    def done(_: asyncio.Future[Any]) -> None:
        left[0] -= 1
        if not left[0]:
            metrics.stages.observe(max(time.time() - handed, 0.0), "send", n)

    for fut in futures:
        fut.add_done_callback(done)


def summary(metrics: Metrics) -> dict[str, dict[str, float]]:
    """Per stage (and ``event_to_score``): records counted, p50 and p99 in ms, estimated
    from the histograms' buckets as Prometheus' histogram_quantile does."""
    out = {}
    for name, hist, value in [
        *((stage, metrics.stages, stage) for stage in STAGES),
        ("event_to_score", metrics.event_to_score, ""),
    ]:
        out[name] = {
            "count": hist.count(value),
            "p50_ms": hist.quantile(0.5, value) * 1000.0,
            "p99_ms": hist.quantile(0.99, value) * 1000.0,
        }
    return out
