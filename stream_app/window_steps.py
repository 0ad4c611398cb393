"""A user's window as the events the lapse step model steps through (``LapseScorer._warm``,
for pages and explanations: eleven windows per alert)."""

from __future__ import annotations

from typing import Any, Final

from decay.events import Event, EventType
from decay.window import NO_CATEGORY, Window

_TYPES: Final = {t.value: t for t in EventType}


def window_events(w: Window, made: dict[tuple[Any, ...], Event]) -> list[Event]:
    """The window's events as the model steps them: the columns read once, as Python values,
    and an event already in ``made`` (by time, type, category and price) taken from there,
    not built again (an explanation's windows hold the same ten events, less one each)."""
    names = w.categories
    out = []
    for ts, code, cat, price in zip(
        w.ts.tolist(), w.types.tolist(), w.cats.tolist(), w.prices.tolist(), strict=True
    ):
        name = None if cat == NO_CATEGORY else names[cat]
        key = (ts, code, name, price)
        event = made.get(key)
        if event is None:
            event = made[key] = Event("", "", ts, _TYPES[code], category=name, price=price)
        out.append(event)
    return out
