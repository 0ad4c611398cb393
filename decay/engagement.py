"""A user's engagement with each category, and when it has really dropped.

Counts are of *sessions*: an event 30 minutes or more after the user's previous one starts a
new session, and a session visits the category its first event is in (what the user came
for). So one long session does not make a category look strong, nor do the stray views of
sessions opened for something else; any event of the category keeps it alive all the same.

Per category and user:

- ``visits``: the sessions that visited it, since the user's first;
- ``activity``: an exponentially decayed count of those visits (half-life ``half_life_ms``),
  kept as a value and the time it is as of (Fennel's decayed aggregates). Each session visits
  one category, so the sum over the categories is the user's decayed sessions, and the
  category's part of it is its share of what the user does *now*.

The user's own baseline for the category (``base``) is its share of the user's sessions up
to its last visit (posterior mean, uniform prior), so the sessions elsewhere since do not
lower it.

A category has decayed (one alert per episode; the episode ends when its decayed share is
back to ``recover`` of ``base``) when, on an event of the user's,

- it was strong for the user: at least ``min_visits`` visits and ``base >= min_peak``;
- it fell: its decayed share is below ``fall`` of ``base``, and so few recent visits would
  be unlikely had the share stayed at ``base`` (beta-binomial tail under the posterior of
  ``base``, the decayed counts taken as ``evidence`` sessions each, below ``alpha``);
- the user's sessions since its last visit would be unlikely at its share of the sessions
  up to then (the beta-binomial chance of none, below ``run_alpha``): a run of sessions
  elsewhere, not a gap;
- the sessions went elsewhere: another category's decayed share is above what its share of
  all the user's sessions, or the most it can have had of the sessions up to the category's
  last visit, would make likely (beta-binomial upper tail, below ``rise_alpha``; see
  :func:`risen`). A fall that is only noise leaves no category risen; a user who really
  moved has one;
- nothing of it for ``min_silence_ms``; and it holds fewer than half of the user's last
  ``recent`` events.

So engagement cannot read as falling while the user keeps coming back to the category, and a
user silent altogether is dormant (another alert), not decaying in a category.

Pure: values are rounded to float32 as the stored state keeps them, so that a decision does
not depend on whether the state went through the store between two events.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000


_F32 = struct.Struct("<f")


def _f32(value: float) -> float:
    try:  # the same rounding as numpy's float32, a few times faster
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:  # beyond float32: numpy's inf
        return float(np.float32(value))


@dataclass(slots=True)
class Engagement:
    """One category of one user (see the module's docstring)."""

    activity: float = 0.0  # decayed visits, as of last_ts_ms
    last_ts_ms: int = 0
    visits: int = 0
    at_session: int = 0  # the user's session count at its last visit
    fired: bool = False  # alerted in this episode (until its next visit)


@dataclass(frozen=True, slots=True)
class EngagementRules:
    half_life_ms: int = 14 * DAY_MS
    session_gap_ms: int = 30 * 60_000
    min_peak: float = 0.3
    min_visits: int = 5
    # The tests' levels, tuned together on simulated seeds 101-105 (bench/categories.py):
    # each alone is weak evidence at these levels; a fall, a run elsewhere and another
    # category's rise together are not.
    alpha: float = 0.05  # the decayed share's test
    run_alpha: float = 0.05  # the run of sessions elsewhere's test
    rise_alpha: float = 0.01  # the test that another category rose
    fall: float = 0.6  # the decayed share must be below this part of the share before
    recover: float = 0.8  # an episode ends when the decayed share is back to this part
    # Effective sessions per unit of decayed weight (Kish's (sum w)^2 / sum w^2 is 2 for
    # sessions at a steady rate under exponential weights).
    evidence: float = 2.0
    min_silence_ms: int = 7 * DAY_MS
    recent: int = 10
    max_categories: int = 32  # the least visited beyond this are forgotten


@dataclass(frozen=True, slots=True)
class Decayed:
    """A category whose engagement dropped: what the alert says."""

    category: str
    share: float  # of the user's decayed activity now
    base: float  # of the user's sessions, up to its last visit
    silent_ms: int
    sessions_since: int
    instead: str  # the category that rose
    instead_share: float  # its share of the user's decayed activity now
    instead_base: float  # the share it rose from (see risen)


def log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def none_in(visits: int, sessions: int, since: int) -> float:
    """P(no visit in ``since`` more sessions | ``visits`` of ``sessions``), the share having
    a uniform prior: B(v + 1, n - v + 1 + m) / B(v + 1, n - v + 1)."""
    a, b = visits + 1.0, sessions - visits + 1.0
    return math.exp(log_beta(a, b + since) - log_beta(a, b))


def activity_at(e: Engagement, t_ms: int, rules: EngagementRules) -> float:
    if t_ms <= e.last_ts_ms:
        return e.activity
    return e.activity * 2.0 ** (-(t_ms - e.last_ts_ms) / rules.half_life_ms)


def add_event(
    book: dict[str, Engagement],
    category: str | None,
    ts_ms: int,
    session: int,
    opens: bool,
    rules: EngagementRules,
) -> None:
    """Count an event (of ``category``, or none) at ``ts_ms`` in the user's ``session``-th
    session (see :func:`session_of`); ``opens``: it is the session's first event."""
    if category is None:
        return
    e = book.get(category)
    if e is None:
        e = book[category] = Engagement()
    # Any event of the category keeps it alive; only a session it opens counts as a visit.
    if session > e.at_session:
        e.at_session = session
    if not opens:
        if ts_ms > e.last_ts_ms:
            e.last_ts_ms = ts_ms
        return
    if ts_ms >= e.last_ts_ms:
        e.activity, e.last_ts_ms = _f32(activity_at(e, ts_ms, rules) + 1.0), ts_ms
    else:  # an older visit: its weight as of the entry's time
        e.activity = _f32(e.activity + 2.0 ** (-(e.last_ts_ms - ts_ms) / rules.half_life_ms))
    e.visits += 1
    if len(book) > rules.max_categories:
        del book[min(book, key=lambda n: (book[n].visits, book[n].last_ts_ms))]


def session_of(sessions: int, last_ts_ms: int, ts_ms: int, rules: EngagementRules) -> int:
    """The user's session count with an event at ``ts_ms`` (``sessions`` so far, the last
    at ``last_ts_ms``; 0 before the first): one more when the gap starts a new session."""
    if sessions == 0 or ts_ms - last_ts_ms >= rules.session_gap_ms:
        return sessions + 1
    return sessions


def at_most(k: int, m: int, a: float, b: float) -> float:
    """P(X <= k) for X ~ BetaBinomial(m, a, b): at most ``k`` visits in ``m`` sessions when
    the share is Beta(a, b)."""
    base = log_beta(a, b)
    total = 0.0
    for j in range(max(0, min(k, m)) + 1):
        log_choose = math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1)
        total += math.exp(log_choose + log_beta(j + a, m - j + b) - base)
    return min(total, 1.0)


def at_least(k: int, m: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(m, a, b), summed over the upper tail (1 - the CDF
    would lose the small values the test compares)."""
    base = log_beta(a, b)
    total = 0.0
    for j in range(max(0, k), m + 1):
        log_choose = math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1)
        total += math.exp(log_choose + log_beta(j + a, m - j + b) - base)
    return min(total, 1.0)


def risen(
    book: dict[str, Engagement],
    now: dict[str, float],
    fallen: str,
    sessions: int,
    rules: EngagementRules,
) -> tuple[str, float, float] | None:
    """The category other than ``fallen`` that rose most surely, if one did: its decayed
    visits (taken as ``evidence`` sessions each) are unlikely at its share of all the user's
    sessions, or at the most it can have had of the sessions up to ``fallen``'s last visit
    (posteriors, uniform prior). Its name, the share it is tested against and the test's
    value.

    The most: ``fallen`` opened ``visits`` of those ``at_session`` sessions, so another
    category opened at most the rest, and at most all its own visits. Its share of all
    sessions lags a move a long history dilutes; the most before misses none of a short
    history."""
    f = book[fallen]
    total = sum(now.values())
    m = round(rules.evidence * total)
    best: tuple[str, float, float] | None = None
    for name, e in book.items():
        if name == fallen:
            continue
        k = round(rules.evidence * now[name])
        most = min(e.visits, f.at_session - f.visits)
        for count, n in ((e.visits, sessions), (most, f.at_session)):
            share = (count + 1.0) / (n + 2.0)
            if now[name] <= share * total:
                continue  # not above it
            p = at_least(k, m, count + 1.0, n - count + 1.0)
            if p < rules.rise_alpha and (best is None or p < best[2]):
                best = (name, share, p)
    return best


def may_decay(book: dict[str, Engagement], rules: EngagementRules) -> bool:
    """Whether ``review`` could alert on or change a category of ``book``: it passes over
    those with fewer than ``min_visits`` visits (or no session) untouched."""
    least = rules.min_visits
    for e in book.values():  # noqa: SIM110 (any() of a generator: twice as slow, per event)
        if e.visits >= least and e.at_session > 0:
            return True
    return False


def review(
    book: dict[str, Engagement],
    t_ms: int,
    sessions: int,
    recent_categories: Sequence[str | None],
    rules: EngagementRules,
) -> list[Decayed]:
    """On the user's newest event at ``t_ms`` (after :func:`add_event`; ``sessions``: the
    user's sessions so far): the categories that decayed just now, marked as alerted.
    ``recent_categories``: the categories of the user's last events, newest last."""
    recent = list(recent_categories)[-rules.recent :]
    now = {name: activity_at(e, t_ms, rules) for name, e in book.items()}
    total = sum(now.values())  # the user's decayed sessions (each visits one category)
    out = []
    for name, e in book.items():
        if total <= 0 or e.visits < rules.min_visits or e.at_session <= 0:
            continue
        # Its share of the user's sessions up to its last visit (posterior mean, uniform
        # prior): what it was before the sessions elsewhere.
        base = (e.visits + 1.0) / (e.at_session + 2.0)
        share = now[name] / total
        if e.fired:
            e.fired = share < rules.recover * base  # the episode lasts until it recovers
            continue
        silent = t_ms - e.last_ts_ms
        if (
            base < rules.min_peak
            or share >= rules.fall * base
            or silent < rules.min_silence_ms
            or 2 * recent.count(name) >= len(recent)
        ):
            continue
        # Would so few recent visits be likely had the share stayed what it was before?
        k, m = round(rules.evidence * now[name]), round(rules.evidence * total)
        mean, mass = base, e.at_session + 2.0
        since = sessions - e.at_session
        if (
            none_in(e.visits, e.at_session, since) >= rules.run_alpha
            or at_most(k, m, mean * mass, (1.0 - mean) * mass) >= rules.alpha
        ):
            continue
        rose = risen(book, now, name, sessions, rules)
        if rose is not None:
            e.fired = True
            out.append(
                Decayed(
                    name,
                    _f32(share),
                    _f32(base),
                    silent,
                    since,
                    rose[0],
                    _f32(now[rose[0]] / total),
                    _f32(rose[1]),
                )
            )
    return out
