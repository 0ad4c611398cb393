"""The one feature encoder: windows (stream) or an event log at cut times (training) -> arrays.

Both paths compute the per-event features with the same function, on the same dtypes, so
they give bit-identical arrays (``tests/unit/test_features.py`` checks it against windows
built by ``UserState.add`` one event at a time).

Model input for a batch of B windows: ``x`` float32 [B, N, F] with each window's last
``min(len, N)`` events, oldest first, RIGHT-padded with zeros, and ``lengths`` int32 [B]
(0 for an empty window). Per event (F = 16 + K):

- ``log_gap_h``: log1p(hours since the previous event of the window; 0 for its first event)
- ``log_price``: log1p(price), 0 when missing
- ``hod_sin/cos``, ``dow_sin/cos``: hour of day and day of week (UTC) on the circle
- ``log_count``: log1p(number of the user's events up to and including this one)
- ``log_tenure_d``: log1p(days since the user's first event)
- ``type_<kind>``: one-hot of :class:`decay.events.EventType` (8)
- spec ``fs1``: ``cat_<k>``, one-hot of the category bucket, ``crc32(name) % K`` (stable
  across processes; a missing category counts as ``"unknown"``, the name the training
  cleaner gives it)
- spec ``fs2``: ``cat_dim_<i>`` (k of them), the category's row in the model's category
  space (``decay.category_space``: PCA of the name's sentence embedding, fitted at training,
  unit rows); a missing category is its own fixed vector, the origin. The rows come from an
  injected :class:`CategoryRows`, so a name never seen in training gets one too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from decay.category_codes import UNKNOWN_CATEGORY as UNKNOWN_CATEGORY
from decay.category_codes import CategoryRows as CategoryRows
from decay.category_codes import category_bucket as category_bucket
from decay.category_codes import category_table as category_table
from decay.category_codes import code_tables, log_categories
from decay.durations import DAY_MS, HOUR_MS
from decay.events import EVENT_TYPES, EventType
from decay.window import Window

FEATURE_VERSION: Final = "fs1"  # hashed category buckets
SPACE_VERSION: Final = "fs2"  # category-space vectors
VERSIONS: Final = (FEATURE_VERSION, SPACE_VERSION)
# hazard bins (hours): fine at first (sessions), then days and weeks; the last bin is open
DEFAULT_BIN_EDGES_H: Final = (
    0.0, 0.5, 1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 168.0, 336.0, 720.0, 1440.0,
)  # fmt: skip
BASE_FEATURES: Final = (
    "log_gap_h",
    "log_price",
    "hod_sin",
    "hod_cos",
    "dow_sin",
    "dow_cos",
    "log_count",
    "log_tenure_d",
)
TYPE_FEATURES: Final = tuple(f"type_{t.name.lower()}" for t in EventType)
N_TYPES: Final = len(EventType)

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What the model reads and predicts. ``version`` names the encoding: bump it whenever
    this module changes what a feature means; a worker refuses a model of another version."""

    version: str = FEATURE_VERSION
    seq_len: int = 64
    cat_buckets: int = 16
    bin_edges_h: tuple[float, ...] = DEFAULT_BIN_EDGES_H
    horizon_h: float = 168.0
    category_dims: int = 0  # fs2: dimensions of the category space (fs1: 0)
    feature_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"unknown feature spec {self.version!r} (known: {VERSIONS})")
        if self.seq_len < 1:
            raise ValueError("seq_len must be positive")
        if self.uses_space != (self.category_dims > 0):
            raise ValueError(
                f"{self.version} takes category_dims {'> 0' if self.uses_space else '0'}"
            )
        if not self.uses_space and self.cat_buckets < 1:
            raise ValueError("cat_buckets must be positive")
        edges = self.bin_edges_h
        if not edges or edges[0] != 0.0 or any(b <= a for a, b in pairwise(edges)):
            raise ValueError("bin edges must start at 0 and increase")
        names = BASE_FEATURES + TYPE_FEATURES
        if self.uses_space:
            names += tuple(f"cat_dim_{i}" for i in range(self.category_dims))
        else:
            names += tuple(f"cat_{k}" for k in range(self.cat_buckets))
        object.__setattr__(self, "feature_names", names)

    @property
    def uses_space(self) -> bool:
        return self.version == SPACE_VERSION

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_bins(self) -> int:
        return len(self.bin_edges_h)

    def encoding(self) -> tuple[str, int, int, int, tuple[str, ...]]:
        """The part of the spec that fixes the model's input; it must match to serve a model."""
        return (
            self.version,
            self.seq_len,
            self.cat_buckets,
            self.category_dims,
            self.feature_names,
        )


def space_spec(dims: int, **fields: object) -> FeatureSpec:
    """The ``fs2`` spec: categories as ``dims``-d category-space rows, no buckets."""
    return FeatureSpec(version=SPACE_VERSION, cat_buckets=0, category_dims=dims, **fields)  # type: ignore[arg-type]


def _categories_of(spec: FeatureSpec) -> tuple[int, int]:
    return (spec.cat_buckets, spec.category_dims)


def type_code(kind: str) -> int:
    """Event type name -> code; unknown kinds count as ``other``."""
    return int(EVENT_TYPES.get(kind.lower(), EventType.OTHER))


def event_features(
    ts: I64,
    prev_ts: I64,
    types: npt.NDArray[np.integer],
    buckets: npt.NDArray[np.integer],
    prices: npt.NDArray[np.floating],
    count: I64,
    first_ts: I64,
    spec: FeatureSpec,
    cat_table: F32 | None = None,
) -> F32:
    """Per-event feature rows [n, F] from flat arrays (the only place features are computed).
    ``buckets`` are category buckets (fs1), or rows of ``cat_table`` (fs2,
    :func:`category_table`)."""
    n = ts.shape[0]
    out = np.zeros((n, spec.n_features), dtype=np.float32)
    gap_h = (ts - prev_ts).astype(np.float64) / HOUR_MS
    out[:, 0] = np.log1p(np.maximum(gap_h, 0.0))
    price = np.nan_to_num(prices.astype(np.float64), nan=0.0)
    out[:, 1] = np.log1p(np.maximum(price, 0.0))
    day_frac = (ts % DAY_MS).astype(np.float64) / DAY_MS
    hod = 2.0 * np.pi * day_frac
    dow = 2.0 * np.pi * (((ts // DAY_MS + 3) % 7).astype(np.float64) + day_frac) / 7.0
    out[:, 2], out[:, 3] = np.sin(hod), np.cos(hod)
    out[:, 4], out[:, 5] = np.sin(dow), np.cos(dow)
    out[:, 6] = np.log1p(count.astype(np.float64))
    tenure_d = (ts - first_ts).astype(np.float64) / DAY_MS
    out[:, 7] = np.log1p(np.maximum(tenure_d, 0.0))
    rows = np.arange(n)
    base = len(BASE_FEATURES)
    out[rows, base + np.clip(types.astype(np.int64), 0, N_TYPES - 1)] = 1.0
    if cat_table is None:
        out[rows, base + N_TYPES + buckets.astype(np.int64)] = 1.0
    else:
        out[:, base + N_TYPES :] = cat_table[buckets.astype(np.int64)]
    return out


def _scatter(rows: F32, lengths: I32, seq_len: int) -> F32:
    """Flat rows (windows one after another) -> right-padded [B, N, F]."""
    b = lengths.shape[0]
    x = np.zeros((b, seq_len, rows.shape[1]), dtype=np.float32)
    win = np.repeat(np.arange(b), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    step = np.arange(rows.shape[0]) - np.repeat(starts, lengths)
    x[win, step] = rows
    return x


def encode_windows(
    windows: Sequence[Window], spec: FeatureSpec, rows: CategoryRows | None = None
) -> tuple[F32, I32]:
    """Stream path: windows -> (x [B, N, F], lengths [B]); ``rows`` for an fs2 spec."""
    n = spec.seq_len
    lengths = np.array([min(w.ts.shape[0], n) for w in windows], dtype=np.int32)
    if not windows or lengths.sum() == 0:
        return np.zeros((len(windows), n, spec.n_features), np.float32), lengths
    # Python touches each window once (slices and a bucket table per distinct category
    # list); the per-event arrays are then built over the whole batch at once.
    ts_p, ty_p, ca_p, pr_p, table_of, totals, firsts = [], [], [], [], [], [], []
    tables: dict[tuple[str, ...], int] = {}
    kept = [(w, length) for w, length in zip(windows, lengths.tolist(), strict=True) if length]
    for w, length in kept:
        start = w.ts.shape[0] - length
        ts_p.append(w.ts[start:])
        ty_p.append(w.types[start:])
        ca_p.append(w.cats[start:])
        pr_p.append(w.prices[start:])
        table_of.append(tables.setdefault(w.categories, len(tables)))
        totals.append(w.n_total)
        firsts.append(w.first_ts_ms)
    lens = lengths[lengths > 0].astype(np.int64)
    starts = np.cumsum(lens) - lens
    ts = np.concatenate(ts_p, dtype=np.int64, casting="unsafe")
    prev = np.empty_like(ts)  # the previous event of the window; a window's first: itself
    prev[1:] = ts[:-1]
    prev[starts] = ts[starts]
    table, cat_table = code_tables(list(tables), _categories_of(spec), rows)
    buckets = table[np.repeat(table_of, lens), np.concatenate(ca_p)]
    step = np.arange(ts.shape[0], dtype=np.int64) - np.repeat(starts, lens)
    # events up to and including each one: n_total counts the window's last event
    count = np.repeat(np.array(totals, dtype=np.int64) - lens + 1, lens) + step
    feats = event_features(
        ts,
        prev,
        np.concatenate(ty_p),
        buckets,
        np.concatenate(pr_p).astype(np.float32),
        count,
        np.repeat(np.array(firsts, dtype=np.int64), lens),
        spec,
        cat_table,
    )
    return _scatter(feats, lengths, n), lengths


# --- training path: a whole event log at once --------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTable:
    """An event log sorted by (user, time), with every event's feature row computed once.

    ``starts[u]:starts[u+1]`` are user ``users[u]``'s events. ``rows`` hold the features of
    each event as the LAST event of a window would see them; windows are gathered from them.
    """

    users: npt.NDArray[np.object_]
    starts: I64
    ts: I64
    types: npt.NDArray[np.uint8]
    buckets: npt.NDArray[np.int16]  # fs1: bucket; fs2: index into category_names, -1: none
    rows: F32
    spec: FeatureSpec
    category_names: tuple[str, ...] = ()  # fs2: the log's category names

    @property
    def user_of(self) -> I64:
        counts = np.diff(self.starts)
        return np.repeat(np.arange(self.users.shape[0]), counts)


def prepare_events(
    events: pd.DataFrame, spec: FeatureSpec, rows: CategoryRows | None = None
) -> EventTable:
    """Sort a contract event frame by (user, ts) (stable) and compute per-event features
    (``rows``: the category space, for an fs2 spec)."""
    users_codes, users = pd.factorize(events["user_id"].astype(str), sort=True)
    ts_all = events["ts"].to_numpy(dtype=np.int64)
    order = np.lexsort((ts_all, users_codes))  # stable: file order breaks ties
    codes = users_codes[order].astype(np.int64)
    ts = ts_all[order]
    kinds = events["type"].astype(str).str.lower().to_numpy()[order]
    kind_codes, kind_names = pd.factorize(kinds)
    kind_table = np.array([type_code(k) for k in kind_names], dtype=np.uint8)
    types = kind_table[kind_codes] if len(kind_names) else np.zeros(0, np.uint8)
    if "category" in events.columns:
        cat_values = events["category"].to_numpy(dtype=object)[order]
    else:
        cat_values = np.full(ts.shape[0], None, dtype=object)
    buckets, cat_table, cat_names = log_categories(cat_values, _categories_of(spec), rows)
    if "price" in events.columns:
        prices = events["price"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    else:
        prices = np.zeros(ts.shape[0])
    n_users = len(users)
    starts = np.searchsorted(codes, np.arange(n_users + 1)).astype(np.int64)
    first_of_user = np.zeros(ts.shape[0], dtype=bool)
    first_of_user[starts[:-1][np.diff(starts) > 0]] = True
    prev_ts = np.where(first_of_user, ts, np.concatenate([ts[:1], ts[:-1]]))
    pos = np.arange(ts.shape[0], dtype=np.int64)
    count = pos - starts[codes] + 1
    first_ts = ts[starts[codes]] if ts.shape[0] else ts
    codes_for_rows = buckets if cat_table is None else buckets.astype(np.int64) + 1
    feats = event_features(
        ts, prev_ts, types, codes_for_rows, prices.astype(np.float32), count, first_ts, spec,
        cat_table,
    )  # fmt: skip
    return EventTable(
        users=np.asarray(users, dtype=object),
        starts=starts,
        ts=ts,
        types=types,
        buckets=buckets,
        rows=feats,
        spec=spec,
        category_names=cat_names,
    )


def last_event_index(table: EventTable, user: I64, cut_ms: I64) -> I64:
    """Index (into the table) of each user's last event at or before the cut; -1 if none."""
    user = np.asarray(user, dtype=np.int64)
    cut = np.asarray(cut_ms, dtype=np.int64)
    out = np.full(user.shape[0], -1, dtype=np.int64)
    # one searchsorted per user block would loop in Python; instead search a global key
    if table.ts.shape[0] == 0:
        return out
    t0 = int(table.ts.min())
    span = int(table.ts.max()) - t0 + 2
    if span * (table.users.shape[0] + 1) >= 2**62:
        raise ValueError("event log spans too long a time for the index key")
    key = table.user_of * span + (table.ts - t0)
    q = user * span + np.clip(cut - t0, -1, span - 1)
    idx = np.searchsorted(key, q, side="right") - 1
    ok = idx >= table.starts[user]
    out[ok] = idx[ok]
    return out


def window_lengths(table: EventTable, user: I64, last: I64) -> I32:
    """Window length for windows ending at event ``last`` (-1: empty)."""
    have = last - table.starts[user] + 1
    return np.where(last < 0, 0, np.minimum(have, table.spec.seq_len)).astype(np.int32)


def gather_windows(table: EventTable, user: I64, last: I64) -> tuple[F32, I32]:
    """Training path: (x [B, N, F], lengths [B]) for windows ending at events ``last``."""
    n = table.spec.seq_len
    lengths = window_lengths(table, user, last)
    step = np.arange(n)
    src = (last - lengths + 1)[:, None] + step[None, :]  # [B, N]
    valid = step[None, :] < lengths[:, None]
    x = np.zeros((last.shape[0], n, table.rows.shape[1]), dtype=np.float32)
    x[valid] = table.rows[src[valid]]
    x[:, 0, 0] = 0.0  # a window's first event has no known previous event (as in the stream)
    return x, lengths


def encode_log(
    events: pd.DataFrame, user_ids: Sequence[str], cut_ms: npt.ArrayLike, spec: FeatureSpec
) -> tuple[F32, I32]:
    """Convenience: windows of ``user_ids`` as of ``cut_ms`` (events with ts <= cut)."""
    table = prepare_events(events, spec)
    lookup = pd.Index(table.users)
    user = lookup.get_indexer(pd.Index(list(user_ids), dtype=object)).astype(np.int64)
    cut = np.asarray(cut_ms, dtype=np.int64)
    last = np.full(user.shape[0], -1, dtype=np.int64)
    known = user >= 0
    last[known] = last_event_index(table, user[known], cut[known])
    return gather_windows(table, np.maximum(user, 0), last)
