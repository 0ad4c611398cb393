"""The lapse model's closed forms (decay.btyd) against simulation and against each other."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import integrate

from decay import btyd

P, K, BETA, H = 0.3, 1.7, 5.0, 8.0


def _simulate(
    p: float, k: float, beta: float, d: float, h: float, n: int, seed: int = 0, kappa: float = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Silent for ``d`` after the last event, then what happens in ``(d, d + h]``: returns
    (has any event, count) for the paths that were silent up to ``d``. ``kappa > 0``: each
    path's lapse chance is drawn from Beta(p kappa, (1 - p) kappa)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(k, 1.0 / beta, size=n)
    if kappa > 0:
        p = rng.beta(p * kappa, (1 - p) * kappa, size=n)  # type: ignore[assignment]
    alive = rng.random(n) > p  # lapses right after the last event with probability p
    t = np.zeros(n)
    counts = np.zeros(n)
    silent = np.ones(n, dtype=bool)  # no event in (0, d]
    active = alive.copy()
    for _ in range(200):
        if not active.any():
            break
        t = t + rng.exponential(1.0 / np.maximum(lam, 1e-12))
        hit = active & (t <= d + h)
        silent &= ~(hit & (t <= d))
        counts += hit & (t > d)
        active = hit & (rng.random(n) > p)  # after each event: lapse with probability p
    return counts[silent] > 0, counts[silent]


def test_interest_and_expected_count_match_a_simulation() -> None:
    for d in (0.0, 3.0, 20.0):
        any_, counts = _simulate(P, K, BETA, d, H, 400_000, seed=int(d))
        assert btyd.interest(P, K, BETA, H, d) == pytest.approx(any_.mean(), abs=0.006)
        assert btyd.expected_count(P, K, BETA, H, d) == pytest.approx(counts.mean(), rel=0.03)


def test_beta_heterogeneity_on_the_dropout_changes_the_count_not_the_interest() -> None:
    kappa = 1.5
    for d in (0.0, 6.0):
        any_, counts = _simulate(P, K, BETA, d, H, 400_000, seed=7 + int(d), kappa=kappa)
        assert btyd.interest(P, K, BETA, H, d) == pytest.approx(any_.mean(), abs=0.006)
        got = btyd.expected_count(P, K, BETA, H, d, kappa=kappa)
        assert got == pytest.approx(counts.mean(), rel=0.03)
        fixed = btyd.expected_count(P, K, BETA, H, d)
        assert got > fixed * 1.05  # survivors of many chances lapse less: more events
    # a very concentrated Beta is the fixed p
    near = btyd.expected_count(P, K, BETA, H, 2.0, kappa=1e6)
    assert near == pytest.approx(btyd.expected_count(P, K, BETA, H, 2.0), rel=1e-4)


def test_interest_is_one_minus_the_survival_ratio_and_decays() -> None:
    d = np.array([0.0, 1.0, 5.0, 30.0, 300.0])
    s = btyd.survival(P, K, BETA, d + H) / btyd.survival(P, K, BETA, d)
    np.testing.assert_allclose(btyd.interest(P, K, BETA, H, d), 1.0 - s, rtol=1e-12)
    i = btyd.interest(P, K, BETA, H, np.linspace(0, 500, 200))
    assert np.all(np.diff(i) < 0) and i[-1] < 0.01
    # the user may be gone: S(inf) = p, and P(alive) falls with the silence
    assert btyd.survival(P, K, BETA, 1e12) == pytest.approx(P, abs=1e-6)
    alive = btyd.p_alive(P, K, BETA, d)
    assert alive[0] == pytest.approx(1 - P) and np.all(np.diff(alive) < 0)


def test_deadline_and_half_life_are_roots_of_the_interest() -> None:
    p = np.array([0.05, 0.3, 0.6])
    k = np.array([0.5, 2.0, 4.0])
    b = np.array([2.0, 5.0, 40.0])
    dl = btyd.deadline(p, k, b, H, 0.2)
    np.testing.assert_allclose(btyd.interest(p, k, b, H, dl), 0.2, rtol=1e-6)
    hl = btyd.half_life(p, k, b, H)
    peak = btyd.interest(p, k, b, H, 0.0)
    np.testing.assert_allclose(btyd.interest(p, k, b, H, hl), peak / 2, rtol=1e-6)
    # below the threshold from the start: the deadline is now
    assert btyd.deadline(0.99, 0.1, 100.0, 1.0, 0.5)[()] == 0.0
    with pytest.raises(ValueError):
        btyd.deadline(p, k, b, H, 1.5)


@pytest.mark.parametrize("kappa", [None, 0.8, 20.0])
def test_window_likelihood_is_a_distribution_over_outcomes(kappa: float | None) -> None:
    """P(n = 0) + sum_n integral over the last event time of the density (the first n - 1
    event times integrated out: tau^(n-1) / (n-1)!) must be 1."""
    d, w = 4.0, 10.0
    total = math.exp(float(btyd.window_loglik(P, K, BETA, d, 0, 0.0, w, kappa)))
    for n in range(1, 80):

        def dens(tau: float, n: int = n) -> float:
            ll = float(btyd.window_loglik(P, K, BETA, d, n, tau, w, kappa))
            return math.exp(ll) * tau ** (n - 1) / math.factorial(n - 1)

        total += integrate.quad(dens, 0.0, w)[0]
    assert total == pytest.approx(1.0, abs=1e-6)


def test_window_likelihood_counts_match_a_simulation() -> None:
    """P(n events in the window | silent for d): the likelihood against simulated paths."""
    d, w = 3.0, 6.0
    _, counts = _simulate(P, K, BETA, d, w, 400_000, seed=3, kappa=2.0)
    for n in (1, 2, 4):

        def dens(tau: float, n: int = n) -> float:
            ll = float(btyd.window_loglik(P, K, BETA, d, n, tau, w, 2.0))
            return math.exp(ll) * tau ** (n - 1) / math.factorial(n - 1)

        assert integrate.quad(dens, 0.0, w)[0] == pytest.approx((counts == n).mean(), abs=0.004)


def test_window_likelihood_of_no_event_is_the_survival_ratio() -> None:
    d, w = 2.5, 9.0
    want = btyd.survival(P, K, BETA, d + w) / btyd.survival(P, K, BETA, d)
    assert math.exp(float(btyd.window_loglik(P, K, BETA, d, 0, 0.0, w))) == pytest.approx(want)


def _bisect_80(curve: Callable[[np.ndarray], np.ndarray], level: np.ndarray) -> np.ndarray:
    """The root search as it was: bracket doubling, then 80 bisections on log1p(d)."""
    lo, hi = np.zeros(level.shape), np.ones(level.shape)
    for _ in range(60):
        above = curve(np.expm1(hi)) > level
        if not above.any():
            break
        hi = np.where(above, hi * 2.0, hi)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = curve(np.expm1(mid)) > level
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(curve(np.zeros(level.shape)) <= level, 0.0, np.expm1(hi))


def test_the_root_search_is_within_its_tolerance_of_80_bisections() -> None:
    """Heads over the range a lapse model gives (and wider), in weeks; deadlines are whole
    ms, so the worker asks for 1 us of silence: every root within it of the old search's,
    still on the low side of the level, in far fewer evaluations."""
    rng = np.random.default_rng(5)
    n = 4000
    p, k = rng.uniform(0.01, 0.9, n), np.exp(rng.uniform(-2.0, 5.0, n))
    b, h, week_s = np.exp(rng.uniform(-1.0, 4.0, n)), 10.0, 168 * 3600.0
    curve = btyd.interest_curve(p, k, b, h)
    peak = curve(np.zeros(n))
    for level in (peak / 2.0, np.full(n, 0.125)):
        want = _bisect_80(curve, level)
        calls: list[int] = []

        def counted(d: np.ndarray, calls: list[int] = calls) -> np.ndarray:
            calls.append(1)
            return curve(d)

        got = btyd.decreasing_root(counted, level, (n,), tol=1e-6 / week_s, rtol=0.0)
        assert np.abs(got - want).max() * week_s < 1e-6
        assert (curve(got) <= level).all()
        assert len(calls) < 30  # bisection alone: 80 after the bracket
        # narrowed to the slow heads (an InterestCurve) or not (any callable): both within it
        plain = btyd.decreasing_root(lambda d: curve(d), level, (n,), tol=1e-6 / week_s, rtol=0.0)
        assert np.abs(got - plain).max() * week_s < 1e-6
        # the default: relative 1e-12
        np.testing.assert_allclose(btyd.decreasing_root(curve, level, (n,)), want, rtol=1e-12)


def test_a_root_does_not_depend_on_the_other_heads_of_its_batch() -> None:
    """Each head's root alone equals its root among thousands (bit for bit), with the
    narrowing to the slow heads or without it: a lapse deadline must not depend on where
    the batch boundaries fell."""
    rng = np.random.default_rng(0)
    n, week_s = 3000, 168 * 3600.0
    p, k = rng.uniform(0.01, 0.9, n), np.exp(rng.uniform(-2.0, 5.0, n))
    b = np.exp(rng.uniform(-1.0, 4.0, n))
    level = np.full(n, 0.3)
    whole = btyd.decreasing_root(
        btyd.interest_curve(p, k, b, 1.0), level, (n,), tol=1e-6 / week_s, rtol=0.0
    )
    for i in rng.choice(n, 60, replace=False).tolist():
        for pick in ([i], [i, (i + 1) % n, (i + 2) % n]):
            alone = btyd.decreasing_root(
                btyd.interest_curve(p[pick], k[pick], b[pick], 1.0),
                level[pick],
                (len(pick),),
                tol=1e-6 / week_s,
                rtol=0.0,
            )
            assert alone[0] == whole[i]


def test_the_root_search_edges() -> None:
    curve = btyd.interest_curve(np.array([0.3, 0.3, 0.3]), 2.0, 5.0, 8.0)
    got = btyd.decreasing_root(curve, np.array([0.0, 0.9, 0.2]), (3,))
    assert got[0] == math.inf and got[1] == 0.0 and 0.0 < got[2] < math.inf
    # a step curve: no false position helps, the midpoints still end within the steps
    got = btyd.decreasing_root(lambda d: np.where(d < 3.0, 1.0, 0.0), np.array([0.5]), (1,))
    assert got[0] == pytest.approx(3.0, rel=1e-12)


def test_interest_curve_is_interest() -> None:
    d = np.array([0.0, 0.5, 3.0, 40.0, 1e6])
    want = btyd.p_alive(P, K, BETA, d) * -np.expm1(-K * np.log1p(H / (BETA + d)))
    np.testing.assert_allclose(btyd.interest_curve(P, K, BETA, H)(d), want, rtol=1e-13)
    assert isinstance(btyd.interest(P, K, BETA, H, 2.0), float)
