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


# --- the stored per-user state of the step model, a batch at a time ----------------------
#
# One user's state is an opaque record in UserState.model_state, little-endian, packed:
#   tag uint32 (crc32 of the model file: a state of another model is not carried over),
#   n_events uint32, first_ts_ms int64, last_ts_ms int64, amount_sum float64 (the counters),
#   params float32[4] (k0, b0, p, kappa after the last step), h float32[U], c float32[U]
# 48 + 8 U bytes (176 for U = 16). float32 is what the ONNX step reads and writes, so storing
# h and c loses nothing; the counters keep the precision training computes them in.


def state_dtype(units: int) -> np.dtype[np.void]:
    return np.dtype(
        [
            ("tag", "<u4"),
            ("n_events", "<u4"),
            ("first_ts_ms", "<i8"),
            ("last_ts_ms", "<i8"),
            ("amount_sum", "<f8"),
            ("params", "<f4", (4,)),
            ("h", "<f4", (units,)),
            ("c", "<f4", (units,)),
        ]
    )


# the counters of a state alone, packed (the step counts a batch's events on these)
COUNTER_DTYPE = np.dtype(
    [("n_events", "<u4"), ("first_ts_ms", "<i8"), ("last_ts_ms", "<i8"), ("amount_sum", "<f8")]
)


def unpack_states(blobs: list[bytes], tag: int, units: int) -> npt.NDArray[np.void]:
    """Stored states -> one record array [B]; an empty or foreign record (another model's,
    another layout's) becomes a new user's state: zero counters, ``h = c = 0``."""
    dtype = state_dtype(units)
    size = dtype.itemsize
    if all(map(size.__eq__, map(len, blobs))):  # the usual case: all ours, in one copy
        out = np.frombuffer(b"".join(blobs), dtype=dtype).copy()
        if (out["tag"] == tag).all():
            return out
    ours = [len(b) == size and int.from_bytes(b[:4], "little") == tag for b in blobs]
    out = np.zeros(len(blobs), dtype=dtype)
    out["tag"] = tag
    for i, (blob, ok) in enumerate(zip(blobs, ours, strict=True)):
        if ok:
            out[i] = np.frombuffer(blob, dtype=dtype)[0]
    return out


def pack_states(states: npt.NDArray[np.void]) -> list[bytes]:
    raw = states.tobytes()
    size = states.dtype.itemsize
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def advance(
    states: npt.NDArray[np.void], ts_ms: npt.NDArray[np.int64], amount: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Count one event per state (in place); returns which events are in order (not older
    than the state's last event), i.e. the ones the recurrent state steps through.

    An older event cannot be stepped back in time: it is counted (n_events, amount_sum, and
    first_ts_ms if it is the earliest), as training, which sorts the history, counts it too,
    but ``h``, ``c`` and the last event's time stay as they were."""
    n = states["n_events"]
    in_order = (n == 0) | (ts_ms >= states["last_ts_ms"])
    states["first_ts_ms"] = np.where(n == 0, ts_ms, np.minimum(states["first_ts_ms"], ts_ms))
    states["last_ts_ms"] = np.where(in_order, ts_ms, states["last_ts_ms"])
    states["amount_sum"] += np.maximum(amount, 0.0)
    states["n_events"] = n + 1
    return in_order
