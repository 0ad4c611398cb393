"""A weighted mixture of two models' predictions: the lapse model and Pareto/NBD, its own row.

The mixture ``w A + (1 - w) B`` of two predictive distributions of a customer's holdout
purchases has as expected count the same mixture of the expected counts, as P(at least one)
the same mixture of the P(any)s, and as P(alive) the mixture of the P(alive)s: one weight for
all, so the row is one model's distribution and every metric of the table is defined for it
(counts >= 0, probabilities in [0, 1], E[N] >= P(N >= 1) as in each part). The weight is
chosen on the validation cuts (:func:`training.validation.validate_blend`), never on the
holdout.

Where B has no finite prediction (lifetimes' Pareto/NBD overflows for a few customers when
its fit degenerates, as on the 13-week validation cut: 16 of 2,357), the row takes A's alone
for that customer and counts them (``info["fallback"]``), so no metric turns NaN.
"""

from __future__ import annotations

import numpy as np

from training.baselines import Prediction


def blend(a: Prediction, b: Prediction, weight: float) -> Prediction:
    """``weight * a + (1 - weight) * b`` of the expected count and of P(any), per customer;
    ``a`` alone where ``b`` is not finite."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the weight of {a.name} must be in [0, 1], not {weight}")
    if a.expected.shape != b.expected.shape:
        raise ValueError(f"{a.name} and {b.name} predict different customers")
    missing = ~(np.isfinite(b.expected) & np.isfinite(b.p_any))
    b_exp = np.where(missing, a.expected, b.expected)
    b_p = np.where(missing, a.p_any, b.p_any)
    info = {"of": [a.name, b.name], "weight": weight, "fallback": int(missing.sum())}
    return Prediction(
        f"{a.name}+{b.name}",
        weight * a.expected + (1.0 - weight) * b_exp,
        np.clip(weight * a.p_any + (1.0 - weight) * b_p, 0.0, 1.0),
        info,
    )


# the weights of the lapse model tried on the validation cuts (1.0: the lapse model alone)
BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))

__all__ = ["BLEND_WEIGHTS", "blend"]
