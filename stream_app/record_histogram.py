"""A Prometheus histogram observed a batch of records at a time.

prometheus_client's ``Histogram.observe`` takes one value under a lock (about a microsecond);
the worker times every record at several stages, thousands per batch. This one takes an
array of values (or one value for ``n`` records) and adds them to numpy bucket counts, and
is exposed as an ordinary histogram (``_bucket``, ``_count``, ``_sum``), one series per label
value. Observed and collected on the worker's event loop (Faust's web server runs on it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class RecordHistogram(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        label: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``label``: the name of its one label (None: one unlabelled series)."""
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self.label = label
        self._counts: dict[str, npt.NDArray[np.int64]] = {}
        self._sums: dict[str, float] = {}
        if registry is not None:
            registry.register(self)

    def observe(self, seconds: npt.ArrayLike, value: str = "", n: int = 1) -> None:
        """Each of ``seconds`` once, or (a scalar) ``n`` times, under label ``value``."""
        values = np.atleast_1d(np.asarray(seconds, dtype=np.float64))
        if not values.size or n <= 0:
            return
        counts = self._counts.get(value)
        if counts is None:
            counts = self._counts[value] = np.zeros(len(self.bounds) + 1, dtype=np.int64)
            self._sums[value] = 0.0
        # Bucket i counts values <= bounds[i] (Prometheus' "le"); the last one is +Inf.
        slots = np.searchsorted(self.bounds, values, side="left")
        if values.size == 1:
            counts[slots[0]] += n
            self._sums[value] += float(values[0]) * n
        else:
            counts += np.bincount(slots, minlength=len(counts))
            self._sums[value] += float(values.sum())

    def count(self, value: str = "") -> int:
        """Records observed under ``value``."""
        counts = self._counts.get(value)
        return int(counts.sum()) if counts is not None else 0

    def quantile(self, q: float, value: str = "") -> float:
        """The ``q`` quantile as Prometheus' histogram_quantile estimates it (linear within
        the bucket); NaN when nothing was observed."""
        return bucket_quantile(q, self.bounds, self._counts.get(value))

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for value, counts in self._counts.items():
            cumulative = np.cumsum(counts)
            buckets = [
                (floatToGoString(b), float(c))
                for b, c in zip(self.bounds, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([value] if self.label else [], buckets, self._sums[value])
        yield family

    def _family(self) -> HistogramMetricFamily:
        labels = [self.label] if self.label else None
        return HistogramMetricFamily(self.name, self.documentation, labels=labels)


def bucket_quantile(
    q: float, bounds: npt.NDArray[np.float64], counts: npt.NDArray[np.int64] | None
) -> float:
    """``q`` of a histogram of per-bucket (not cumulative) ``counts`` over ``bounds``, the
    last count being above the last bound (then the last bound is the estimate)."""
    if counts is None or not counts.sum():
        return float("nan")
    cumulative = np.cumsum(counts)
    rank = q * cumulative[-1]
    i = int(np.searchsorted(cumulative, rank, side="left"))
    if i >= len(bounds):
        return float(bounds[-1])
    lower = float(bounds[i - 1]) if i > 0 else 0.0
    below = float(cumulative[i - 1]) if i > 0 else 0.0
    inside = float(counts[i])
    return lower + (float(bounds[i]) - lower) * ((rank - below) / inside if inside else 1.0)
