"""Category trends in the worker: fed from each batch's applied events, read by /categories
and the top-N gauge. The maths is ``decay.trends``; this is the wiring around it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Gauge

from decay import trends
from decay.alerts import rfc3339
from stream_app.batch import Step
from stream_app.partitions import PartitionState

MAX_N = 1000  # most categories /categories lists in each part


def apply_steps(
    partitions: Mapping[int, PartitionState],
    steps: Sequence[Step],
    writes: dict[tuple[int, str], bytes],
) -> None:
    """Add a batch's applied events (in their order) to their partitions' trend tables, and
    put the records that changed among the batch's writes (they go out with the states)."""
    # Per partition (in order of appearance), its events' times and categories: two lists,
    # not a tuple an event (which a batch's garbage collections would scan).
    of: dict[int, tuple[list[int], list[str | None]]] = {}
    for s in steps:
        event = s.event
        columns = of.get(s.partition)
        if columns is None:
            columns = of[s.partition] = ([], [])
        columns[0].append(event.ts_ms)
        columns[1].append(event.category)
    for p, (times, categories) in of.items():
        table = partitions[p].trends
        table.add(zip(times, categories, strict=True))
        for key, value in table.flush().items():
            writes[(p, key)] = value


def in_order(tables: Mapping[int, trends.CategoryTrends]) -> list[trends.CategoryTrends]:
    """By partition: the sums over partitions then do not depend on which came first."""
    return [tables[p] for p in sorted(tables)]


def _item(t: trends.CategoryTrend) -> dict[str, Any]:
    return {
        "category": t.category,
        "interest": t.interest,
        "day_change": t.day_change,
        "week_change": t.week_change,
    }


def describe(
    tables: Mapping[int, trends.CategoryTrends],
    now_ms: int,
    n: int,
    by: str,
    half_life_ms: int,
) -> dict[str, Any]:
    """The /categories answer over ``tables`` (partition -> table) at ``now_ms``."""
    reading = trends.read(in_order(tables), now_ms or None)
    ranked = trends.top(reading, n, by)
    known = reading.day_known if by == "day" else reading.week_known
    return {
        "partitions": sorted(tables),
        "now": rfc3339(reading.now_ms) if reading.now_ms else None,
        "clock": "event time: the newest event of these partitions",
        "interest": "events per category, exponentially decayed in event time, summed over "
        "the users of these partitions",
        "half_life_days": half_life_ms / trends.DAY_MS,
        "day_change_from": rfc3339(reading.day_ref_ms) if reading.now_ms else None,
        "week_change_from": rfc3339(reading.week_ref_ms) if reading.now_ms else None,
        "ranked_by": f"{by}_change",
        # The changes need the partitions' values at those midnights: None until then.
        "changes_known": known,
        "categories_tracked": len(reading.names),
        "untracked_events": reading.untracked,
        "top": [_item(t) for t in ranked["top"]],
        "rising": [_item(t) for t in ranked["rising"]],
        "falling": [_item(t) for t in ranked["falling"]],
    }


def query_args(query: Mapping[str, str]) -> tuple[int, str] | str:
    """``n`` and ``by`` of a /categories request, or the error to answer with."""
    raw_n, by = query.get("n", "10"), query.get("by", "day")
    if not raw_n.isdigit() or not 1 <= int(raw_n) <= MAX_N:
        return f"n must be a whole number from 1 to {MAX_N}, not {raw_n!r}"
    if by not in ("day", "week"):
        return f"by must be day or week, not {by!r}"
    return int(raw_n), by


def set_top_gauge(
    gauge: Gauge, tables: Mapping[int, trends.CategoryTrends], now_ms: int, n: int
) -> None:
    """The ``n`` categories of highest interest now, one label each (the others removed)."""
    reading = trends.read(in_order(tables), now_ms or None)
    gauge.clear()
    for t in trends.top(reading, n)["top"]:
        gauge.labels(t.category).set(t.interest)
