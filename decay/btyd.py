"""Buy-till-you-die maths of the neural lapse model, shared by training and serving.

Pure numpy, vectorised over a batch. Times are in the model's time unit (weeks for CDNOW).

Seen right after a user's last event (``x`` repeat events before it, ``t_x`` from the first
event to it), the encoder gives three numbers per user: ``k0`` and ``b0`` (the gamma prior of
the event rate) and ``p`` (the chance that the user lapses for good right after an event).
From there the process is the modified BG/NBD one (dropout is possible after every event, the
first one included), with BG/NBD's posterior structure:

- right after the last event the user is gone with probability ``p``;
- if not, events come as a Poisson process whose rate is ``Gamma(k, beta)`` with
  ``k = k0 + x`` and ``beta = b0 + t_x`` (shape, rate), and after each event the user lapses
  with probability ``p`` again.

So, after a silence ``d`` since the last event (``T = t_x + d``):

    S(t)         = P(no event within t of the last one) = p + (1 - p) (beta / (beta + t))^k
    P(alive | d) = (1 - p) (beta / (beta + d))^k / S(d)
    I(d)         = P(event within H | silent for d) = 1 - S(d + H) / S(d)
    E[N(d, d+H)] = P(alive | d) (1 - ((beta + d) / (beta + d + p H))^k) / p

``S(inf) = p``: a user may be gone for good, and the longer the silence the likelier it is.
``I`` falls monotonically in ``d`` (both factors of ``P(alive) (1 - ((b+d)/(b+d+H))^k)`` do),
so the dormancy deadline and the half-life are 1-d roots, found by bisection.

:func:`window_loglik` is the exact censored likelihood of what happens in a landmark window
``(T, T + W]``: ``n`` events, the last one ``tau`` after ``T``, given the silence up to ``T``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _f(a: npt.ArrayLike) -> Array:
    return np.asarray(a, dtype=np.float64)


def survival(p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, t: npt.ArrayLike) -> Array:
    """``S(t)``: no event within ``t`` after the last one (``t`` broadcasts, e.g. [B, K])."""
    p_, k_, b_, t_ = _f(p), _f(k), _f(beta), _f(t)
    out: Array = p_ + (1.0 - p_) * np.exp(-k_ * np.log1p(np.maximum(t_, 0.0) / b_))
    return out


def p_alive(p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, d: npt.ArrayLike) -> Array:
    """P(still active) after a silence ``d`` since the last event."""
    p_, k_, b_, d_ = _f(p), _f(k), _f(beta), _f(d)
    # 1 / (1 + p / (1 - p) * ((b + d) / b)^k), in logs
    z = np.log(p_) - np.log1p(-p_) + k_ * np.log1p(np.maximum(d_, 0.0) / b_)
    out: Array = 1.0 / (1.0 + np.exp(np.minimum(z, 700.0)))
    return out


def interest(
    p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, horizon: float, d: npt.ArrayLike
) -> Array:
    """``I(d) = 1 - S(d + H) / S(d)``: P(an event within ``horizon`` | silent for ``d``)."""
    return interest_curve(p, k, beta, horizon)(d)


def interest_curve(
    p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, horizon: float
) -> InterestCurve:
    """``d -> interest(p, k, beta, horizon, d)``: see :class:`InterestCurve`."""
    return InterestCurve(p, k, beta, horizon)


class InterestCurve:
    """``d -> interest(p, k, beta, horizon, d)``, with what does not depend on ``d`` worked
    out once (a root search evaluates it a dozen times on the same heads); ``take``: the
    curve of some of the heads, for a search that narrows down to the slow ones."""

    def __init__(
        self, p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, horizon: float
    ) -> None:
        p_ = _f(p)
        self.k, self.beta, self.horizon = _f(k), _f(beta), horizon
        self.logit = np.log(p_) - np.log1p(-p_)

    def __call__(self, d: npt.ArrayLike) -> Array:
        d_ = np.maximum(_f(d), 0.0)
        k_, b_ = self.k, self.beta
        # 1 / P(alive | d) = 1 + p / (1 - p) ((b + d) / b)^k, in logs, as p_alive
        z = np.asarray(
            k_ * np.log1p(d_ / b_) + self.logit
        )  # an array: the steps below are in place
        np.minimum(z, 700.0, out=z)
        np.exp(z, out=z)
        z += 1.0
        # P(alive | d) times P(an event within H | alive) = 1 - ((b + d) / (b + d + H))^k
        out: Array = np.expm1(-k_ * np.log1p(self.horizon / (b_ + d_))) / -z
        return out

    def take(self, idx: npt.NDArray[np.intp], size: int) -> InterestCurve:
        """The curve of the heads at ``idx`` of ``size`` heads (1-d, broadcast to it)."""
        sub = InterestCurve.__new__(InterestCurve)
        sub.horizon = self.horizon
        sub.k, sub.beta, sub.logit = (
            np.broadcast_to(v, (size,))[idx] for v in (self.k, self.beta, self.logit)
        )
        return sub


def expected_count(
    p: npt.ArrayLike,
    k: npt.ArrayLike,
    beta: npt.ArrayLike,
    horizon: float,
    d: npt.ArrayLike,
    kappa: npt.ArrayLike | None = None,
) -> Array:
    """Expected events in ``(d, d + horizon]`` after the last one, given the silence ``d``.

    ``kappa``: the lapse chance is ``Beta(p kappa, (1 - p) kappa)`` (heterogeneity on the
    dropout, as BG/NBD's); ``None``: fixed ``p``. Given alive after a silence, ``p`` is then
    ``Beta(a, b + 1)`` (it survived the chance at the last event); the mean over it is a 1-d
    Gauss-Legendre integral over its quantiles (training side only: needs scipy).
    """
    p_, k_, b_ = _f(p), _f(k), _f(beta)
    d_ = np.maximum(_f(d), 0.0)
    bd = b_ + d_
    alive = p_alive(p_, k_, b_, d_)
    if kappa is None:
        # E[(1 - exp(-lambda p H)) / p] with lambda ~ Gamma(k, b + d)
        out: Array = alive * -np.expm1(-k_ * np.log1p(p_ * horizon / bd)) / p_
        return out
    from scipy.special import betaincinv

    a = p_ * _f(kappa)
    b1 = (1.0 - p_) * _f(kappa) + 1.0
    nodes, weights = np.polynomial.legendre.leggauss(64)
    u = (nodes + 1.0) / 2.0  # [Q] quantile levels in (0, 1)
    shape = np.broadcast_shapes(a.shape, b1.shape, k_.shape, bd.shape)
    a, b1, k2, bd2 = (np.broadcast_to(t, shape)[..., None] for t in (a, b1, k_, bd))
    q = np.clip(betaincinv(a, b1, u), 1e-300, 1.0)  # p at each quantile of Beta(a, b + 1)
    f = -np.expm1(-k2 * np.log1p(q * horizon / bd2)) / q
    out = alive * (f * (weights / 2.0)).sum(axis=-1)
    return out


def decreasing_root(
    curve: Callable[[Array], Array],
    level: npt.ArrayLike,
    shape: tuple[int, ...],
    tol: float = 0.0,
    rtol: float = 1e-12,
    steps: int = 100,
) -> Array:
    """First ``d >= 0`` with ``curve(d) <= level`` for a continuous curve that decreases to 0
    (elementwise over ``shape``); 0 if already below at ``d = 0``, ``inf`` where
    ``level <= 0``.

    The result is the upper end of a bracket of the crossing (so ``curve(d) <= level``) no
    wider than ``tol`` (in ``d``'s unit) or ``rtol * d``, whichever is wider: a caller that
    rounds the root (deadlines in whole ms) passes what it needs.
    On ``x = log1p(d)``: the bracket doubles until ``curve(expm1(hi)) <= level``, then
    narrows by false position with the Illinois rule, each point moved a quarter of the
    tolerance past where false position puts it, away from the end that moved last, so
    that both ends close in (most heads within 8 to 11 evaluations, the bracket's
    included, where bisection took 80 after it; the slowest a few more). A point
    outside the bracket, and every point after ``steps // 2``, is the midpoint instead, so a
    badly behaved curve still ends within ``steps`` evaluations. An :class:`InterestCurve`
    over 1-d heads is narrowed to the heads still searching once they are half or fewer."""
    lvl = np.broadcast_to(_f(level), shape)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # d = inf: a bracket end
        at_zero = curve(np.zeros(shape)) - lvl
        todo = (at_zero > 0.0) & (lvl > 0.0)
        lo, hi, f_lo, f_hi = _bracket(curve, lvl, todo, at_zero)
        bracketed = f_hi <= 0.0
        # the tolerance on x, from the bracket: d's width <= x's times e^hi, the crossing is
        # above lo; at least 4 ulps of x; none where the search is over (not needed, or no
        # bracket found)
        d_lo, d_hi = np.expm1(lo), np.expm1(hi)
        enough = np.maximum(np.maximum(tol, rtol * d_lo) / (d_hi + 1.0), 8e-16 * hi)
        enough = np.where(todo & bracketed, enough, np.inf)
        hi = _narrow(curve, lvl, (lo, hi, f_lo, f_hi), enough, steps)
        out: Array = np.where(todo, np.where(bracketed, np.expm1(hi), np.inf), 0.0)
    return np.where(lvl <= 0.0, np.inf, out)


def _bracket(
    curve: Callable[[Array], Array], lvl: Array, todo: npt.NDArray[np.bool_], at_zero: Array
) -> tuple[Array, Array, Array, Array]:
    """``lo, hi`` on ``x = log1p(d)`` and ``curve - level`` at both: hi doubles from 1 until
    ``curve(expm1(hi)) <= level`` (at most e^(2^60))."""
    lo, hi = np.zeros(lvl.shape), np.ones(lvl.shape)
    f_lo, f_hi = at_zero, curve(np.expm1(hi)) - lvl
    for _ in range(60):
        above = todo & (f_hi > 0.0)
        if not above.any():
            break
        lo, f_lo = np.where(above, hi, lo), np.where(above, f_hi, f_lo)
        hi = np.where(above, hi * 2.0, hi)
        f_hi = np.where(above, curve(np.expm1(hi)) - lvl, f_hi)
    return lo, hi, f_lo, f_hi


def _narrow(
    curve: Callable[[Array], Array],
    lvl: Array,
    bracket: tuple[Array, Array, Array, Array],
    enough: Array,
    steps: int,
) -> Array:
    """The bracket's upper end once no wider than ``enough`` (see decreasing_root)."""
    lo, hi, f_lo, f_hi = bracket
    moved = np.zeros(lvl.shape)  # the end that moved last: 1 lo, -1 hi
    result, pos = hi, None  # pos: where in result the heads still in play are (None: all)
    for step in range(steps):
        width = hi - lo
        live = width > enough
        if not live.any():
            break
        if _few_left(curve, live):  # the rest on the heads still searching
            keep = np.nonzero(live)[0]
            if pos is None:
                result, pos = hi.copy(), keep
            else:
                result[pos] = hi
                pos = pos[keep]
            curve = curve.take(keep, live.size)
            lo, hi, f_lo, f_hi, moved, enough, lvl, width = (
                v[keep] for v in (lo, hi, f_lo, f_hi, moved, enough, lvl, width)
            )
            live = live[keep]
        quarter = 0.25 * enough
        if step >= steps // 2:
            x = lo + 0.5 * width
        else:  # false position (f_lo > 0 >= f_hi), a quarter tolerance on past the crossing
            x = hi - f_hi * width / (f_hi - f_lo) + moved * quarter
            # inside the bracket by a quarter tolerance (fmax/fmin: a nan becomes the bound)
            x = np.fmin(np.fmax(x, lo + quarter), hi - quarter)
        f_x = curve(np.expm1(x)) - lvl
        # Only the heads still searching move: a head's root must not depend on which
        # other heads share its batch (and so on where batch boundaries fell).
        up, down = live & (f_x > 0.0), live & ~(f_x > 0.0)  # the crossing above x / not
        # Illinois: an end that stays put twice running has its value halved
        f_lo = np.where(up, f_x, np.where(down & (moved < 0.0), 0.5 * f_lo, f_lo))
        f_hi = np.where(down, f_x, np.where(up & (moved > 0.0), 0.5 * f_hi, f_hi))
        lo, hi = np.where(up, x, lo), np.where(down, x, hi)
        moved = np.where(up, 1.0, np.where(down, -1.0, moved))
    if pos is None:
        return hi
    result[pos] = hi
    return result


def _few_left(
    curve: Callable[[Array], Array], live: npt.NDArray[np.bool_]
) -> TypeGuard[InterestCurve]:
    """Whether to narrow the search to the heads still searching: half or fewer of
    enough of them, on a curve that can be narrowed."""
    return (
        isinstance(curve, InterestCurve)
        and live.ndim == 1
        and live.size >= 64
        and 2 * int(np.count_nonzero(live)) <= live.size
    )


def first_crossing(
    p: npt.ArrayLike,
    k: npt.ArrayLike,
    beta: npt.ArrayLike,
    horizon: float,
    level: npt.ArrayLike,
) -> Array:
    """First silence ``d >= 0`` with ``I(d) <= level`` ([B]); 0 if already below at ``d = 0``.

    ``I`` is continuous and strictly decreasing to 0 (for ``p > 0``): a 1-d root.
    """
    if horizon <= 0:
        raise ValueError("horizon must be positive")
    p_, k_, b_ = np.broadcast_arrays(_f(p), _f(k), _f(beta))
    return decreasing_root(lambda d: interest(p_, k_, b_, horizon, d), level, p_.shape)


def deadline(
    p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, horizon: float, threshold: float
) -> Array:
    """Dormancy deadline: the silence at which interest falls to ``threshold``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return first_crossing(p, k, beta, horizon, threshold)


def half_life(p: npt.ArrayLike, k: npt.ArrayLike, beta: npt.ArrayLike, horizon: float) -> Array:
    """Silence after which interest is half its value right after the last event."""
    peak = interest(p, k, beta, horizon, 0.0)
    return first_crossing(p, k, beta, horizon, peak / 2.0)


def window_loglik(
    p: npt.ArrayLike,
    k: npt.ArrayLike,
    beta: npt.ArrayLike,
    d: npt.ArrayLike,
    n: npt.ArrayLike,
    tau: npt.ArrayLike,
    w: npt.ArrayLike,
    kappa: npt.ArrayLike | None = None,
) -> Array:
    """Log-likelihood of ``n`` events in the window ``(d, d + w]`` after the last event, the
    last of them ``tau`` after the window's start, given no event during the silence ``d``.

    With ``S`` as above and ``q = 1 - p``:
    ``n = 0``: ``S(d + w) / S(d)``;
    ``n >= 1``: ``G(k+n)/G(k) b^k [E q^(n+1) (b+d+w)^-(k+n) + E p q^n (b+d+tau)^-(k+n)] / S(d)``
    (alive after the last event and after the first n - 1 window events; after the n-th the
    user either stayed and was silent until the end, or lapsed). ``E`` is over the lapse
    chance: ``p`` itself, or ``Beta(p kappa, (1 - p) kappa)``. (Training only: needs scipy.)
    """
    from scipy.special import betaln, gammaln

    p_, k_, b_, d_, n_, tau_, w_ = (_f(v) for v in (p, k, beta, d, n, tau, w))
    log_s_d = np.log(survival(p_, k_, b_, d_))
    if kappa is None:
        log_e1 = (n_ + 1.0) * np.log1p(-p_)
        log_e2 = np.log(p_) + n_ * np.log1p(-p_)
    else:
        a, b = p_ * _f(kappa), (1.0 - p_) * _f(kappa)
        log_e1 = betaln(a, b + n_ + 1.0) - betaln(a, b)
        log_e2 = betaln(a + 1.0, b + n_) - betaln(a, b)
    kn = k_ + n_
    some = (
        gammaln(kn)
        - gammaln(k_)
        + k_ * np.log(b_)
        + np.logaddexp(log_e1 - kn * np.log(b_ + d_ + w_), log_e2 - kn * np.log(b_ + d_ + tau_))
    )
    none = np.log(survival(p_, k_, b_, d_ + w_))
    out: Array = np.where(n_ > 0, some, none) - log_s_d
    return out
