"""Training examples as of cut times, with labels that respect censoring.

An example is (user, cut time c): the model sees the user's last N events at or before c and
is asked about the future after c, using only data up to ``end_ms`` (the end of the data, or
of the training period: nothing after it may leak into a label).

- ``duration_h``: hours from the user's last event before the cut to the next event after the
  cut; if there is none before ``end_ms`` the example is CENSORED at ``end_ms`` (a churned user
  is censored, neither a negative nor dropped). ``elapsed_h`` (cut - last event) is the left
  truncation: the user is known to have survived that long.
- ``count``: events in ``(c, min(c + H, end)]``, and ``exposure`` the observed fraction of H.
- ``next_bucket``: category bucket of the next event (-1 when censored).

Two kinds of cuts: right after each event (``event_cuts``: what the stream scores, elapsed 0),
and calendar cuts (``calendar_cuts``: e.g. weekly, what the CDNOW protocol asks at week 39).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from decay.features import HOUR_MS, EventTable, last_event_index

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Examples:
    user: I64  # index into table.users
    last: I64  # index into the table of the last event at or before the cut
    cut_ms: I64
    elapsed_h: F64
    duration_h: F64  # from the last event to the next one, or to end (censored)
    observed: npt.NDArray[np.bool_]
    count: F64
    exposure: F64  # observed share of the horizon after the cut, in [0, 1]
    next_bucket: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, idx: npt.NDArray[np.integer]) -> Examples:
        return Examples(*(getattr(self, f.name)[idx] for f in fields(self)))


def _events_upto(table: EventTable, user: I64, t_ms: I64) -> I64:
    """Number of the user's events with ts <= t."""
    last = last_event_index(table, user, t_ms)
    return np.where(last < 0, 0, last - table.starts[user] + 1)


def label(
    table: EventTable, user: I64, last: I64, cut_ms: I64, end_ms: int, horizon_h: float
) -> Examples:
    """Labels for windows ending at event ``last`` (ts <= cut), seen from ``cut_ms``."""
    keep = last >= 0
    user, last, cut_ms = user[keep], last[keep], np.asarray(cut_ms, np.int64)[keep]
    if np.any(cut_ms > end_ms):
        raise ValueError("a cut lies after the end of the data")
    t_last = table.ts[last]
    nxt = last + 1
    has_next = nxt < table.starts[user + 1]
    nxt_c = np.minimum(nxt, table.ts.shape[0] - 1)
    observed = has_next & (table.ts[nxt_c] <= end_ms)
    stop = np.where(observed, table.ts[nxt_c], end_ms)
    limit = np.minimum(cut_ms + int(horizon_h * HOUR_MS), end_ms)
    seen = last - table.starts[user] + 1
    count = np.maximum(_events_upto(table, user, limit) - seen, 0)
    exposure = (limit - cut_ms) / (horizon_h * HOUR_MS)
    return Examples(
        user=user,
        last=last,
        cut_ms=cut_ms,
        elapsed_h=(cut_ms - t_last) / HOUR_MS,
        duration_h=(stop - t_last) / HOUR_MS,
        observed=observed,
        count=count.astype(np.float64),
        exposure=np.clip(exposure, 0.0, 1.0),
        next_bucket=np.where(observed, table.buckets[nxt_c], -1).astype(np.int16),
    )


def event_cuts(
    table: EventTable, end_ms: int, horizon_h: float, start_ms: int | None = None
) -> Examples:
    """One example right after each event with ``start_ms <= ts <= end_ms``."""
    ts = table.ts
    pick = ts <= end_ms
    if start_ms is not None:
        pick &= ts >= start_ms
    last = np.nonzero(pick)[0].astype(np.int64)
    return label(table, table.user_of[last], last, ts[last], end_ms, horizon_h)


def calendar_cuts(
    table: EventTable, cuts_ms: npt.ArrayLike, end_ms: int, horizon_h: float
) -> Examples:
    """One example per (cut, user with an event at or before the cut)."""
    cuts = np.asarray(cuts_ms, dtype=np.int64)
    n_users = table.users.shape[0]
    user = np.tile(np.arange(n_users, dtype=np.int64), cuts.shape[0])
    cut = np.repeat(cuts, n_users)
    last = last_event_index(table, user, cut)
    return label(table, user, last, cut, end_ms, horizon_h)


def concat(parts: list[Examples]) -> Examples:
    return Examples(
        *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Examples))
    )
