"""The exponential-lifetime variant (decay.lifetime) against quadrature and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from decay import lifetime

K, BETA, MU, H = 1.7, 5.0, 0.05, 8.0


@pytest.mark.parametrize(
    ("k", "beta", "mu", "t"),
    [(1.7, 5.0, 0.05, 8.0), (0.2, 80.0, 0.5, 40.0), (25.0, 3.0, 0.01, 200.0), (0.5, 1.0, 3.0, 0.3)],
)
def test_lapse_before_first_event_matches_adaptive_quadrature(
    k: float, beta: float, mu: float, t: float
) -> None:
    def g(r: float) -> float:
        return math.exp(-mu * r) * k / beta * (1 + r / beta) ** (-(k + 1))

    want = integrate.quad(g, 0.0, t, limit=200, points=[min(t, beta / k), min(t, 1 / mu)])[0]
    assert lifetime.lapse_before_first(k, beta, mu, t) == pytest.approx(want, rel=1e-6, abs=1e-9)


def _simulate(d: float, h: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(K, 1.0 / BETA, size=n)
    death = rng.exponential(1.0 / MU, size=n)
    t = np.zeros(n)
    silent = np.ones(n, dtype=bool)
    counts = np.zeros(n)
    active = np.ones(n, dtype=bool)
    for _ in range(300):
        if not active.any():
            break
        t = t + rng.exponential(1.0 / lam)
        hit = active & (t <= np.minimum(death, d + h))
        silent &= ~(hit & (t <= d))
        counts += hit & (t > d)
        active = hit
    return counts[silent] > 0, counts[silent]


def test_interest_and_expected_count_match_a_simulation() -> None:
    for d in (0.0, 10.0):
        any_, counts = _simulate(d, H, 300_000, seed=int(d) + 1)
        assert lifetime.interest(K, BETA, MU, H, d) == pytest.approx(any_.mean(), abs=0.006)
        assert lifetime.expected_count(K, BETA, MU, H, d) == pytest.approx(counts.mean(), rel=0.03)


def test_the_user_may_be_gone_and_interest_decays_to_a_deadline() -> None:
    s_inf = lifetime.survival(K, BETA, MU, 1e9)
    assert 0.0 < s_inf < 1.0
    d = np.linspace(0, 400, 100)
    i = lifetime.interest(K, BETA, MU, H, d)
    assert np.all(np.diff(i) < 0) and i[-1] < 0.01
    assert np.all(np.diff(lifetime.p_alive(K, BETA, MU, d)) < 0)
    dl = lifetime.deadline(K, BETA, MU, H, 0.2)
    assert lifetime.interest(K, BETA, MU, H, dl) == pytest.approx(0.2, rel=1e-6)
    hl = lifetime.half_life(K, BETA, MU, H)
    peak = lifetime.interest(K, BETA, MU, H, 0.0)
    assert lifetime.interest(K, BETA, MU, H, hl) == pytest.approx(peak / 2, rel=1e-6)


def test_window_likelihood_is_a_distribution_over_outcomes() -> None:
    d, w = 4.0, 10.0
    total = math.exp(float(lifetime.window_loglik(K, BETA, MU, d, 0, 0.0, w)))
    for n in range(1, 60):

        def dens(tau: float, n: int = n) -> float:
            ll = float(lifetime.window_loglik(K, BETA, MU, d, n, tau, w))
            return math.exp(ll) * tau ** (n - 1) / math.factorial(n - 1)

        total += integrate.quad(dens, 0.0, w)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
