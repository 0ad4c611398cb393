"""Decay maths shared by training and serving: piecewise-constant hazard -> interest curve.

Pure numpy, vectorised over a batch. Time is in hours throughout.

The model gives, per user, a hazard rate ``rate[:, j]`` (events per hour) that is constant on
bin ``j`` = ``[edges[j], edges[j+1])``; the last bin is open (``[edges[-1], inf)``) so the curve
is defined for every silence. With the cumulative hazard ``L(t)`` and ``S(t) = exp(-L(t))``:

    interest  I(d) = P(next event within H | silent for d) = 1 - S(d + H) / S(d)
                   = 1 - exp(-(L(d + H) - L(d)))

``g(d) = L(d + H) - L(d)`` is piecewise linear in ``d`` with breakpoints at the edges and at the
edges minus ``H``, so the first ``d`` where ``I`` falls below a level is found exactly from the
values of ``g`` at those breakpoints (no stepping through time): that gives the dormancy
deadline and the half-life.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def check_edges(edges_h: npt.ArrayLike) -> Array:
    edges = np.asarray(edges_h, dtype=np.float64)
    if edges.ndim != 1 or edges.shape[0] < 1 or edges[0] != 0.0:
        raise ValueError("bin edges must be a 1-d array starting at 0")
    if np.any(np.diff(edges) <= 0):
        raise ValueError("bin edges must be strictly increasing")
    return edges


def cumulative_hazard(rate: npt.ArrayLike, edges_h: npt.ArrayLike, t_h: npt.ArrayLike) -> Array:
    """``L(t)`` for hazard rates ``rate`` [B, M] over ``edges`` [M]; ``t`` is [B] or [B, K]."""
    edges = check_edges(edges_h)
    lam = np.atleast_2d(np.asarray(rate, dtype=np.float64))
    t = np.asarray(t_h, dtype=np.float64)
    squeeze = t.ndim == 1
    t2 = t[:, None] if squeeze else t
    if lam.shape[1] != edges.shape[0]:
        raise ValueError(f"{lam.shape[1]} rates for {edges.shape[0]} bins")
    widths = np.diff(edges)
    # L at each edge: [B, M]
    at_edge = np.concatenate(
        [np.zeros((lam.shape[0], 1)), np.cumsum(lam[:, :-1] * widths, axis=1)], axis=1
    )
    tc = np.maximum(t2, 0.0)
    j = np.searchsorted(edges, tc, side="right") - 1  # [B, K]
    rows = np.arange(lam.shape[0])[:, None]
    out = at_edge[rows, j] + lam[rows, j] * (tc - edges[j])
    result: Array = out[:, 0] if squeeze else out
    return result


def survival(rate: npt.ArrayLike, edges_h: npt.ArrayLike, t_h: npt.ArrayLike) -> Array:
    """``S(t) = P(no event within t hours)``."""
    return np.exp(-cumulative_hazard(rate, edges_h, t_h))


def interest(
    rate: npt.ArrayLike, edges_h: npt.ArrayLike, horizon_h: float, silent_h: npt.ArrayLike
) -> Array:
    """``I(d) = 1 - S(d + H) / S(d)`` for silence ``d`` ([B] or [B, K] hours)."""
    d = np.asarray(silent_h, dtype=np.float64)
    g = cumulative_hazard(rate, edges_h, d + horizon_h) - cumulative_hazard(rate, edges_h, d)
    return -np.expm1(-g)


def first_crossing(
    rate: npt.ArrayLike, edges_h: npt.ArrayLike, horizon_h: float, level: npt.ArrayLike
) -> Array:
    """First silence ``d >= 0`` (hours) at which ``I(d) <= level`` ([B]); ``inf`` if never.

    Exact: between consecutive breakpoints ``g(d) = L(d+H) - L(d)`` is linear, so the crossing
    is a linear interpolation inside the first segment whose end value is at or below the level.
    """
    edges = check_edges(edges_h)
    lam = np.atleast_2d(np.asarray(rate, dtype=np.float64))
    b = lam.shape[0]
    if horizon_h <= 0:
        raise ValueError("horizon must be positive")
    lvl = np.broadcast_to(np.asarray(level, dtype=np.float64), (b,))
    with np.errstate(divide="ignore"):
        target = -np.log1p(-np.clip(lvl, 0.0, 1.0))  # g at which I == level
    points = np.concatenate([edges, edges - horizon_h])
    points = np.unique(points[points >= 0.0])  # sorted, starts at 0
    # past the last point g is constant: lam_last * H
    d = np.broadcast_to(points, (b, points.shape[0]))
    g = interest_exponent(lam, edges, horizon_h, d)
    below = g <= target[:, None]
    out = np.full(b, np.inf)
    first = np.argmax(below, axis=1)
    anywhere = below.any(axis=1)
    at_zero = anywhere & (first == 0)
    out[at_zero] = 0.0
    mid = anywhere & (first > 0)
    if mid.any():
        rows = np.nonzero(mid)[0]
        k = first[rows]
        d0, d1 = points[k - 1], points[k]
        g0, g1 = g[rows, k - 1], g[rows, k]
        frac = (g0 - target[rows]) / (g0 - g1)  # g0 > target >= g1, so g0 > g1
        out[rows] = d0 + frac * (d1 - d0)
    return out


def interest_exponent(
    rate: npt.ArrayLike, edges_h: npt.ArrayLike, horizon_h: float, silent_h: npt.ArrayLike
) -> Array:
    """``g(d) = L(d + H) - L(d)``, so that ``I(d) = 1 - exp(-g(d))``."""
    d = np.asarray(silent_h, dtype=np.float64)
    return cumulative_hazard(rate, edges_h, d + horizon_h) - cumulative_hazard(rate, edges_h, d)


def deadline(
    rate: npt.ArrayLike, edges_h: npt.ArrayLike, horizon_h: float, threshold: float
) -> Array:
    """Dormancy deadline: first silence (hours) at which interest falls to ``threshold``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return first_crossing(rate, edges_h, horizon_h, threshold)


def half_life(rate: npt.ArrayLike, edges_h: npt.ArrayLike, horizon_h: float) -> Array:
    """Silence (hours) after which interest is half its value right after the last event."""
    lam = np.atleast_2d(np.asarray(rate, dtype=np.float64))
    peak = interest(lam, edges_h, horizon_h, np.zeros(lam.shape[0]))
    return first_crossing(lam, edges_h, horizon_h, peak / 2.0)


def peak_interest(rate: npt.ArrayLike, edges_h: npt.ArrayLike, horizon_h: float) -> Array:
    """Peak interest: probability of another event within ``H`` right after the last one."""
    lam = np.atleast_2d(np.asarray(rate, dtype=np.float64))
    return interest(lam, edges_h, horizon_h, np.zeros(lam.shape[0]))


def inverse_cumulative_hazard(
    rate: npt.ArrayLike, edges_h: npt.ArrayLike, level: npt.ArrayLike
) -> Array:
    """The ``t`` with ``L(t) = level`` ([B]); ``inf`` where the hazard never gets there.

    With ``level = L(d) - log(u)``, ``u ~ U(0, 1)``, this samples the time of the next event
    given silence ``d`` (inverse-CDF sampling from the survival curve).
    """
    edges = check_edges(edges_h)
    lam = np.atleast_2d(np.asarray(rate, dtype=np.float64))
    lvl = np.asarray(level, dtype=np.float64)
    widths = np.diff(edges)
    at_edge = np.concatenate(
        [np.zeros((lam.shape[0], 1)), np.cumsum(lam[:, :-1] * widths, axis=1)], axis=1
    )
    j = (at_edge <= lvl[:, None]).sum(axis=1) - 1
    rows = np.arange(lam.shape[0])
    lam_j = lam[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = edges[j] + (lvl - at_edge[rows, j]) / lam_j
    out: Array = np.where(lam_j > 0, t, np.inf)
    return out
