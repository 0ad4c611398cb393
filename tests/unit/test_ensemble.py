"""The lapse model's mixture with Pareto/NBD: one weight for the count and P(any), every
metric defined, the first model alone where the second has no finite prediction."""

import numpy as np
import pytest

from training.baselines import Prediction
from training.ensemble import BLEND_WEIGHTS, blend

A = Prediction("A", np.array([0.2, 1.0, 3.0, 0.0]), np.array([0.1, 0.5, 0.9, 0.0]))
B = Prediction("B", np.array([0.4, np.nan, 5.0, 1.0]), np.array([0.3, np.nan, 1.0, 0.6]))


def test_the_mixture_weights_count_and_p_any_alike_and_falls_back_where_b_is_missing() -> None:
    m = blend(A, B, 0.25)
    np.testing.assert_allclose(m.expected, [0.35, 1.0, 4.5, 0.75])
    np.testing.assert_allclose(m.p_any, [0.25, 0.5, 0.975, 0.45])
    assert m.name == "A+B" and m.info == {"of": ["A", "B"], "weight": 0.25, "fallback": 1}
    assert np.all(np.isfinite(m.expected)) and np.all((m.p_any >= 0) & (m.p_any <= 1))
    # a mixture of distributions keeps E[N] >= P(N >= 1) where each part does
    a_ok = A.expected >= A.p_any
    assert np.all((m.expected >= m.p_any)[a_ok & (B.expected >= B.p_any)])


def test_the_ends_are_the_two_models_alone() -> None:
    np.testing.assert_allclose(blend(A, B, 1.0).expected, A.expected)
    np.testing.assert_allclose(blend(A, B, 0.0).p_any, [0.3, 0.5, 1.0, 0.6])
    assert BLEND_WEIGHTS[0] == 0.0 and BLEND_WEIGHTS[-1] == 1.0 and len(BLEND_WEIGHTS) == 11


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_a_weight_outside_zero_one_is_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="weight"):
        blend(A, B, weight)


def test_predictions_of_different_customers_are_refused() -> None:
    short = Prediction("C", np.ones(3), np.ones(3) * 0.5)
    with pytest.raises(ValueError, match="different customers"):
        blend(A, short, 0.5)
