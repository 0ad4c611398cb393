"""Date ticks for a time axis in event time (UTC): round steps, a label format per step."""

from __future__ import annotations

from datetime import UTC, datetime

from decay.durations import DAY_MS, HOUR_MS, WEEK_MS

# (step in ms, or months as a negative number), label format
_STEPS = (
    (HOUR_MS, "%m-%d %H:%M"),
    (3 * HOUR_MS, "%m-%d %H:%M"),
    (6 * HOUR_MS, "%m-%d %H:%M"),
    (12 * HOUR_MS, "%m-%d %H:%M"),
    (DAY_MS, "%Y-%m-%d"),
    (2 * DAY_MS, "%Y-%m-%d"),
    (WEEK_MS, "%Y-%m-%d"),
    (2 * WEEK_MS, "%Y-%m-%d"),
    (-1, "%Y-%m"),
    (-2, "%Y-%m"),
    (-3, "%Y-%m"),
    (-6, "%Y-%m"),
    (-12, "%Y"),
)
_MONTH_MS = 30 * DAY_MS


def _ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def _month_ticks(t0: int, t1: int, months: int) -> list[int]:
    d = datetime.fromtimestamp(t0 / 1000, tz=UTC)
    index = d.year * 12 + d.month - 1
    index += -index % months  # the first multiple of the step at or after t0's month
    ticks: list[int] = []
    while True:
        tick = _ms(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC))
        if tick > t1:
            return ticks
        if tick >= t0:
            ticks.append(tick)
        index += months


def _step(span: int, most: int) -> tuple[int, str]:
    """The smallest step that gives at most ``most`` ticks over ``span`` ms."""
    for step, fmt in _STEPS:
        size = step if step > 0 else -step * _MONTH_MS
        if span / size <= most - 1:
            return step, fmt
    return _STEPS[-1]


def date_ticks(t0: int, t1: int, most: int = 8) -> list[tuple[int, str]]:
    """At most ``most`` ticks in [t0, t1] (ms), at round UTC times, with their labels."""
    step, fmt = _step(max(t1 - t0, 1), most)
    if step > 0:
        first = t0 + (-t0 % step)
        ticks = list(range(first, t1 + 1, step))
    else:
        ticks = _month_ticks(t0, t1, -step)
        while len(ticks) > most:  # a span of decades: thin out the yearly ticks
            ticks = ticks[::2]
    return [(t, datetime.fromtimestamp(t / 1000, tz=UTC).strftime(fmt)) for t in ticks]
