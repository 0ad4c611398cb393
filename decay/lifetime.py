"""The lapse model with Pareto/NBD's dropout: an exponential lifetime instead of a lapse
chance per event. Pure numpy, vectorised; times in the model's unit.

Seen right after the last event the user is active; they stay so for an ``Exp(mu)`` time
(memoryless: the same from any point on), and while active, events come as a Poisson process
with rate ``Gamma(k, beta)`` (``k = k0 + x``, ``beta = b0 + t_x``, as in :mod:`decay.btyd`).

With ``T1`` the first event's time (``Lomax(k, beta)``: ``P(T1 > t) = (beta / (beta + t))^k``),
no event within ``t`` means the user lapsed before ``T1`` or ``T1 > t``:

    S(t) = 1 - J(k, beta, mu, t),   J = E[exp(-mu T1); T1 <= t]

``J`` is a 1-d integral, computed by Gauss-Legendre quadrature on ``log t`` (the integrand
has two scales, ``1/mu`` and ``beta / k``; a log grid resolves both). ``S(inf) =
1 - E[exp(-mu T1)] > 0``: the user may be gone. Then, after a silence ``d``:

    P(alive | d) = exp(-mu d) (beta / (beta + d))^k / S(d)
    I(d)         = 1 - S(d + H) / S(d)
    E[N(d, d+H)] = P(alive | d) k / (beta + d) (1 - exp(-mu H)) / mu
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from decay.btyd import decreasing_root

Array = npt.NDArray[np.float64]
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


def _f(a: npt.ArrayLike) -> Array:
    return np.asarray(a, dtype=np.float64)


def lapse_before_first(
    k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, t: npt.ArrayLike
) -> Array:
    """``J = E[exp(-mu T1); T1 <= t]`` with ``T1 ~ Lomax(k, beta)``."""
    k_, b_, m_, t_ = np.broadcast_arrays(_f(k), _f(beta), _f(mu), np.maximum(_f(t), 0.0))
    # below r0 the factor exp(-mu r) is 1 to within 1e-6: the Lomax CDF there is exact enough
    r0 = 1e-6 * np.minimum(np.minimum(b_ / np.maximum(k_, 1e-12), 1.0 / m_), np.maximum(t_, 1e-300))
    head = -np.expm1(-k_ * np.log1p(np.minimum(r0, t_) / b_))
    lo, hi = np.log(r0), np.log(np.maximum(t_, r0))
    half = (hi - lo)[..., None] / 2.0
    y = (lo[..., None] + hi[..., None]) / 2.0 + half * _NODES
    r = np.exp(y)
    k2, b2, m2 = k_[..., None], b_[..., None], m_[..., None]
    # e^(-mu r) * k / b (1 + r / b)^-(k + 1) * r  (dr = r dy)
    log_g = -m2 * r + np.log(k2 / b2) - (k2 + 1.0) * np.log1p(r / b2) + y
    out: Array = head + (np.exp(log_g) * _WEIGHTS * half).sum(axis=-1)
    return out


def survival(k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, t: npt.ArrayLike) -> Array:
    """``S(t)``: no event within ``t`` after the last one."""
    out: Array = 1.0 - lapse_before_first(k, beta, mu, t)
    return out


def p_alive(k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, d: npt.ArrayLike) -> Array:
    d_ = np.maximum(_f(d), 0.0)
    log_num = -_f(mu) * d_ - _f(k) * np.log1p(d_ / _f(beta))
    out: Array = np.exp(log_num) / survival(k, beta, mu, d_)
    return np.minimum(out, 1.0)


def interest(
    k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, horizon: float, d: npt.ArrayLike
) -> Array:
    d_ = np.maximum(_f(d), 0.0)
    out: Array = 1.0 - survival(k, beta, mu, d_ + horizon) / survival(k, beta, mu, d_)
    return np.clip(out, 0.0, 1.0)


def expected_count(
    k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, horizon: float, d: npt.ArrayLike
) -> Array:
    d_ = np.maximum(_f(d), 0.0)
    m_ = _f(mu)
    out: Array = p_alive(k, beta, mu, d_) * _f(k) / (_f(beta) + d_) * -np.expm1(-m_ * horizon) / m_
    return out


def deadline(
    k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, horizon: float, threshold: float
) -> Array:
    """The silence at which interest falls to ``threshold`` (``I`` decreases to 0)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    k_, b_, m_ = np.broadcast_arrays(_f(k), _f(beta), _f(mu))
    return decreasing_root(lambda d: interest(k_, b_, m_, horizon, d), threshold, k_.shape)


def half_life(k: npt.ArrayLike, beta: npt.ArrayLike, mu: npt.ArrayLike, horizon: float) -> Array:
    k_, b_, m_ = np.broadcast_arrays(_f(k), _f(beta), _f(mu))
    peak = interest(k_, b_, m_, horizon, np.zeros(k_.shape))
    return decreasing_root(lambda d: interest(k_, b_, m_, horizon, d), peak / 2.0, k_.shape)


def window_loglik(
    k: npt.ArrayLike,
    beta: npt.ArrayLike,
    mu: npt.ArrayLike,
    d: npt.ArrayLike,
    n: npt.ArrayLike,
    tau: npt.ArrayLike,
    w: npt.ArrayLike,
) -> Array:
    """Log-likelihood of ``n`` events in ``(d, d + w]`` after the last event, the last of them
    ``tau`` after the window's start, given the silence ``d``:

    ``n = 0``: ``S(d + w) / S(d)``;
    ``n >= 1``: ``G(k+n)/G(k) b^k (b')^-(k+n) exp(-mu (d + tau)) S'(w - tau) / S(d)`` with
    ``b' = b + d + tau`` and ``S'`` the survival of ``(k + n, b', mu)`` (alive through the
    n-th event, then no event until the end). (Training only: needs scipy.)
    """
    from scipy.special import gammaln

    k_, b_, m_, d_, n_, tau_, w_ = (_f(v) for v in (k, beta, mu, d, n, tau, w))
    log_s_d = np.log(survival(k_, b_, m_, d_))
    none = np.log(survival(k_, b_, m_, d_ + w_))
    b2 = b_ + d_ + tau_
    kn = k_ + n_
    some = (
        gammaln(kn)
        - gammaln(k_)
        + k_ * np.log(b_)
        - kn * np.log(b2)
        - m_ * (d_ + tau_)
        + np.log(survival(kn, b2, m_, np.maximum(w_ - tau_, 0.0)))
    )
    out: Array = np.where(n_ > 0, some, none) - log_s_d
    return out
