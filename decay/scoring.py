"""What a scorer is, and the baseline scorer: exponential decay with a fitted half-life.

A scorer maps a batch of windows (one user each, right after an event) to the parameters of
each user's interest curve. The stream app calls it once per micro-batch; the ONNX LSTM scorer
(in ``stream_app``) and this baseline share the protocol, so the agent takes either.

A :class:`StepScorer` is incremental instead: it keeps its own record per user (the lapse
step model's recurrent state, counters and curve parameters, ``stream_app.lapse_scorer``) and
steps each event from the state the user's previous event left, O(1) per event: the processor
hands it each user's events of a batch in order, then asks once for the scores of all the
states.

``occlusion`` explains a score, for any scorer, through ``curves``: interest at a time with
the whole window and without each of its last k events, all of them in one scorer call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from decay.events import Event
from decay.window import SESSION_GAP_MS, Window

HOUR_S = 3600.0
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Scores:
    """Per window: interest right after its last event, half-life of the curve, and the
    dormancy deadline as seconds after the last event (``inf``: interest never falls that low)."""

    peak: npt.NDArray[np.float64]
    half_life_s: npt.NDArray[np.float64]
    deadline_s: npt.NDArray[np.float64]
    # optional, from models that predict them (the ONNX hazard model does):
    # P(next event's category bucket) [B, K], and expected events within the model's horizon
    category_probs: npt.NDArray[np.float64] | None = None
    expected_events: npt.NDArray[np.float64] | None = None
    # a category-space (fs2) model's query vector [B, k]: a category's score is q · e(name)
    category_query: npt.NDArray[np.float64] | None = None


class Scorer(Protocol):
    @property
    def version(self) -> str: ...

    def score(self, windows: Sequence[Window], threshold: float) -> Scores: ...

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
        """Interest after ``silent_s`` seconds of silence, from the stored curve parameters."""
        ...

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Exact interest of each window after the silences ``silent_s`` ([K] for all, or
        [B, K]), as [B, K]; for pages and offline use, where scoring again is affordable."""
        ...


@runtime_checkable
class StepScorer(Protocol):
    """Scores each event from the user's stored model state, which it also advances."""

    @property
    def version(self) -> str: ...

    def resume(self, states: Sequence[bytes], windows: Sequence[Window | None]) -> list[bytes]:
        """The state to step each user from: the stored one if this model wrote it; else
        (none stored, another model's, a window scorer served the user meanwhile) a new one,
        from the user's window of earlier events (None: a new user)."""
        ...

    def step(self, states: Sequence[bytes], events: Sequence[Sequence[Event]]) -> list[list[bytes]]:
        """Per user: the stored state and the user's events of the batch in order; returns
        the state after each event (from states ``resume`` gave). One model call per round
        (round r: every user's r-th event)."""
        ...

    def scores(self, states: Sequence[bytes], threshold: float) -> Scores:
        """The curve each state holds (as ``step`` left it): peak, half-life, deadline.
        Apart from ``step`` so that the closed form runs once over a whole batch."""
        ...

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float: ...

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]: ...


def fit_half_life(gaps_s: npt.ArrayLike) -> float:
    """Maximum-likelihood half-life of an exponential fitted to inter-visit gaps (seconds).

    Gaps shorter than a session break are within one visit and say nothing about decay.
    """
    gaps = np.asarray(gaps_s, dtype=np.float64)
    gaps = gaps[gaps >= SESSION_GAP_MS / 1000.0]
    if gaps.shape[0] == 0:
        raise ValueError("no inter-visit gaps to fit a half-life from")
    return math.log(2.0) * float(gaps.mean())


def gaps_from_events(user_ids: npt.ArrayLike, ts_ms: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Gaps in seconds between consecutive events of the same user (any order in, vectorised)."""
    users = np.asarray(user_ids)
    ts = np.asarray(ts_ms, dtype=np.int64)
    order = np.lexsort((ts, users))
    users, ts = users[order], ts[order]
    same = users[1:] == users[:-1]
    return (np.diff(ts)[same] / 1000.0).astype(np.float64)


@dataclass(frozen=True, slots=True)
class ExponentialDecayScorer:
    """I(t) = 2^(-Δ/h): every user's interest halves every ``half_life_s`` seconds of silence."""

    half_life_s: float

    @property
    def version(self) -> str:
        return f"exp-decay-h{self.half_life_s / HOUR_S:.1f}h"

    def score(self, windows: Sequence[Window], threshold: float) -> Scores:
        n = len(windows)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        deadline = self.half_life_s * math.log2(1.0 / threshold)
        return Scores(
            peak=np.ones(n),
            half_life_s=np.full(n, self.half_life_s),
            deadline_s=np.full(n, deadline),
        )

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
        return peak * 2.0 ** (-max(silent_s, 0.0) / half_life_s)

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        silent = np.maximum(np.atleast_2d(silent_s), 0.0)
        return np.broadcast_to(2.0 ** (-silent / self.half_life_s), (len(windows), silent.shape[1]))


AnyScorer = Scorer | StepScorer  # what the processor, pages and rollout take


@dataclass(frozen=True, slots=True)
class Occlusion:
    """Interest at ``at_ms`` from a window, and from the window without each of its last
    events: ``without[i]`` lacks event ``first + i`` (events before ``first`` are kept)."""

    at_ms: int
    interest: float
    first: int
    without: npt.NDArray[np.float64]

    @property
    def deltas(self) -> npt.NDArray[np.float64]:
        """How much each occluded event raised (> 0) or lowered (< 0) interest at ``at_ms``."""
        return self.interest - self.without


def without_event(window: Window, j: int) -> Window:
    """The window as if its ``j``-th event had never come (the first event ever moves on
    when the window holds the user's whole history)."""
    keep = np.arange(window.ts.shape[0]) != j
    whole = window.n_total == window.ts.shape[0]
    first = int(window.ts[1]) if whole and j == 0 else window.first_ts_ms
    return Window(
        window.ts[keep],
        window.types[keep],
        window.cats[keep],
        window.prices[keep],
        window.categories,
        window.n_total - 1,
        first,
    )


def occlusion(
    scorer: AnyScorer, asks: Sequence[tuple[Window, int]], k: int
) -> list[Occlusion | None]:
    """Per (window, time): interest at that time with the window, and without each of its
    last ``k`` events, in ONE ``curves`` call for all of them (None: a window of one event,
    which has nothing to occlude, or ``k`` 0). Removing the last event lengthens the silence
    up to the time, so the curve's decay counts for it too."""
    variants: list[Window] = []
    at_ms: list[int] = []
    rows: list[tuple[int, int] | None] = []  # per ask: its first variant, its first occluded
    for window, t in asks:
        n = window.ts.shape[0]
        if n < 2 or k < 1:
            rows.append(None)
            continue
        first = max(n - k, 0)
        rows.append((len(variants), first))
        variants += [window, *(without_event(window, j) for j in range(first, n))]
        at_ms += [t] * (n - first + 1)
    if not variants:
        return [None] * len(asks)
    last = np.array([v.last_ts_ms for v in variants], dtype=np.int64)
    silent_s = np.maximum(np.array(at_ms, dtype=np.int64) - last, 0) / 1000.0
    values = np.asarray(scorer.curves(variants, silent_s[:, None]), dtype=np.float64)[:, 0]
    out: list[Occlusion | None] = []
    for (window, t), row in zip(asks, rows, strict=True):
        if row is None:
            out.append(None)
            continue
        at, first = row
        stop = at + 1 + window.ts.shape[0] - first
        out.append(Occlusion(t, float(values[at]), first, values[at + 1 : stop].copy()))
    return out
