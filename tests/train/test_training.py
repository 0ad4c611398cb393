"""Training side: labels, a tiny model trained, exported, served; the CDNOW protocol end to end.

Needs the train extra (TensorFlow). Everything is small: the whole file runs in about a
minute on two cores.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decay.events import Event, EventType
from decay.features import HOUR_MS, FeatureSpec, encode_log, prepare_events, space_spec
from decay.state import UserState
from training.labels import calendar_cuts, event_cuts
from training.simulate import simulate

pytestmark = pytest.mark.train

T0 = 1_700_000_000_000
DAY = 24 * HOUR_MS
CHOSEN = "u24-e20-ww4"  # training/validation.py's choice (round 6)


def stream_states(head: pd.DataFrame, max_events: int = 16) -> dict[str, UserState]:
    """Each user's state after the log's events, as the worker adds them."""
    states: dict[str, UserState] = {}
    for offset, row in enumerate(head.itertuples(index=False)):
        st = states.setdefault(row.user_id, UserState())
        cat = None if pd.isna(row.category) else str(row.category)
        price = None if pd.isna(row.price) else float(row.price)
        ev = Event(row.event_id, row.user_id, int(row.ts), EventType[row.type.upper()],
                   None, cat, price)  # fmt: skip
        st.add(ev, offset, max_events)
    return states


def _tiny_log() -> pd.DataFrame:
    rows = [
        ("a", 0), ("a", 2 * HOUR_MS), ("a", 3 * DAY),  # returns after 3 days
        ("b", 0), ("b", HOUR_MS),  # churns: never seen again
        ("c", 9 * DAY),  # a single event, late
    ]  # fmt: skip
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [u for u, _ in rows],
            "ts": [T0 + t for _, t in rows],
            "type": ["view"] * len(rows),
            "category": ["shoes"] * len(rows),
            "price": [np.nan] * len(rows),
        }
    )


def test_labels_censor_churned_users_instead_of_dropping_them() -> None:
    spec = FeatureSpec(horizon_h=48.0)
    table = prepare_events(_tiny_log(), spec)
    end = T0 + 10 * DAY
    ex = event_cuts(table, end, spec.horizon_h)
    assert len(ex) == 6  # every event is an example, churned users included
    by = {
        (str(table.users[u]), float(d), bool(o))
        for u, d, o in zip(ex.user, ex.duration_h, ex.observed, strict=True)
    }
    assert ("a", 2.0, True) in by and ("a", 70.0, True) in by
    assert ("a", 7 * 24.0, False) in by  # a's last event: censored at the end, 7 days later
    assert ("b", 1.0, True) in by
    assert ("b", 10 * 24.0 - 1.0, False) in by  # b churned: censored, not negative
    assert ("c", 24.0, False) in by
    assert np.all(ex.next_bucket[~ex.observed] == -1)
    # a cut at day 1: a is silent since 2 h (elapsed 22 h), next event 70 h after its last
    cuts = calendar_cuts(table, [T0 + DAY], end, spec.horizon_h)
    assert len(cuts) == 2  # c has no event before the cut
    a = int(np.nonzero(table.users[cuts.user] == "a")[0][0])
    assert cuts.elapsed_h[a] == 22.0 and cuts.duration_h[a] == 70.0 and cuts.observed[a]
    assert cuts.count[a] == 1.0 and cuts.exposure[a] == 1.0  # day 3 = cut + 48 h, inclusive
    # nothing after end_ms leaks into a label
    early = event_cuts(table, T0 + 2 * DAY, spec.horizon_h)
    assert not early.observed[early.duration_h > 2 * 24].any()
    assert early.exposure.min() >= 0.0 and early.count.max() <= 1.0


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return simulate(n_users=150, days=12, seed=5).events


@pytest.fixture(scope="module")
def trained(sim: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("model")
    cfg = TrainConfig(units=8, epochs=2, max_examples=3000, batch_size=128, verbose=0)
    train(sim, out, spec=FeatureSpec(seq_len=16, horizon_h=72.0), config=cfg)
    return out


@pytest.fixture(scope="module")
def exported(trained: Path) -> tuple[Path, object, object]:
    from training.export import export

    onnx_path = trained / "model.onnx"
    card, parity = export(trained, onnx_path, holdout_metrics={"LSTM": {"auc": 0.5}})
    return onnx_path, card, parity


def test_export_uses_the_onnx_lstm_op_and_matches_tensorflow(
    exported: tuple[Path, object, object],
) -> None:
    import onnx

    path, _card, parity = exported
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert "LSTM" in ops and "Loop" not in ops and "Scan" not in ops
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    assert lstm.input[4]  # sequence_lens is fed
    assert model.opset_import[0].version >= 17
    assert parity.n == 1000 and parity.rtol == 1e-5  # type: ignore[attr-defined]
    assert path.stat().st_size < 5 * 1024 * 1024


def test_parity_includes_empty_and_length_one_windows(trained: Path) -> None:
    from training.export import check_parity, parity_inputs, to_onnx
    from training.train import load

    result = load(trained)
    feeds = parity_inputs(result.spec, 1000)
    assert (feeds["lengths"] == 0).sum() >= 100 and (feeds["lengths"] == 1).sum() >= 100
    proto = to_onnx(result.model, result.spec)
    got = check_parity(result.model, proto.SerializeToString(), result.spec, 1000, rtol=1e-5)
    assert got.max_abs < 1e-4


def test_card_round_trip(exported: tuple[Path, object, object]) -> None:
    from decay.card import ModelCard, read_card

    path, card, _ = exported
    back = read_card(path)
    assert back == card
    assert isinstance(back, ModelCard)
    assert back.feature_spec_version == "fs1" and back.seq_len == 16
    assert back.horizon_h == 72.0 and back.bin_edges_h == FeatureSpec().bin_edges_h
    assert set(back.input_names) == {"x", "lengths", "elapsed_h"}
    assert back.holdout_metrics == {"LSTM": {"auc": 0.5}}
    assert back.training_data["events"] > 0 and back.created_at and back.code_version
    on_disk = (path.parent / "card.json").read_text()
    assert '"feature_spec_version": "fs1"' in on_disk


def test_worker_refuses_a_model_of_another_feature_spec(
    exported: tuple[Path, object, object], tmp_path: Path
) -> None:
    import onnx

    from decay.card import write_card
    from stream_app.onnx_scorer import ModelMismatchError, OnnxScorer

    path, card, _ = exported
    with pytest.raises(ModelMismatchError, match="seq_len 16 != 64"):
        OnnxScorer(path)  # this worker encodes 64 events; the model was trained on 16
    OnnxScorer(path, FeatureSpec(seq_len=16))  # the matching spec loads
    other = onnx.load(str(path))
    write_card(other, dataclasses.replace(card, feature_spec_version="fs0"))  # type: ignore[type-var]
    bad = tmp_path / "old.onnx"
    onnx.save_model(other, str(bad))
    with pytest.raises(ModelMismatchError, match="feature spec 'fs0'; this worker serves fs1, fs2"):
        OnnxScorer(bad, FeatureSpec(seq_len=16))
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save_model(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelMismatchError, match="no decay model card"):
        OnnxScorer(tmp_path / "bare.onnx", FeatureSpec(seq_len=16))


def test_stream_scorer_agrees_with_tensorflow_on_the_training_path(
    sim: pd.DataFrame, trained: Path, exported: tuple[Path, object, object]
) -> None:
    """Stream side (UserState -> window -> ONNX) vs training side (log -> TF): same heads."""
    from decay import survival
    from stream_app.onnx_scorer import OnnxScorer
    from training.train import load

    spec16 = FeatureSpec(seq_len=16, horizon_h=72.0)
    scorer = OnnxScorer(exported[0], FeatureSpec(seq_len=16))
    head = sim.head(400)
    states = stream_states(head)
    users = sorted(states)
    stream = scorer.predict([states[u].window() for u in users])
    result = load(trained)
    cut = int(head["ts"].max())
    x, lengths = encode_log(head, users, np.full(len(users), cut), spec16)
    zeros = np.zeros((len(users), 1), np.float32)
    tf_out = result.model.predict({"x": x, "lengths": lengths, "elapsed_h": zeros}, verbose=0)
    for name in ("log_hazard", "category_logits", "log_count"):
        np.testing.assert_allclose(stream[name], tf_out[name], rtol=1e-5, atol=1e-5)
    scores = scorer.score([states[u].window() for u in users], threshold=0.3)
    rate = np.exp(tf_out["log_hazard"].astype(np.float64))
    want = survival.deadline(rate, spec16.bin_edges_h, 72.0, 0.3) * 3600.0
    np.testing.assert_allclose(scores.deadline_s, want, rtol=1e-4)
    assert np.all((scores.peak > 0) & (scores.peak <= 1))
    assert scores.category_probs is not None
    np.testing.assert_allclose(scores.category_probs.sum(axis=1), 1.0)
    hl = float(scores.half_life_s[0])
    if math.isfinite(hl):
        assert scorer.interest(1.0, hl, hl) == pytest.approx(0.5)
    assert scorer.version.startswith("lstm-fs1-")


@pytest.fixture(scope="module")
def exported_space(
    sim: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, object, object]:
    """A category-space (fs2) model: 8-d PCA of the simulator's 20 category names."""
    from training.export import export
    from training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("space_model")
    cfg = TrainConfig(units=8, epochs=2, max_examples=3000, batch_size=128, verbose=0)
    train(sim, out, spec=space_spec(8, seq_len=16, horizon_h=72.0), config=cfg)
    card, parity = export(out, out / "model.onnx")
    return out / "model.onnx", card, parity


def test_category_space_model_exports_with_parity_and_its_space_in_the_card(
    exported_space: tuple[Path, object, object],
) -> None:
    from decay.card import read_card
    from decay.category_space import CategorySpace

    path, card, parity = exported_space
    assert parity.n == 1000 and parity.max_abs < 1e-4  # type: ignore[attr-defined]
    back = read_card(path)
    assert back == card and back.feature_spec_version == "fs2"
    assert set(back.output_names) == {"log_hazard", "category_query", "log_count"}
    assert CategorySpace.from_card(back.category_space).dims == 8
    assert back.feature_names[16:] == tuple(f"cat_dim_{i}" for i in range(8))
    assert path.stat().st_size < 5 * 1024 * 1024


def test_category_space_stream_scorer_agrees_with_tensorflow(
    sim: pd.DataFrame, exported_space: tuple[Path, object, object]
) -> None:
    """fs2 stream side (UserState -> window -> encoder rows -> ONNX) vs training side."""
    from stream_app.onnx_scorer import OnnxScorer
    from training.train import load, space_rows

    path = exported_space[0]
    scorer = OnnxScorer(path, FeatureSpec(seq_len=16))  # the card says fs2: served as such
    assert scorer.spec.version == "fs2" and scorer.version.startswith("lstm-fs2-")
    head = sim.head(400)
    states = stream_states(head)
    users = sorted(states)
    windows = [states[u].window() for u in users]
    stream = scorer.predict(windows)
    result = load(path.parent)
    rows = space_rows(result)
    cut = np.full(len(users), int(head["ts"].max()))
    table = prepare_events(head, result.spec, rows)
    lookup = pd.Index(table.users).get_indexer(pd.Index(users, dtype=object)).astype(np.int64)
    from decay.features import gather_windows, last_event_index

    x, lengths = gather_windows(table, lookup, last_event_index(table, lookup, cut))
    zeros = np.zeros((len(users), 1), np.float32)
    tf_out = result.model.predict({"x": x, "lengths": lengths, "elapsed_h": zeros}, verbose=0)
    for name in ("log_hazard", "category_query", "log_count"):
        np.testing.assert_allclose(stream[name], tf_out[name], rtol=1e-5, atol=1e-5)
    scores = scorer.score(windows, threshold=0.3)
    assert scores.category_probs is None and scores.category_query is not None
    got = scorer.category_scores(scores.category_query, ["books", "running shoes"])
    assert got.shape == (len(users), 2) and np.isfinite(got).all()


def test_worker_refuses_a_category_space_model_without_its_space(
    exported_space: tuple[Path, object, object], tmp_path: Path
) -> None:
    import onnx

    from decay.card import write_card
    from stream_app.onnx_scorer import ModelMismatchError, OnnxScorer

    path, card, _ = exported_space
    other = onnx.load(str(path))
    write_card(other, dataclasses.replace(card, category_space={}))  # type: ignore[type-var]
    onnx.save_model(other, str(tmp_path / "spaceless.onnx"))
    with pytest.raises(ModelMismatchError, match="feature spec 'fs2' != 'fs1'"):
        OnnxScorer(tmp_path / "spaceless.onnx", FeatureSpec(seq_len=16))


def test_gru_variant_trains_but_export_refuses_a_loop_graph(sim: pd.DataFrame) -> None:
    """tf2onnx 1.17 turns Keras 3's GRU into a Loop, not the GRU op: export must say so."""
    from training.export import ExportError, to_onnx
    from training.train import TrainConfig, train

    spec = FeatureSpec(seq_len=16, horizon_h=72.0)
    cfg = TrainConfig(arch="gru", units=8, epochs=1, max_examples=300, verbose=0)
    result = train(sim, None, spec=spec, config=cfg)
    assert result.model.get_layer("rnn").__class__.__name__ == "GRU"
    with pytest.raises(ExportError, match="Loop"):
        to_onnx(result.model, spec)


def test_tiny_cdnow_run_end_to_end(tmp_path: Path) -> None:
    from training.evaluate import CDNOW_TRAIN, run_cdnow
    from training.reports import markdown_table, write_report

    cfg = dataclasses.replace(
        CDNOW_TRAIN, units=8, epochs=1, max_examples=2000, refit=False, verbose=0
    )
    report = run_cdnow(
        models=("bgnbd", "lstm"), config=cfg, plots_dir=tmp_path / "plots", n_samples=2
    )
    assert report["customers"] == 2357 and report["actual_holdout_total"] == 1882
    assert report["bgnbd_matches_fhl"]
    bg = report["models"]["BG/NBD"]
    assert bg["corr"] == pytest.approx(0.626, abs=0.001)
    assert bg["total"] == pytest.approx(1653, abs=1)
    assert bg["auc"] == pytest.approx(0.757, abs=0.001)
    assert bg["brier"] == pytest.approx(0.161, abs=0.001)
    lstm = report["models"]["LSTM"]
    assert 0.0 <= lstm["brier"] <= 1.0 and 0.0 <= lstm["auc"] <= 1.0
    table = markdown_table(report)
    assert "| LSTM |" in table
    # the verdict names only the classic models that were run (no Pareto/NBD here)
    line = next(x for x in table.splitlines() if x.startswith("LSTM vs the classic models run"))
    assert "BG/NBD" in line and "Pareto/NBD" not in line
    assert set(report["verdict"]["LSTM"]) == {"corr", "abs_bias", "auc", "brier", "ece"}
    for v in report["verdict"]["LSTM"].values():
        assert sorted(v["beats"] + v["not"]) == ["BG/NBD"]
    write_report(report, tmp_path / "r.json")
    assert (tmp_path / "plots" / "calibration.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "interest_curves.png").stat().st_size > 1000


def test_cleaning_reports_and_fixes_what_the_stream_would_reject(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from training.data import clean, collapse_same_day

    base = _tiny_log()
    burst = pd.DataFrame(
        {
            "event_id": [f"bot{i}" for i in range(200)],
            "user_id": "bot",
            "ts": T0 + np.arange(200) * 100,  # 200 events in 20 seconds
            "type": "view",
            "category": "shoes",
            "price": np.nan,
        }
    )
    bad = pd.DataFrame(
        {
            "event_id": ["e0", "x1", "x2", "x3"],  # e0 duplicates the first event
            "user_id": ["a", "a", "a", "a"],
            "ts": [T0, 5, T0 + 1, T0 + 2],  # 5 ms after the epoch: not e-commerce data
            "type": ["view", "view", "teleport", "cart"],
            "category": ["shoes", "shoes", "shoes", None],
            "price": [np.nan, np.nan, np.nan, -3.0],
        }
    )
    df, rep = clean(pd.concat([base, burst, bad], ignore_index=True), max_ts_ms=T0 + 30 * DAY)
    assert rep.duplicates == 1
    assert rep.invalid == {"missing id": 0, "unknown type": 1, "bad timestamp": 1}
    assert rep.bot_users == 1 and rep.bot_events == 200
    assert rep.prices_fixed == 1 and rep.categories_filled == 1
    assert len(df) == rep.rows_out == len(base) + 1
    assert (df["category"] == "unknown").sum() == 1 and df["ts"].is_monotonic_increasing
    assert "bot-like users:     1" in capsys.readouterr().out
    # CDNOW rule: two purchases on one day are one purchase-day
    two = pd.DataFrame(
        {
            "event_id": ["p1", "p2", "p3"],
            "user_id": ["c1", "c1", "c1"],
            "ts": [T0, T0 + HOUR_MS, T0 + 3 * DAY],
            "type": "purchase",
            "category": "music",
            "price": [10.0, 20.0, 5.0],
            "quantity": [1, 1, 2],
        }
    )
    days = collapse_same_day(two)
    assert len(days) == 2 and days["price"].tolist() == [15.0, 5.0]


def test_quantile_bin_edges_put_observed_gaps_in_every_bin() -> None:
    from training.train import quantile_edges

    log = simulate(n_users=80, days=8, seed=2).events
    spec = FeatureSpec()
    table = prepare_events(log, spec)
    ex = event_cuts(table, int(table.ts.max()), spec.horizon_h)
    edges = quantile_edges(ex, 6)
    assert edges[0] == 0.0 and np.all(np.diff(edges) > 0)
    gaps = ex.duration_h[ex.observed]
    counts = np.histogram(gaps, bins=[*edges, np.inf])[0]
    assert np.all(counts > 0)
    with pytest.raises(ValueError, match="too few observed gaps"):
        quantile_edges(ex.take(np.arange(5)), 6)


def test_alert_precision_recall_on_hand_made_numbers() -> None:
    from training.metrics import alert_metrics

    p = np.array([0.05, 0.15, 0.25, 0.6, 0.9, 0.12])
    dormant = np.array([True, True, False, False, True, False])
    out = alert_metrics(p, dormant, thetas=(0.1, 0.2, 0.3, 0.01))
    # theta 0.2 flags 0.05, 0.15, 0.12: two of them dormant; dormant users: 3
    assert out["0.2"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "flagged": 0.5})
    assert out["0.1"] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "flagged": 1 / 6})
    assert out["0.3"] == pytest.approx({"precision": 0.5, "recall": 2 / 3, "flagged": 4 / 6})
    assert math.isnan(out["0.0"]["precision"]) and out["0.0"]["recall"] == 0.0


def test_rolling_origin_fold_cut_points() -> None:
    from training.splits import fold_cuts

    start = 1_700_006_400_000  # a UTC midnight
    end = start + 30 * DAY + 5 * HOUR_MS
    cuts = fold_cuts(start, end, 3, holdout_fraction=0.3)
    # the last 30% starts at day 21 (floored to midnight); three 3-day windows follow
    assert cuts == [
        (start + 21 * DAY, start + 24 * DAY),
        (start + 24 * DAY, start + 27 * DAY),
        (start + 27 * DAY, start + 30 * DAY),
    ]
    assert all(c % DAY == 0 for c, _ in cuts) and cuts[-1][1] <= end
    one = fold_cuts(start, start + 10 * DAY, 20)  # windows never shorter than a day
    assert all(e - c == DAY for c, e in one) and len(one) == 3
    with pytest.raises(ValueError):
        fold_cuts(start, end, 0)


def test_events_report_has_alerts_and_folds() -> None:
    from training.evaluate_events import run_events
    from training.reports import markdown_table

    log = simulate(300, days=20, seed=3).events
    report = run_events(log, models=("exp-decay",), folds=2, per_day=True)
    assert set(report["alerts"]["exp-decay"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}
    assert len(report["cv"]["folds"]) == 2
    cuts = [f["cut"] for f in report["cv"]["folds"]]
    assert cuts == sorted(cuts)
    table = markdown_table(report)
    assert "| exp-decay | 0.2 |" in table and "| mean |" in table


@pytest.mark.parametrize("dropout", ["fixed", "beta"])
def test_lapse_loss_in_tensorflow_is_the_numpy_likelihood(dropout: str) -> None:
    import tensorflow as tf

    from decay import btyd
    from training.lapse_loss import tf_window_loglik

    rng = np.random.default_rng(0)
    r = 50
    k0, b0 = rng.uniform(0.1, 3, r), rng.uniform(0.5, 20, r)
    p, kappa = rng.uniform(0.01, 0.9, r), rng.uniform(0.3, 30, r)
    x, tx = rng.integers(0, 12, r).astype(float), rng.uniform(0, 30, r)
    d, w = rng.uniform(0, 20, r), rng.uniform(0.5, 30, r)
    n = rng.integers(0, 6, r).astype(float)
    tau = np.where(n > 0, rng.uniform(0, 1, r) * w, 0.0)
    params = np.stack([k0, b0, p, kappa], axis=1)
    f32 = [tf.constant(v, tf.float64) for v in (params, x, tx, d, n, tau, w)]
    got = tf_window_loglik(*f32, dropout == "beta").numpy()
    want = btyd.window_loglik(
        p, k0 + x, b0 + tx, d, n, tau, w, kappa if dropout == "beta" else None
    )
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_lapse_model_learns_who_is_gone_on_a_small_log() -> None:
    """A few epochs on CDNOW's first 26 weeks: the likelihood improves, the fit is the same
    for the same seed, and silent customers get a lower P(purchase) than recent ones."""
    from training.lapse import LapseConfig, fit, predict
    from training.splits import CdnowCut, cdnow_split

    split = cdnow_split(cut=CdnowCut("sample", 20, 6))
    spec = FeatureSpec(seq_len=16, horizon_h=6 * 168.0)
    cfg = LapseConfig(units=8, epochs=4, landmark_every_h=336.0)
    users = [str(u) for u in split.users]
    one = fit(split.calibration, split.cut_ms, spec, cfg)
    nll = one.summary["train_nll_per_row"]
    assert nll[-1] < nll[0]
    out = predict(one, split.calibration, users, split.cut_ms, spec.horizon_h)
    again = predict(
        fit(split.calibration, split.cut_ms, spec, cfg),
        split.calibration,
        users,
        split.cut_ms,
        spec.horizon_h,
    )
    np.testing.assert_allclose(out["p_any"], again["p_any"], rtol=1e-6)
    assert np.all((out["p_any"] > 0) & (out["p_any"] < 1)) and np.all(out["expected"] > 0)
    silence = split.rfm.T - split.rfm.recency
    one_timers = split.rfm.frequency == 0
    long_silent = one_timers & (silence > np.quantile(silence[one_timers], 0.8))
    recent = one_timers & (silence < np.quantile(silence[one_timers], 0.2))
    assert out["p_alive"][long_silent].mean() < out["p_alive"][recent].mean()
    assert out["p_any"][long_silent].mean() < out["p_any"][recent].mean()


def test_exp_lifetime_loss_in_tensorflow_is_the_numpy_likelihood() -> None:
    import tensorflow as tf

    from decay import lifetime
    from training.lapse_loss import tf_exp_window_loglik

    rng = np.random.default_rng(1)
    r = 50
    k0, b0, mu = rng.uniform(0.1, 3, r), rng.uniform(0.5, 20, r), rng.uniform(0.001, 0.9, r)
    x, tx = rng.integers(0, 12, r).astype(float), rng.uniform(0, 30, r)
    d, w = rng.uniform(0, 20, r), rng.uniform(0.5, 30, r)
    n = rng.integers(0, 6, r).astype(float)
    tau = np.where(n > 0, rng.uniform(0, 1, r) * w, 0.0)
    params = np.stack([k0, b0, mu, np.ones(r)], axis=1)
    got = tf_exp_window_loglik(
        *[tf.constant(v, tf.float64) for v in (params, x, tx, d, n, tau, w)]
    ).numpy()
    want = lifetime.window_loglik(k0 + x, b0 + tx, mu, d, n, tau, w)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_lapse_step_model_step_by_step_equals_the_whole_history(tmp_path: Path) -> None:
    """The exported ONNX step, fed one event at a time with the stored (h, c, counters),
    gives the same state and heads after every event as the model run over the whole
    history in training (rtol 1e-5)."""
    import onnx
    import onnxruntime as ort

    from decay.card import read_card
    from decay.features import event_features, gather_windows
    from decay.lapse_state import Counters, static_features
    from training.landmarks import event_amounts, table_order
    from training.lapse import LapseConfig, fit, whole_history
    from training.lapse_step import export, load, save, whole_history_states
    from training.splits import CdnowCut, cdnow_split

    split = cdnow_split(cut=CdnowCut("sample", 20, 6))
    spec = FeatureSpec(horizon_h=6 * 168.0)
    cfg = LapseConfig(units=8, epochs=1, landmark_every_h=4 * 168.0)
    result = load(save(fit(split.calibration, split.cut_ms, spec, cfg), tmp_path / "m"))
    path = tmp_path / "step.onnx"
    card = export(result, path, holdout_metrics={"LSTM-BTYD": {"auc": 0.5}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"Loop", "Scan", "LSTM"}
    back = read_card(path)
    assert back == card and back.state_layout["h"] == 8 and back.seq_len == 0
    assert back.state_layout["counters"] == ["n_events", "first_ts_ms", "last_ts_ms", "amount_sum"]

    # whole history, as training computes it: the model at every event
    events = split.calibration
    table = prepare_events(events, whole_history(spec, events))
    amounts = event_amounts(events)
    prices = events["price"].to_numpy(np.float64, na_value=np.nan)[table_order(events)]
    prices = prices.astype(np.float32)
    every = np.arange(table.ts.shape[0], dtype=np.int64)
    x, lengths = gather_windows(table, table.user_of, every)
    first = table.starts[table.user_of]
    cum = np.cumsum(amounts)
    amount_sum = cum - np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    static = static_features(every - first + 1, table.ts[first], table.ts, amount_sum, 168.0)
    whole = result.model.predict({"x": x, "lengths": lengths, "static": static}, verbose=0)
    h_whole = whole_history_states(result.model, x, lengths)[every, lengths - 1]

    # step by step: all users' i-th events in one batch, state carried between steps
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n_users = table.users.shape[0]
    h = np.zeros((n_users, 8), np.float32)
    c = np.zeros((n_users, 8), np.float32)
    counters = [Counters() for _ in range(n_users)]
    counts = np.diff(table.starts)
    checked = 0
    for i in range(int(counts.max())):
        users = np.nonzero(counts > i)[0]
        idx = table.starts[users] + i
        before = [counters[u] for u in users]
        pairs = list(zip(before, table.ts[idx].tolist(), strict=True))
        prev = np.array([b.last_ts_ms if b.n_events else t for b, t in pairs], np.int64)
        firsts = np.array([b.first_ts_ms if b.n_events else t for b, t in pairs], np.int64)
        row = event_features(
            table.ts[idx], prev, table.types[idx], table.buckets[idx], prices[idx],
            np.full(users.shape[0], i + 1, np.int64), firsts, spec,
        )  # fmt: skip
        for u, j in zip(users, idx, strict=True):
            counters[u] = counters[u].add(int(table.ts[j]), float(amounts[j]))
        after = [counters[u] for u in users]
        st = static_features(
            [a.n_events for a in after], [a.first_ts_ms for a in after],
            [a.last_ts_ms for a in after], [a.amount_sum for a in after], 168.0,
        )  # fmt: skip
        feeds = {"event": row, "h": h[users], "c": c[users], "static": st}
        h_next, c_next, params = sess.run(["h_next", "c_next", "params"], feeds)
        np.testing.assert_allclose(st, static[idx], rtol=1e-6)
        np.testing.assert_allclose(h_next, h_whole[idx], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(params, whole["params"][idx], rtol=1e-5, atol=1e-7)
        h[users], c[users] = h_next, c_next
        checked += users.shape[0]
    assert checked == table.ts.shape[0]  # every event of every user


def test_verdict_names_only_the_models_run_and_beaten_metric_by_metric() -> None:
    from training.reports import markdown_table, verdict

    def row(corr: float, bias: float, auc: float, brier: float, ece: float) -> dict[str, float]:
        return {
            "corr": corr, "bias_pct": bias, "auc": auc, "brier": brier, "ece": ece,
            "total": 0.0, "actual_total": 1.0, "c_index": 0.5,
        }  # fmt: skip

    rows = {
        "BG/NBD": row(0.626, -12.1, 0.757, 0.161, 0.043),
        "Pareto/NBD": row(0.630, -11.5, 0.771, 0.162, 0.070),
        "LSTM-BTYD": row(0.628, 9.0, 0.780, 0.158, 0.02),
    }
    v = verdict(rows)["LSTM-BTYD"]
    assert v["corr"] == {"beats": ["BG/NBD"], "not": ["Pareto/NBD"]}
    assert v["abs_bias"]["beats"] == ["BG/NBD", "Pareto/NBD"]  # |+9.0| < |-11.5|
    assert v["auc"]["not"] == [] and v["brier"]["not"] == [] and v["ece"]["not"] == []
    assert set(verdict(rows)) == {"LSTM-BTYD"}  # classic models get no verdict
    only_bg = verdict({k: rows[k] for k in ("BG/NBD", "LSTM-BTYD")})["LSTM-BTYD"]
    assert all(x["beats"] + x["not"] == ["BG/NBD"] for x in only_bg.values())
    report = {"models": rows, "actual_holdout_total": 1.0, "verdict": verdict(rows)}
    line = markdown_table(report).splitlines()[-1]
    assert line.startswith("LSTM-BTYD vs the classic models run: corr: beats BG/NBD (not Pareto")


def test_cdnow_cuts_default_to_the_published_protocol() -> None:
    from training.splits import HOLD_END_MS, VALIDATION_CUTS, CdnowCut, cdnow_split

    cut = CdnowCut()
    assert cut.published and cut.end_ms == HOLD_END_MS
    assert pd.Timestamp(cut.cut_ms, unit="ms", tz="UTC") == pd.Timestamp("1997-10-01", tz="UTC")
    assert all(v.end_ms <= cut.cut_ms for v in VALIDATION_CUTS)  # never into the holdout
    split = cdnow_split(cut=CdnowCut("sample", 26, 13))
    assert len(split.users) == 2357 and split.end_ms == cut.cut_ms
    assert split.calibration["ts"].max() < split.cut_ms
    with pytest.raises(ValueError, match="week 78"):
        cdnow_split(cut=CdnowCut("sample", 39, 40))
    with pytest.raises(ValueError, match="population"):
        cdnow_split(cut=CdnowCut("most", 39, 39))


def test_the_cdnow_lapse_settings_are_a_validated_candidate() -> None:
    from training.evaluate import CDNOW_LAPSE
    from training.validation import GRID, choose, rank_sum

    assert GRID[CHOSEN] == CDNOW_LAPSE
    # the ranking: lower rank sums win, on every metric at once
    scores = {
        "a": {"corr": 0.5, "abs_bias": 1.0, "auc": 0.7, "brier": 0.15, "ece": 0.02},
        "b": {"corr": 0.4, "abs_bias": 2.0, "auc": 0.6, "brier": 0.16, "ece": 0.03},
        "c": {"corr": 0.6, "abs_bias": 3.0, "auc": 0.8, "brier": 0.14, "ece": 0.04},
    }
    assert rank_sum(scores) == {"a": 8.0, "b": 13.0, "c": 9.0}
    # the choice: within seed noise of the best on corr, AUC and Brier, ECE < 0.03, then the
    # lowest |bias|; "a" and "b" are far behind "c" on corr, "c" fails ECE
    near = {
        "a": {"corr": 0.598, "abs_bias": 1.0, "auc": 0.798, "brier": 0.1405, "ece": 0.02},
        "b": {"corr": 0.600, "abs_bias": 4.0, "auc": 0.800, "brier": 0.1400, "ece": 0.02},
        "c": {"corr": 0.600, "abs_bias": 0.5, "auc": 0.800, "brier": 0.1400, "ece": 0.04},
        "d": {"corr": 0.590, "abs_bias": 0.1, "auc": 0.800, "brier": 0.1400, "ece": 0.02},
    }
    assert choose(near, rank_sum(near)) == "a"
    assert choose(scores, rank_sum(scores)) == "a"  # none near the best: the lowest rank sum


def test_events_report_scores_the_lapse_model_in_days() -> None:
    from training.evaluate_events import EVENTS_LAPSE, run_events
    from training.reports import markdown_table

    log = simulate(300, days=20, seed=4).events
    cfg = dataclasses.replace(EVENTS_LAPSE, epochs=2, units=8)
    report = run_events(
        log, models=("pareto", "lapse", "lapse+pareto"), per_day=True,
        lapse_seeds=(0,), lapse_config=cfg,
    )  # fmt: skip
    rows = report["models"]
    assert set(rows) == {"Pareto/NBD", "LSTM-BTYD", "LSTM-BTYD+Pareto/NBD"}
    for m in rows.values():
        assert 0.0 <= m["brier"] <= 1.0 and 0.0 <= m["ece"] <= 1.0 and m["total"] > 0
    assert report["info"]["LSTM-BTYD"]["config"]["unit_h"] == 24.0
    assert set(report["verdict"]) == {"LSTM-BTYD", "LSTM-BTYD+Pareto/NBD"}
    assert "LSTM-BTYD vs the classic models run:" in markdown_table(report)


def test_the_lapse_posterior_head_is_the_beta_prior_updated_by_the_survived_chances() -> None:
    """BG/NBD's posterior on the lapse chance: Beta(a, b) -> Beta(a, b + x) after x repeat
    events, so the head's p falls with x as a / (a + b + x) and kappa grows by x."""
    from keras import ops

    from training.lapse import _params, _params_posterior

    rng = np.random.default_rng(1)
    raw = rng.normal(0.0, 1.0, (40, 4)).astype(np.float32)
    x = rng.integers(0, 30, 40).astype(np.float32)
    static = np.stack([np.log1p(x), np.zeros(40), np.zeros(40)], axis=1).astype(np.float32)
    both = np.concatenate([raw, static], axis=1)
    prior = np.asarray(ops.convert_to_numpy(_params(both)), dtype=np.float64)
    post = np.asarray(ops.convert_to_numpy(_params_posterior(both)), dtype=np.float64)
    a, b = prior[:, 2] * prior[:, 3], (1.0 - prior[:, 2]) * prior[:, 3]
    np.testing.assert_allclose(post[:, :2], prior[:, :2], rtol=1e-6)
    np.testing.assert_allclose(post[:, 2], np.clip(a / (a + b + x), 1e-4, 1 - 1e-4), rtol=1e-4)
    np.testing.assert_allclose(post[:, 3], a + b + x, rtol=1e-4)


def test_row_weights_lean_toward_long_windows_and_keep_the_row_count() -> None:
    from training.landmarks import Rows
    from training.lapse import row_weights

    window = np.array([1.0, 2.0, 4.0, 8.0])
    zeros = np.zeros(4)
    rows = Rows(np.arange(4), zeros, zeros, zeros, window)
    np.testing.assert_allclose(row_weights(rows, 0.0), 1.0)
    w = row_weights(rows, 2.0)
    assert w.sum() == pytest.approx(4.0) and np.all(np.diff(w) > 0)
    np.testing.assert_allclose(w[1:] / w[:-1], 4.0)


def test_row_weights_can_lean_toward_repeat_buyers_too() -> None:
    from training.landmarks import Rows
    from training.lapse import row_weights

    window = np.ones(4)
    zeros = np.zeros(4)
    rows = Rows(np.array([0, 1, 1, 2]), zeros, zeros, zeros, window)
    repeats = np.array([0.0, 1.0, 3.0])  # per history: 1 + x = 1, 2, 4
    w = row_weights(rows, 0.0, repeats, 1.0)
    assert w.sum() == pytest.approx(4.0)
    np.testing.assert_allclose(w / w[0], [1.0, 2.0, 2.0, 4.0])
    np.testing.assert_allclose(row_weights(rows, 0.0, repeats, 0.0), 1.0)
