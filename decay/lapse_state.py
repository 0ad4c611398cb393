"""The lapse model's per-user counters: what the incremental step stores next to (h, c).

Pure and shared: training computes the encoder's static inputs from a whole event log with
:func:`static_features` over arrays, the step (stream side) from these counters, one event at
a time, with the same function. ``STATIC`` names the columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HOUR_MS = 3_600_000
STATIC = ("log_repeats", "log_recency", "log_mean_amount")
COUNTERS = ("n_events", "first_ts_ms", "last_ts_ms", "amount_sum")


@dataclass(frozen=True, slots=True)
class Counters:
    n_events: int = 0
    first_ts_ms: int = 0
    last_ts_ms: int = 0
    amount_sum: float = 0.0

    def add(self, ts_ms: int, amount: float) -> Counters:
        """After one more event (events arrive in time order; ``amount`` >= 0)."""
        first = ts_ms if self.n_events == 0 else self.first_ts_ms
        return Counters(self.n_events + 1, first, ts_ms, self.amount_sum + max(amount, 0.0))


def static_features(
    n_events: npt.ArrayLike,
    first_ts_ms: npt.ArrayLike,
    last_ts_ms: npt.ArrayLike,
    amount_sum: npt.ArrayLike,
    unit_h: float,
) -> npt.NDArray[np.float32]:
    """[B, 3] float32: ``log1p(x)`` (repeat events), ``log1p(t_x)`` (first to last event, in
    the model's unit), ``log1p(mean amount per event)``."""
    n = np.asarray(n_events, dtype=np.float64)
    span = (np.asarray(last_ts_ms, np.int64) - np.asarray(first_ts_ms, np.int64)) / (
        unit_h * HOUR_MS
    )
    mean = np.asarray(amount_sum, dtype=np.float64) / np.maximum(n, 1.0)
    cols = [np.log1p(np.maximum(n - 1.0, 0.0)), np.log1p(np.maximum(span, 0.0)), np.log1p(mean)]
    return np.stack(cols, axis=-1).astype(np.float32)
