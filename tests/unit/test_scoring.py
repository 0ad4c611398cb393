import math

import numpy as np
import pytest

from decay.scoring import ExponentialDecayScorer, fit_half_life, gaps_from_events


def test_half_life_is_the_exponential_mle() -> None:
    rng = np.random.default_rng(3)
    gaps = rng.exponential(scale=10 * 3600.0, size=200_000) + 1800.0
    # Only visits count (gaps of 30 min or more); the mean of those is scale + 1800.
    assert fit_half_life(gaps) == pytest.approx(math.log(2) * (10 * 3600 + 1800), rel=0.01)
    with pytest.raises(ValueError):
        fit_half_life([1.0, 2.0])


def test_gaps_are_per_user() -> None:
    gaps = gaps_from_events(["a", "b", "a", "b", "a"], [0, 10, 5000, 20_000, 9000])
    assert sorted(gaps.tolist()) == [4.0, 5.0, 19.99]


def test_exponential_curve_and_deadline() -> None:
    scorer = ExponentialDecayScorer(half_life_s=7200.0)
    scores = scorer.score([], threshold=0.25)
    assert scores.deadline_s.shape == (0,)
    from decay.window import Window

    w = Window(np.array([0]), np.array([0], np.uint8), np.array([255], np.uint8),
               np.array([0.0], np.float32), (), 1, 0)  # fmt: skip
    s = scorer.score([w, w], threshold=0.25)
    assert s.deadline_s.tolist() == [14400.0, 14400.0]  # two half-lives to reach 1/4
    assert scorer.interest(1.0, 7200.0, 7200.0) == pytest.approx(0.5)
    assert scorer.interest(1.0, 7200.0, -5.0) == 1.0


def test_exact_curves_cross_the_threshold_at_the_deadline() -> None:
    from decay.events import Event, EventType
    from decay.state import UserState
    from stream_app.onnx_scorer import OnnxScorer
    from stream_app.rollout import shipped_model

    st = UserState()
    for i in range(6):
        st.add(Event(f"e{i}", "u", 1_704_067_200_000 + i * 86_400_000, EventType.VIEW), i, 64)
    for scorer in (OnnxScorer(shipped_model()), ExponentialDecayScorer(half_life_s=36_000.0)):
        s = scorer.score([st.window()], threshold=0.2)
        deadline = float(s.deadline_s[0])
        assert np.isfinite(deadline)
        at = scorer.curves([st.window()], np.array([0.0, deadline]))[0]
        assert at[0] == pytest.approx(float(s.peak[0]), rel=1e-6)
        assert at[1] == pytest.approx(0.2, rel=1e-4)
