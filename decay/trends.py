"""Category trends: per category, the interest of a partition's users and how it moved.

Each applied event with a category adds 1 to its category's exponentially decayed activity
sum, in event time (half-life ``half_life_ms``): Fennel's decayed aggregates. Summed over
users it is the category's interest now, ``S(t) = sum 2^(-(t - ts_i) / h)``. It is kept as
values as of an anchor time ``A`` (``V = sum 2^((ts_i - A) / h)``, ``S(t) = V 2^(-(t - A)/h)``),
so that an event costs one addition whatever its timestamp, and late events count in full.

Each time the partition's clock (its newest event time) passes a UTC midnight, the values at
that midnight are kept in a ring of the last ``DAYS`` days and the anchor moves there. The
change over the last day is the interest now minus its value at the midnight that starts
yesterday (so 24 to 48 hours back), over the last week minus the midnight 7 days before
today's: differences of stored values, no scan of the users. A snapshot holds the events that
had arrived when the clock passed its midnight; one that comes later, late, counts from then.

Events are applied one at a time in order, with the same float operations, so the values do
not depend on how the events were cut into batches. Stored per partition in the state table
as a header record and one record per category (written when it changed), under keys that
start with "\\x00" (the processor's own, skipped where users are read).

Pure: no I/O; a lock per table lets the web pages read it while a batch applies events.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from decay.errors import DecayError

DAY_MS: Final = 86_400_000
DAYS: Final = 8  # today and the 7 midnights before it: a week's change needs the 7th
HEADER_KEY: Final = "\x00trends"
ROW_PREFIX: Final = "\x00trend:"
_HEADER = struct.Struct(f"<BqqqI{DAYS}q")  # version, anchor, clock, untracked, rows, days
_ROW = struct.Struct(f"<{DAYS + 1}d")  # value as of the anchor, then the ring's slots
_VERSION = 1
_NO_DAY = -1


class TrendStateError(DecayError, ValueError):
    """A stored trend record that cannot be read."""


@dataclass(frozen=True, slots=True)
class TrendRules:
    half_life_ms: int = 7 * DAY_MS
    # Bounds memory and writes against a producer inventing category names: the events of
    # categories beyond it are counted (untracked), not summed.
    max_categories: int = 10_000


@dataclass(frozen=True, slots=True)
class CategoryTrend:
    category: str
    interest: float  # the decayed activity sum now
    day_change: float | None  # None: no snapshot that old yet
    week_change: float | None


@dataclass(frozen=True)
class Reading:
    """The trends of one or more partitions at one instant: per category (``names``, sorted)
    the interest now and at the day's and the week's reference midnight (``sums``)."""

    now_ms: int
    day_ref_ms: int  # the midnights the changes are measured from
    week_ref_ms: int
    untracked: int
    names: np.ndarray
    sums: np.ndarray
    day_known: bool  # every table has its snapshot at day_ref_ms (else the changes are None)
    week_known: bool

    def trend(self, i: int) -> CategoryTrend:
        now, day, week = self.sums[i].tolist()
        return CategoryTrend(
            str(self.names[i]),
            now,
            now - day if self.day_known else None,
            now - week if self.week_known else None,
        )

    @property
    def categories(self) -> list[CategoryTrend]:
        return [self.trend(i) for i in range(len(self.names))]


@dataclass(slots=True)
class CategoryTrends:
    """One partition's table. Row ``index[c]`` of ``values``: the value as of ``anchor_ms``,
    then the ring's slots (slot ``d % DAYS`` holds the value at midnight of day ``d`` when
    ``days[slot] == d``). Rows are numpy so that reading is a few array operations."""

    rules: TrendRules = field(default_factory=TrendRules)
    anchor_ms: int = 0  # 0: no event yet
    clock_ms: int = 0
    untracked: int = 0
    days: list[int] = field(default_factory=lambda: [_NO_DAY] * DAYS)
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    values: np.ndarray = field(default_factory=lambda: np.zeros((16, DAYS + 1)))
    dirty: set[int] = field(default_factory=set)
    header_dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, events: Iterable[tuple[int, str | None]]) -> None:
        """Apply events (event time ms, category) in the order they were applied. Each
        category's value is summed in a Python float meanwhile (the same float64 additions,
        in the same order, as into ``values``), put back before a midnight re-anchors it."""
        with self.lock:
            sums: dict[int, float] = {}
            index, h, exp2 = self.index, self.rules.half_life_ms, math.exp2
            anchor, clock = self.anchor_ms, self.clock_ms
            for ts_ms, category in events:
                if not anchor or ts_ms > clock:
                    if anchor and ts_ms // DAY_MS > anchor // DAY_MS:
                        self._put_back(sums)
                    self._move_clock(ts_ms)
                    anchor, clock = self.anchor_ms, self.clock_ms
                if category is None:
                    continue
                i = index.get(category)
                if i is None:
                    if len(self.names) >= self.rules.max_categories:
                        self.untracked += 1
                        continue
                    i = self._new_row(category)
                value = sums.get(i)
                if value is None:
                    value = float(self.values[i, 0])
                sums[i] = value + exp2((ts_ms - anchor) / h)
            self._put_back(sums)

    def _move_clock(self, ts_ms: int) -> None:
        """An event newer than the clock (or the first): the clock moves, past midnights."""
        if not self.anchor_ms:
            self.anchor_ms = ts_ms // DAY_MS * DAY_MS
            self.clock_ms = ts_ms
            self.header_dirty = True
        if ts_ms > self.clock_ms:
            if ts_ms // DAY_MS > self.anchor_ms // DAY_MS:
                self._pass_midnights(ts_ms // DAY_MS)
            self.clock_ms = ts_ms
            self.header_dirty = True

    def _put_back(self, sums: dict[int, float]) -> None:
        """The values summed apart (see add) into their rows; emptied."""
        for i, value in sums.items():
            self.values[i, 0] = value
        self.dirty.update(sums)
        sums.clear()

    def _new_row(self, category: str) -> int:
        i = self.index[category] = len(self.names)
        self.names.append(category)
        if i == self.values.shape[0]:
            grown = np.zeros((2 * i, DAYS + 1))
            grown[:i] = self.values
            self.values = grown
        return i

    def _pass_midnights(self, today: int) -> None:
        """The clock passed the midnights up to today's: keep their values, re-anchor."""
        anchor, h, n = self.anchor_ms, self.rules.half_life_ms, len(self.names)
        crossed = range(max(anchor // DAY_MS + 1, today - DAYS + 1), today + 1)
        current = self.values[:n, 0].copy()
        for d in crossed:
            factor = math.exp2(-(d * DAY_MS - anchor) / h)
            self.values[:n, 1 + d % DAYS] = current * factor
            self.days[d % DAYS] = d
        self.values[:n, 0] = current * factor
        self.anchor_ms = today * DAY_MS
        self.dirty.update(range(n))

    # -- reading -----------------------------------------------------------------------

    def has_day(self, day: int) -> bool:
        """Whether the value at midnight of ``day`` is known: stored, or a midnight after
        the anchor (the table is read later than its newest event: it decays on to it)."""
        return day * DAY_MS > self.anchor_ms or self.days[day % DAYS] == day

    def sums_at(self, now_ms: int) -> tuple[list[str], np.ndarray]:
        """The categories, and per category (rows) the interest at ``now_ms`` and at the
        day and the week reference (columns; 0.0 where ``has_day`` does not know it)."""
        today = now_ms // DAY_MS
        with self.lock:
            n = len(self.names)
            out = np.empty((n, 3))
            out[:, 0] = self.values[:n, 0] * self._factor(now_ms)
            for col, day in ((1, today - 1), (2, today - 7)):
                if day * DAY_MS > self.anchor_ms:
                    out[:, col] = self.values[:n, 0] * self._factor(day * DAY_MS)
                elif self.days[day % DAYS] == day:
                    out[:, col] = self.values[:n, 1 + day % DAYS]
                else:
                    out[:, col] = 0.0
            return self.names[:n], out

    def _factor(self, t_ms: int) -> float:
        return math.exp2(-(t_ms - self.anchor_ms) / self.rules.half_life_ms)

    # -- storage -------------------------------------------------------------------------

    def flush(self) -> dict[str, bytes]:
        """The records (key -> value) changed since the last flush."""
        with self.lock:
            rows = sorted(self.dirty)
            out = {ROW_PREFIX + self.names[i]: _ROW.pack(*self.values[i].tolist()) for i in rows}
            if out or (self.header_dirty and self.names):  # no categories: nothing to keep
                out[HEADER_KEY] = _HEADER.pack(
                    _VERSION,
                    self.anchor_ms,
                    self.clock_ms,
                    self.untracked,
                    len(self.names),
                    *self.days,
                )
            self.dirty.clear()
            self.header_dirty = False
            return out

    @classmethod
    def restore(cls, records: Mapping[str, bytes], rules: TrendRules) -> CategoryTrends:
        """The table from its stored records (``HEADER_KEY`` and ``ROW_PREFIX`` keys)."""
        table = cls(rules=rules)
        header = records.get(HEADER_KEY)
        if header is None:
            return table
        try:
            version, anchor, clock, untracked, _, *days = _HEADER.unpack(header)
            if version != _VERSION:
                raise TrendStateError(f"trend records of version {version}, not {_VERSION}")
            for key in sorted(k for k in records if k.startswith(ROW_PREFIX)):
                i = table._new_row(key[len(ROW_PREFIX) :])
                table.values[i] = _ROW.unpack(records[key])
        except struct.error as exc:
            raise TrendStateError(f"unreadable trend record: {exc}") from exc
        table.anchor_ms, table.clock_ms, table.untracked = anchor, clock, untracked
        table.days = list(days)
        return table


def is_trend_key(key: str) -> bool:
    return key == HEADER_KEY or key.startswith(ROW_PREFIX)


def read(tables: Iterable[CategoryTrends], now_ms: int | None = None) -> Reading:
    """The tables' categories summed at one instant: ``now_ms``, by default the newest of
    their clocks (a table whose clock is behind is decayed on to it: no events since). A
    change is None when a table has no snapshot that old (its history starts later)."""
    tables = [t for t in tables if t.anchor_ms]
    if now_ms is None:
        now_ms = max((t.clock_ms for t in tables), default=0)
    today = now_ms // DAY_MS
    parts = [t.sums_at(max(now_ms, t.clock_ms)) for t in tables]
    names = np.array(sorted({c for names, _ in parts for c in names}), dtype=str)
    total = np.zeros((len(names), 3))
    for part_names, sums in parts:  # in the tables' order: the same sums every time
        if part_names:
            total[np.searchsorted(names, part_names)] += sums
    return Reading(
        now_ms,
        (today - 1) * DAY_MS,
        (today - 7) * DAY_MS,
        sum(t.untracked for t in tables),
        names,
        total,
        bool(tables) and all(t.has_day(today - 1) for t in tables),
        bool(tables) and all(t.has_day(today - 7) for t in tables),
    )


def top(reading: Reading, n: int, by: str = "day") -> dict[str, list[CategoryTrend]]:
    """The ``n`` categories of highest interest, and the ``n`` that rose and that fell most
    over the day (``by="day"``) or the week. Ties rank by name."""
    if by not in ("day", "week"):
        raise ValueError(f"by must be day or week, not {by!r}")
    interest = reading.sums[:, 0]
    change = interest - reading.sums[:, 1 if by == "day" else 2]
    known = reading.day_known if by == "day" else reading.week_known
    rising = np.flatnonzero(change > 0) if known else np.empty(0, dtype=np.int64)
    falling = np.flatnonzero(change < 0) if known else np.empty(0, dtype=np.int64)
    return {
        "top": _pick(reading, np.arange(len(interest)), -interest, n),
        "rising": _pick(reading, rising, -change[rising], n),
        "falling": _pick(reading, falling, change[falling], n),
    }


def _pick(reading: Reading, rows: np.ndarray, key: np.ndarray, n: int) -> list[CategoryTrend]:
    order = rows[np.argsort(key, kind="stable")[:n]]  # rows are by name: ties by name
    return [reading.trend(int(i)) for i in order]
