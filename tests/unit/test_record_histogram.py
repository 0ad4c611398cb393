"""RecordHistogram: observed a batch at a time, exposed as prometheus_client's own Histogram
would expose the same values one at a time."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_app.metrics import LATENCY_BUCKETS
from stream_app.record_histogram import RecordHistogram

VALUES = [0.0, 0.001, 0.0011, 0.02, 0.25, 0.2500001, 0.7, 3.0, 59.0, 61.0, 1e4]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_the_exposition_is_that_of_a_histogram_observed_one_value_at_a_time() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hist = RecordHistogram("lat_seconds", "doc", LATENCY_BUCKETS, label="stage", registry=ours)
    ref = Histogram("lat_seconds", "doc", ["stage"], buckets=LATENCY_BUCKETS, registry=theirs)
    hist.observe(np.array(VALUES), "fetch")
    hist.observe(0.3, "process", n=5)
    for v in VALUES:
        ref.labels("fetch").observe(v)
    for _ in range(5):
        ref.labels("process").observe(0.3)
    assert samples(ours) == samples(theirs)
    assert b'lat_seconds_count{stage="fetch"} 11.0' in generate_latest(ours)
    assert hist.count("fetch") == len(VALUES) and hist.count("process") == 5


def test_nothing_observed_is_no_series_and_no_quantile() -> None:
    registry = CollectorRegistry()
    hist = RecordHistogram("x_seconds", "doc", LATENCY_BUCKETS, registry=registry)
    hist.observe(np.array([]))
    hist.observe(1.0, n=0)
    assert samples(registry) == {}
    assert math.isnan(hist.quantile(0.5))


def test_quantiles_are_estimated_within_their_bucket_as_histogram_quantile_does() -> None:
    hist = RecordHistogram("q_seconds", "doc", (0.1, 0.2, 0.4))
    hist.observe(np.full(50, 0.05))  # (0, 0.1]
    hist.observe(np.full(50, 0.3))  # (0.2, 0.4]
    assert math.isclose(hist.quantile(0.5), 0.1)
    assert math.isclose(hist.quantile(0.75), 0.3)  # halfway into (0.2, 0.4]
    assert math.isclose(hist.quantile(0.99), 0.396)
    hist.observe(9.0, n=1000)  # above the last bound: the estimate is that bound
    assert hist.quantile(0.99) == 0.4
