"""The decay maths with explicit numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decay import survival as sv

EDGES = np.array([0.0, 24.0, 72.0])


def test_constant_hazard_gives_constant_interest_and_no_deadline() -> None:
    rate = np.full((1, 3), 0.01)  # one event per 100 hours
    silent = np.array([[0.0, 10.0, 50.0, 500.0]])
    got = sv.interest(rate, EDGES, 24.0, silent)
    np.testing.assert_allclose(got, 1 - math.exp(-0.24), rtol=1e-12)
    assert sv.deadline(rate, EDGES, 24.0, 0.1)[0] == math.inf
    assert sv.half_life(rate, EDGES, 24.0)[0] == math.inf
    # below the threshold from the start: the deadline is immediate
    assert sv.deadline(rate, EDGES, 24.0, 0.5)[0] == 0.0


def test_cumulative_hazard_and_survival_by_hand() -> None:
    rate = np.array([[0.1, 0.01, 0.001]])
    t = np.array([[0.0, 12.0, 24.0, 48.0, 72.0, 172.0]])
    want = [0.0, 1.2, 2.4, 2.64, 2.88, 2.98]
    np.testing.assert_allclose(sv.cumulative_hazard(rate, EDGES, t)[0], want, rtol=1e-12)
    np.testing.assert_allclose(sv.survival(rate, EDGES, t)[0], np.exp(-np.array(want)))


def test_decreasing_hazard_gives_decaying_interest_and_exact_deadline() -> None:
    # busy first day, quiet afterwards: the survival curve has a long tail
    rate = np.array([[0.1, 0.01, 0.001]])
    h = 24.0
    d = np.linspace(0, 200, 401)[None, :]
    curve = sv.interest(rate, EDGES, h, d)[0]
    assert np.all(np.diff(curve) <= 1e-15)
    assert curve[0] == pytest.approx(1 - math.exp(-2.4))
    assert curve[-1] == pytest.approx(1 - math.exp(-0.024))
    theta = 0.5
    dl = sv.deadline(rate, EDGES, h, theta)[0]
    # g(d) = 0.1*(24-d) + 0.01*d for d in [0, 24]; I = theta where g = log(2)
    want = (2.4 - math.log(2.0)) / 0.09
    assert dl == pytest.approx(want, rel=1e-12)
    assert sv.interest(rate, EDGES, h, np.array([dl]))[0] == pytest.approx(theta, rel=1e-12)
    # theta = 0.2 is crossed on [48, 72]: g(d) = 0.01*(72-d) + 0.001*(d-48) there
    want2 = (0.672 + math.log(0.8)) / 0.009
    assert sv.deadline(rate, EDGES, h, 0.2)[0] == pytest.approx(want2, rel=1e-12)


def test_half_life_is_where_interest_halves() -> None:
    rate = np.array([[0.1, 0.01, 0.001], [0.05, 0.02, 0.005]])
    hl = sv.half_life(rate, EDGES, 24.0)
    peak = sv.peak_interest(rate, EDGES, 24.0)
    at = sv.interest(rate, EDGES, 24.0, hl)
    np.testing.assert_allclose(at, peak / 2, rtol=1e-12)
    assert np.all(hl > 0) and np.all(np.isfinite(hl))


def test_first_crossing_matches_a_dense_scan_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    edges = np.array([0.0, 1.0, 6.0, 24.0, 72.0, 168.0])
    rate = np.exp(rng.normal(-3, 1.5, size=(200, edges.shape[0])))
    levels = rng.uniform(0.01, 0.9, size=200)
    got = sv.first_crossing(rate, edges, 24.0, levels)
    grid = np.linspace(0, 400, 40001)
    curve = sv.interest(rate, edges, 24.0, np.broadcast_to(grid, (200, grid.shape[0])))
    below = curve <= levels[:, None]
    for i in range(200):
        if not below[i].any():
            assert got[i] == math.inf or got[i] > 399.9
        else:
            assert abs(got[i] - grid[np.argmax(below[i])]) <= 0.011


def test_bad_edges_are_refused() -> None:
    with pytest.raises(ValueError):
        sv.check_edges([1.0, 2.0])
    with pytest.raises(ValueError):
        sv.check_edges([0.0, 2.0, 2.0])
    with pytest.raises(ValueError):
        sv.deadline(np.ones((1, 3)), EDGES, 24.0, 1.5)


def test_inverse_cumulative_hazard_round_trips() -> None:
    rate = np.array([[0.1, 0.01, 0.001], [0.0, 0.0, 0.0]])
    t = np.array([30.0, 5.0])
    level = sv.cumulative_hazard(rate, EDGES, t)
    back = sv.inverse_cumulative_hazard(rate, EDGES, level + np.array([0.0, 1.0]))
    assert back[0] == pytest.approx(30.0)
    assert back[1] == math.inf  # zero hazard: the next event never comes
    # sampling: the share of draws within 24 h matches 1 - S(24)
    rng = np.random.default_rng(1)
    lam = np.repeat(rate[:1], 20000, axis=0)
    draws = sv.inverse_cumulative_hazard(lam, EDGES, -np.log(rng.random(20000)))
    assert (draws <= 24.0).mean() == pytest.approx(1 - math.exp(-2.4), abs=0.01)
