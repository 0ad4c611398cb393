"""Related-category suggestions (pure), the category space and the bench's metrics."""

from __future__ import annotations

import numpy as np
import pytest

from bench.embeddings import decayed_interest, examples, suggestion_scores, withheld_categories
from decay.related import Interest, related
from training.category_space import CategorySpace, bucket_rows, fit_space, history_features
from training.next_category import top_k_accuracy
from training.semantic_sim import FAMILIES

V = {
    "running shoes": np.array([1.0, 0.0, 0.0], np.float32),
    "trail running": np.array([0.8, 0.6, 0.0], np.float32),
    "sports watches": np.array([0.6, 0.8, 0.0], np.float32),
    "cookware": np.array([0.0, 0.0, 1.0], np.float32),
}


def test_related_keeps_close_categories_with_high_or_rising_interest() -> None:
    interest = {
        "running shoes": Interest(0.1, 3.0),  # fading
        "trail running": Interest(2.0, 0.5),  # rising and close
        "sports watches": Interest(0.2, 0.9),  # close, low and falling: not suggested
        "cookware": Interest(5.0, 5.0),  # high but unrelated
    }
    got = related("running shoes", V, interest)
    assert [(s.category, s.rising) for s in got] == [("trail running", True)]
    assert got[0].similarity == pytest.approx(0.8) and got[0].interest == 2.0
    assert got[0].as_dict() == {
        "category": "trail running", "similarity": 0.8, "interest": 2.0, "rising": True,
    }  # fmt: skip
    interest["sports watches"] = Interest(3.0, 3.0)  # high share now: suggested, after trail
    assert [s.category for s in related("running shoes", V, interest)] == [
        "trail running", "sports watches",
    ]  # fmt: skip
    assert len(related("running shoes", V, interest, limit=1)) == 1


def test_related_without_vectors_or_interest_suggests_nothing() -> None:
    assert related("unknown", V, {"cookware": Interest(1.0, 0.0)}) == []
    assert related("running shoes", V, {}) == []
    assert related("running shoes", V, {"no vector": Interest(9.0, 0.0)}) == []


def test_category_space_round_trips_through_the_card() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 384)).astype(np.float32)
    space = fit_space(x, 4)
    y = space.project(x)
    assert y.shape == (20, 4)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-5)
    back = CategorySpace.from_card(space.to_card())
    np.testing.assert_allclose(back.project(x), y, atol=1e-5)
    with pytest.raises(ValueError, match="dims must be"):
        fit_space(x, 20)
    with pytest.raises(ValueError, match="encoder"):
        CategorySpace.from_card({**space.to_card(), "encoder": "other"})


def test_history_features_see_only_earlier_sessions() -> None:
    reps = np.eye(3, dtype=np.float32)
    f = history_features(reps)
    assert f.shape == (2, 9)
    np.testing.assert_array_equal(f[0], np.concatenate([reps[0]] * 3))
    np.testing.assert_allclose(f[1][:3], reps[1])  # last session
    np.testing.assert_allclose(f[1][3:6], 0.5 * reps[0] + 0.5 * reps[1])
    assert history_features(reps[:1]).shape == (0, 9)
    assert bucket_rows(["a", "b"], 8).sum(axis=1).tolist() == [1.0, 1.0]


def test_top_k_accuracy_counts_ties_against_the_target() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.1, 0.3, 0.2]], np.float32)
    target = np.array([2, 0, 0])
    assert top_k_accuracy(scores, target, k=2) == pytest.approx(1 / 3)  # row 0 only
    assert top_k_accuracy(scores, target, k=3) == 1.0
    assert np.isnan(top_k_accuracy(scores[:0], target[:0]))


def test_suggestion_scores_and_interest_decay() -> None:
    got = suggestion_scores([["a", "b"], [], ["c"]], ["a", "x", "d"])
    assert got == {"precision": 1 / 3, "hit_rate": 1 / 3, "per_user": 1.0}
    week = 7 * 86_400_000
    got_i = decayed_interest([0, week, 2 * week + 1], ["a", "a", "b"], 2 * week)
    assert got_i == {"a": pytest.approx(0.25 + 0.5)}


def test_examples_drop_withheld_categories_and_withheld_is_one_per_family() -> None:
    rows = dict(zip("xyz", np.eye(3, dtype=np.float32), strict=True))
    x, y = examples({"u": ["x", "y", "z", "x"]}, rows, frozenset({"y"}))
    assert y == ["z", "x"] and x.shape == (2, 9)
    held = withheld_categories(3)
    assert len(held) == len(FAMILIES)
    assert all(len(held & set(cats)) == 1 for cats in FAMILIES.values())
