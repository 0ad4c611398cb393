"""The lapse model's round-7 options: the gaps' regularity as inputs, the weights' moving
average at the end of training, and the validation command's choice of candidates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from decay.features import HOUR_MS, FeatureSpec, prepare_events

pytestmark = pytest.mark.train

T0 = 1_700_000_000_000
WEEK = 168 * HOUR_MS


def _log(times: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(u, T0 + int(t * WEEK)) for u, ts in times.items() for t in ts]
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [u for u, _ in rows],
            "ts": [t for _, t in rows],
            "type": ["purchase"] * len(rows),
            "category": ["cd"] * len(rows),
            "price": [10.0] * len(rows),
        }
    )


def test_gap_statistics_are_the_mean_and_spread_of_each_historys_log_gaps() -> None:
    from training.landmarks import STATIC, event_amounts, landmark_rows

    times = {"a": [0.0, 1.0, 4.0, 5.0], "b": [2.0], "c": [0.5, 3.5]}
    events = _log(times)
    table = prepare_events(events, FeatureSpec(seq_len=8))
    end = T0 + 6 * WEEK
    plain, _ = landmark_rows(table, event_amounts(events), [end], end, 168.0)
    hists, _ = landmark_rows(table, event_amounts(events), [end], end, 168.0, gap_stats=True)
    assert hists.static.shape == (3, len(STATIC) + 2)
    np.testing.assert_array_equal(hists.static[:, : len(STATIC)], plain.static)
    by_user = {
        str(table.users[u]): hists.static[i, len(STATIC) :] for i, u in enumerate(hists.user)
    }
    gaps = np.log1p(np.array([1.0, 3.0, 1.0]))  # a's gaps, in weeks
    np.testing.assert_allclose(by_user["a"], [gaps.mean(), gaps.std()], rtol=1e-5)
    np.testing.assert_allclose(by_user["b"], [0.0, 0.0])  # no gap
    np.testing.assert_allclose(by_user["c"], [np.log1p(3.0), 0.0], rtol=1e-5)  # one gap
    # at an earlier landmark a's history stops at its second event: one gap, none of later
    mid = T0 + int(2 * WEEK)
    early, _ = landmark_rows(table, event_amounts(events), [mid], end, 168.0, gap_stats=True)
    a = next(i for i, u in enumerate(early.user) if str(table.users[u]) == "a")
    np.testing.assert_allclose(early.static[a, len(STATIC) :], [np.log1p(1.0), 0.0], rtol=1e-5)


def _small() -> tuple[pd.DataFrame, int, list[str], FeatureSpec]:
    from training.splits import CdnowCut, cdnow_split

    split = cdnow_split(cut=CdnowCut("sample", 20, 6))
    users = [str(u) for u in split.users]
    return split.calibration, split.cut_ms, users, FeatureSpec(seq_len=16, horizon_h=6 * 168.0)


def test_a_gap_statistics_model_trains_but_the_step_export_refuses_it() -> None:
    from training.export import ExportError
    from training.lapse import LapseConfig, fit, predict
    from training.lapse_step import to_onnx

    events, cut, users, spec = _small()
    cfg = LapseConfig(units=8, epochs=2, landmark_every_h=336.0, gap_stats=True)
    result = fit(events, cut, spec, cfg)
    out = predict(result, events, users, cut, spec.horizon_h)
    assert np.all((out["p_any"] > 0) & (out["p_any"] < 1)) and np.all(out["expected"] > 0)
    with pytest.raises(ExportError, match="gap"):
        to_onnx(result)


def test_the_moving_average_of_the_weights_ends_training() -> None:
    """A momentum near 0 keeps the last weights (the plain fit); 0.9 gives other weights,
    the same for the same seed: the averages are swapped in, the trajectory is the same."""
    from training.lapse import LapseConfig, fit, predict

    events, cut, users, spec = _small()
    cfg = LapseConfig(units=8, epochs=3, landmark_every_h=336.0)

    def p_any(c: LapseConfig) -> np.ndarray:
        return predict(fit(events, cut, spec, c), events, users, cut, spec.horizon_h)["p_any"]

    plain = p_any(cfg)
    np.testing.assert_allclose(p_any(dataclasses.replace(cfg, ema=1e-9)), plain, rtol=1e-5)
    averaged = p_any(dataclasses.replace(cfg, ema=0.9))
    assert np.max(np.abs(averaged - plain)) > 1e-3
    np.testing.assert_allclose(p_any(dataclasses.replace(cfg, ema=0.9)), averaged, rtol=1e-6)


def test_the_validation_command_takes_named_candidates_and_refuses_unknown_ones() -> None:
    from training.validation import GRID, grid_of

    assert grid_of(None) is GRID
    got = grid_of("u24-e20-ww4, u24-e20-ww4-ema99")
    assert list(got) == ["u24-e20-ww4", "u24-e20-ww4-ema99"]
    assert got["u24-e20-ww4-ema99"].ema == 0.99
    with pytest.raises(ValueError, match="unknown candidates"):
        grid_of("u24-e20-ww4,nope")
    with pytest.raises(ValueError, match="unknown candidates"):
        grid_of(" , ")


def test_a_shared_rate_prior_is_one_for_every_history_and_the_export_refuses_it() -> None:
    from training.export import ExportError
    from training.lapse import LapseConfig, fit, heads_at
    from training.lapse_step import to_onnx

    events, cut, users, spec = _small()
    cfg = LapseConfig(units=8, epochs=2, landmark_every_h=336.0, shared_rate=True)
    result = fit(events, cut, spec, cfg)
    heads = heads_at(result, events, users, cut)
    x, t_x = events.groupby("user_id").size(), events.groupby("user_id")["ts"].agg(np.ptp)
    k0 = heads["k"] - (x.loc[users].to_numpy() - 1)
    b0 = heads["beta"] - t_x.loc[users].to_numpy() / (168 * HOUR_MS)
    np.testing.assert_allclose(k0, k0[0], rtol=1e-4)
    np.testing.assert_allclose(b0, b0[0], rtol=1e-3, atol=1e-3)
    assert np.ptp(heads["p"]) > 1e-4  # the lapse chance still differs per history
    with pytest.raises(ExportError, match="rate prior"):
        to_onnx(result)
