"""Landmark examples for the lapse model: what each user did in a window after a landmark time.

At a landmark ``L`` every user with an event at or before ``L`` gives one row: the history up
to their last event before ``L`` (the encoder's input, shared by every landmark with the same
last event), the silence ``d = L - t_last``, and the window ``(L, L + w]``, censored at the end
of the training period: ``n`` events in it, the last one ``tau`` after ``L``. Times are in the
model's unit (``unit_h`` hours; weeks for CDNOW). Nothing after ``end_ms`` enters a row.

Per history, the counters the encoder reads next to the event sequence
(``decay.lapse_state.STATIC``, the same function the incremental step uses): ``log1p(x)``
(repeat events), ``log1p(t_x)`` (first to last event), ``log1p(mean amount)`` (price x
quantity per event, missing = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from decay.features import HOUR_MS, EventTable, last_event_index
from decay.lapse_state import STATIC, static_features

F32 = npt.NDArray[np.float32]
__all__ = [
    "STATIC",
    "Histories",
    "Rows",
    "event_amounts",
    "landmark_rows",
    "landmark_times",
    "table_order",
]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Histories:
    """Distinct (user, last event) histories: ``last`` indexes the event table."""

    user: I64
    last: I64
    static: F32  # [H, len(STATIC)]
    repeats: F64  # x
    recency: F64  # t_x, model units


@dataclass(frozen=True)
class Rows:
    """Landmark rows; ``hist`` indexes :class:`Histories`."""

    hist: I64
    silence: F64  # d = L - t_last
    n: F64
    tau: F64
    window: F64  # w

    def __len__(self) -> int:
        return int(self.hist.shape[0])

    def take(self, idx: npt.NDArray[np.integer]) -> Rows:
        return Rows(self.hist[idx], self.silence[idx], self.n[idx], self.tau[idx], self.window[idx])


def table_order(events: pd.DataFrame) -> I64:
    """The row order of :func:`decay.features.prepare_events`'s table: users sorted by id,
    then time (stable)."""
    codes = pd.factorize(events["user_id"].astype(str), sort=True)[0]
    return np.lexsort((events["ts"].to_numpy(np.int64), codes)).astype(np.int64)


def event_amounts(events: pd.DataFrame) -> F64:
    """Amount per event (price x quantity, missing = 0) in the event table's order."""
    order = table_order(events)
    price = events["price"].to_numpy(np.float64, na_value=0.0) if "price" in events else None
    if price is None:
        return np.zeros(len(events))
    qty = (
        events["quantity"].to_numpy(np.float64, na_value=1.0)
        if "quantity" in events
        else np.ones(len(events))
    )
    amount = np.nan_to_num(price * qty, nan=0.0)
    return np.maximum(amount[order], 0.0)


def landmark_rows(
    table: EventTable,
    amounts: F64,
    landmarks_ms: npt.ArrayLike,
    end_ms: int,
    unit_h: float,
    max_window_h: float | None = None,
    gap_stats: bool = False,
) -> tuple[Histories, Rows]:
    """Rows for every (landmark, user with an event at or before it); window to ``end_ms``
    (or ``max_window_h`` after the landmark, if shorter). A landmark at ``end_ms`` gives rows
    with an empty window: the question asked at the cut."""
    lms = np.asarray(landmarks_ms, dtype=np.int64)
    if np.any(lms > end_ms):
        raise ValueError("a landmark lies after the end of the data")
    n_users = table.users.shape[0]
    user = np.tile(np.arange(n_users, dtype=np.int64), lms.shape[0])
    at = np.repeat(lms, n_users)
    last = last_event_index(table, user, at)
    keep = last >= 0
    user, at, last = user[keep], at[keep], last[keep]
    unit_ms = unit_h * HOUR_MS
    stop = np.full(at.shape[0], end_ms, dtype=np.int64)
    if max_window_h is not None:
        stop = np.minimum(stop, at + int(max_window_h * HOUR_MS))
    last_in = last_event_index(table, user, stop)
    n = (last_in - last).astype(np.float64)
    tau = np.where(n > 0, (table.ts[last_in] - at) / unit_ms, 0.0)
    rows_silence = (at - table.ts[last]) / unit_ms
    window = (stop - at) / unit_ms
    hist_last, hist_of = np.unique(last, return_inverse=True)
    hist_user = table.user_of[hist_last] if hist_last.shape[0] else hist_last
    first = table.starts[hist_user]
    repeats = (hist_last - first).astype(np.float64)
    recency = (table.ts[hist_last] - table.ts[first]) / unit_ms
    cum = np.cumsum(amounts)
    before_first = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    amount_sum = cum[hist_last] - before_first if len(cum) else repeats
    static = static_features(
        repeats + 1.0, table.ts[first], table.ts[hist_last], amount_sum, unit_h
    )
    if gap_stats:
        static = np.concatenate(
            [static, _gap_stats(table, first, hist_last, repeats, unit_ms)], axis=1
        )
    hists = Histories(hist_user.astype(np.int64), hist_last, static, repeats, recency)
    rows = Rows(hist_of.astype(np.int64), rows_silence, n, tau, window)
    return hists, rows


def _gap_stats(table: EventTable, first: I64, last: I64, repeats: F64, unit_ms: float) -> F32:
    """[H, 2]: mean and standard deviation of ``log1p(gap)`` over the history's gaps (model
    units; 0 with fewer than one / two gaps). The gaps are those after ``first``, so a user's
    first event's difference to the event before it in the table never enters."""
    ts = table.ts.astype(np.float64)
    g = np.zeros(ts.shape[0])
    if ts.shape[0] > 1:
        g[1:] = np.log1p(np.maximum(np.diff(ts), 0.0) / unit_ms)
    c1, c2 = np.cumsum(g), np.cumsum(g * g)
    s1, s2 = c1[last] - c1[first], c2[last] - c2[first]
    x = np.maximum(repeats, 1.0)
    mean = np.where(repeats > 0, s1 / x, 0.0)
    var = np.where(repeats > 1, np.maximum(s2 / x - mean * mean, 0.0), 0.0)
    return np.stack([mean, np.sqrt(var)], axis=-1).astype(np.float32)


def landmark_times(start_ms: int, end_ms: int, every_h: float, min_window_h: float) -> I64:
    """Landmarks every ``every_h`` hours, counted back from ``end_ms - min_window_h`` to just
    after ``start_ms``, so every window is at least ``min_window_h`` long."""
    step = int(every_h * HOUR_MS)
    last = end_ms - int(min_window_h * HOUR_MS)
    out = np.arange(last, start_ms, -step, dtype=np.int64)[::-1]
    return out
