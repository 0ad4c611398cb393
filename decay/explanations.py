"""Which recent events moved a score most, in plain words, from an occlusion.

Pure logic. ``decay.scoring.occlusion`` gives the interest at a time (an alert's, or now) with
the user's window and without each of its last events, one at a time. Here the events are
grouped by type, category and UTC day, each group's effect is the sum of its events' effects
(interest with the event minus interest without it), and the groups that raised and lowered
interest most become sentences, e.g. "the 3 cart events in running shoes on May 2 raised
interest most (+0.21)". Effects are one event at a time, as LIME's occlusion is: a group's sum
is not what removing the whole group at once would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from decay.events import EventType
from decay.scoring import Occlusion
from decay.window import NO_CATEGORY, Window

DAY_MS: Final = 86_400_000
EVENTS: Final = 10  # the last events occluded, by default (the lapse model keeps 10)
# Effects smaller than this are not worth a sentence (interest is a probability in [0, 1];
# the sentences print two decimals).
LEAST: Final = 0.005
NONE: Final = 1e-9  # an effect this small is float noise: the event changed nothing
MOST_RAISED: Final = 2  # groups named as raising interest
MOST_LOWERED: Final = 1


@dataclass(frozen=True, slots=True)
class Group:
    """Occluded events of one type, category and UTC day, and their summed effect."""

    kind: str  # the event type, as in the event contract
    category: str | None
    day_ms: int  # the UTC midnight starting the day
    events: int
    effect: float  # sum over the events of interest with it minus interest without it


def groups(window: Window, occ: Occlusion) -> list[Group]:
    """The occluded events grouped by type, category, day and the sign of their effect
    (a group's events all raised interest, or all lowered it; events without an effect are
    in none), largest effect first."""
    sums: dict[tuple[int, int, int, bool], tuple[int, float]] = {}
    for i, effect in enumerate(occ.deltas.tolist()):
        if abs(effect) < NONE:
            continue
        j = occ.first + i
        key = (int(window.types[j]), int(window.cats[j]), int(window.ts[j]) // DAY_MS, effect > 0)
        n, total = sums.get(key, (0, 0.0))
        sums[key] = (n + 1, total + effect)
    out = [
        Group(
            EventType(kind).name.lower(),
            None if cat == NO_CATEGORY else window.categories[cat],
            day * DAY_MS,
            n,
            total,
        )
        for (kind, cat, day, _), (n, total) in sums.items()
    ]
    # ties go to the newer day
    return sorted(out, key=lambda g: (-g.effect, -g.day_ms, g.kind, g.category or ""))


def day_words(day_ms: int, at_ms: int) -> str:
    """The day as "May 2", with the year when it is not the year of ``at_ms``."""
    day = datetime.fromtimestamp(day_ms / 1000, tz=UTC)
    year = "" if day.year == datetime.fromtimestamp(at_ms / 1000, tz=UTC).year else f", {day.year}"
    return f"{day:%b} {day.day}{year}"


def group_words(g: Group, at_ms: int) -> str:
    """The group as "the 3 cart events in running shoes on May 2"."""
    what = f"{g.events} {g.kind} events" if g.events > 1 else f"{g.kind} event"
    where = f" in {g.category}" if g.category is not None else ""
    return f"the {what}{where} on {day_words(g.day_ms, at_ms)}"


def sentences(found: list[Group], at_ms: int, occluded: int, least: float = LEAST) -> list[str]:
    """The groups that raised interest most (up to MOST_RAISED) and lowered it most (up to
    MOST_LOWERED), each with its effect; a sentence saying so when none moved it."""
    raised = [g for g in found if g.effect >= least][:MOST_RAISED]
    lowered = sorted((g for g in found if g.effect <= -least), key=lambda g: g.effect)
    out = [
        f"{group_words(g, at_ms)} {'raised interest most' if i == 0 else 'also raised it'} "
        f"({g.effect:+.2f})"
        for i, g in enumerate(raised)
    ]
    out += [
        f"{group_words(g, at_ms)} lowered {'interest' if not raised else 'it'} most "
        f"({g.effect:+.2f})"
        for g in lowered[:MOST_LOWERED]
    ]
    if not out:
        out.append(f"none of the last {occluded} events moved interest by {least:g} or more")
    return out


def explain(window: Window, occ: Occlusion | None, at_ms: int) -> list[str]:
    """The sentences for a window's occlusion at ``at_ms`` (None: nothing was occluded: a
    window of one event, which is a new user's only event, or nothing to say)."""
    if occ is not None:
        return sentences(groups(window, occ), at_ms, occ.deltas.shape[0])
    if window.n_total != 1 or window.ts.shape[0] != 1:
        return []
    cat = int(window.cats[0])
    only = Group(
        EventType(int(window.types[0])).name.lower(),
        None if cat == NO_CATEGORY else window.categories[cat],
        int(window.ts[0]) // DAY_MS * DAY_MS,
        1,
        0.0,
    )
    return [f"{group_words(only, at_ms)} is the only event the score rests on"]
