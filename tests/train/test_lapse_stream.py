"""The lapse step model in the stream: the worker's incremental state and scores are the
training path's, the exported step is the Keras step, alerts do not depend on batch sizes,
and a model of an unknown state layout is refused.

One tiny model (8 units, 2 epochs, a simulated log of 150 users over 30 days), trained and
exported once for the module, and one with the exponential lifetime for its own test (a few
seconds each on two cores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from decay import btyd
from decay.features import FeatureSpec, gather_windows, prepare_events
from decay.lapse_state import static_features, unpack_states
from decay.scoring import HOUR_S
from decay.settings import Settings
from decay.state import decode_state
from stream_app.processor import BatchOutput, Processor, ProcessorConfig, Record
from stream_app.store import MemoryStore
from training.simulate import simulate

pytestmark = pytest.mark.train

UNIT_H = 24.0  # days: the log spans a month
HORIZON_H = 72.0
THRESHOLD = 0.2


@dataclass
class Trained:
    result: Any  # training.lapse.LapseModel
    path: Path
    events: pd.DataFrame


def train(tmp: Path, dropout: str, epochs: int) -> Trained:
    from training.lapse import LapseConfig, fit
    from training.lapse_step import export

    events = simulate(n_users=150, days=30, seed=5).events
    spec = FeatureSpec(horizon_h=HORIZON_H)
    cfg = LapseConfig(
        units=8,
        epochs=epochs,
        unit_h=UNIT_H,
        landmark_every_h=HORIZON_H,
        min_window_h=HORIZON_H,
        dropout=dropout,
    )
    result = fit(events, int(events["ts"].max()), spec, cfg)
    path = tmp / "step.onnx"
    export(result, path)
    return Trained(result, path, events)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train(tmp_path_factory.mktemp("lapse"), "fixed", 2)


@dataclass
class Whole:
    """The training path at every event of the log, in the event table's order."""

    table: Any
    h: np.ndarray
    params: np.ndarray
    n_events: np.ndarray
    span_ms: np.ndarray


def whole_history(t: Trained) -> Whole:
    from training.landmarks import event_amounts
    from training.lapse import whole_history as whole_spec
    from training.lapse_step import whole_history_states

    table = prepare_events(t.events, whole_spec(t.result.spec, t.events))
    every = np.arange(table.ts.shape[0], dtype=np.int64)
    x, lengths = gather_windows(table, table.user_of, every)
    first = table.starts[table.user_of]
    cum = np.cumsum(event_amounts(t.events))
    amount_sum = cum - np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    n_events = every - first + 1
    static = static_features(n_events, table.ts[first], table.ts, amount_sum, UNIT_H)
    out = t.result.model.predict({"x": x, "lengths": lengths, "static": static}, verbose=0)
    h = whole_history_states(t.result.model, x, lengths)[every, lengths - 1]
    return Whole(table, h, np.asarray(out["params"]), n_events, table.ts - table.ts[first])


def closed_form(
    w: Whole, idx: np.ndarray, dropout: str = "fixed"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peak, half-life and deadline (seconds) of the training path's heads at events idx."""
    from decay import lifetime

    par = w.params[idx].astype(np.float64)
    k = par[:, 0] + w.n_events[idx] - 1.0
    beta = par[:, 1] + w.span_ms[idx] / (UNIT_H * HOUR_S * 1000.0)
    p, horizon = par[:, 2], HORIZON_H / UNIT_H
    to_s = UNIT_H * HOUR_S
    if dropout == "exp":  # p is the lapse rate mu
        return (
            lifetime.interest(k, beta, p, horizon, np.zeros_like(k)),
            lifetime.half_life(k, beta, p, horizon) * to_s,
            lifetime.deadline(k, beta, p, horizon, THRESHOLD) * to_s,
        )
    return (
        btyd.interest(p, k, beta, horizon, 0.0),
        btyd.half_life(p, k, beta, horizon) * to_s,
        btyd.deadline(p, k, beta, horizon, THRESHOLD) * to_s,
    )


def records(events: pd.DataFrame) -> list[Record]:
    """The log as the events topic would carry it: one partition, in file (time) order."""
    out = []
    for offset, row in enumerate(events.to_dict("records")):
        value = {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
        value = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in value.items()}
        key = str(row["user_id"]).encode()
        out.append(Record(0, offset, key, json.dumps(value).encode(), int(row["ts"])))
    return out


def run(proc: Processor, store: MemoryStore, recs: list[Record], size: int) -> list[BatchOutput]:
    outs = []
    for i in range(0, len(recs), size):
        out = proc.process(recs[i : i + size])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        outs.append(out)
    return outs


def test_stream_state_and_scores_equal_the_training_path_on_every_event(
    trained: Trained,
) -> None:
    """Every event of the log through the worker's scorer, against the model run over each
    whole history in training: h, params, the counters and the scores after every event
    (rtol 1e-5); then through the processor (batches of 500, the state stored between them):
    the peak after every event and each user's stored state at the end of every batch."""
    from decay.events import Event, Limits, parse_event
    from stream_app.lapse_scorer import LapseScorer

    w = whole_history(trained)
    table = w.table
    scorer = LapseScorer(trained.path, FeatureSpec())
    recs = records(trained.events)
    # the log's events in the table's order (by user, then time; file order breaks ties)
    by_user: dict[str, list[Event]] = {}
    for r in recs:
        e = parse_event(r.value, r.key, Limits(max_ts_ms=2**62))
        assert isinstance(e, Event)
        by_user.setdefault(e.user_id, []).append(e)
    users = [str(u) for u in table.users]
    assert [len(by_user[u]) for u in users] == np.diff(table.starts).tolist()
    # every user's whole log in one call (the scorer steps it in rounds of users' i-th events)
    after = scorer.step([scorer.start()] * len(users), [by_user[u] for u in users])
    st = unpack_states([s for a in after for s in a], scorer.tag, scorer.units)  # table order
    np.testing.assert_allclose(st["h"], w.h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st["params"], w.params, rtol=1e-5, atol=1e-7)
    assert st["n_events"].tolist() == w.n_events.tolist()
    assert (st["last_ts_ms"] - st["first_ts_ms"]).tolist() == w.span_ms.tolist()
    got = scorer.scores([s for a in after for s in a], THRESHOLD)
    every = np.arange(table.ts.shape[0])
    peak, half_life, deadline = closed_form(w, every)
    np.testing.assert_allclose(got.peak, peak, rtol=1e-5)
    np.testing.assert_allclose(got.half_life_s, half_life, rtol=1e-5)
    np.testing.assert_allclose(got.deadline_s, deadline, rtol=1e-5)
    assert np.isfinite(got.deadline_s).all() and len(got.peak) == table.ts.shape[0]

    # through the processor: parsing, rounds, the state stored between batches
    store = MemoryStore()
    now = int(trained.events["ts"].max())
    proc = Processor(ProcessorConfig(threshold=THRESHOLD), scorer, store, lambda: now)
    pos = {u: k for k, u in enumerate(users)}
    seen = dict.fromkeys(users, 0)
    for b in range(0, len(recs), 500):
        (out,) = run(proc, store, recs[b : b + 500], 500)
        idx = []
        for r in recs[b : b + 500]:
            u = r.key.decode() if r.key else ""
            idx.append(table.starts[pos[u]] + seen[u])
            seen[u] += 1
        np.testing.assert_allclose(out.peaks, closed_form(w, np.array(idx))[0], rtol=1e-5)
        for (_, u), raw in out.writes.items():
            if u.startswith("\x00"):
                continue
            st = unpack_states([decode_state(raw).model_state], scorer.tag, scorer.units)
            last = table.starts[pos[u]] + seen[u] - 1
            np.testing.assert_allclose(st["h"][0], w.h[last], rtol=1e-5, atol=1e-6)
            assert int(st["n_events"][0]) == w.n_events[last]
    assert sum(seen.values()) == len(recs)


def test_the_onnx_step_is_the_keras_step_on_1000_inputs(trained: Trained) -> None:
    """Export parity: 1,000 events of the log with a stored state each, every user's first
    event among them (h = c = 0, the counters of one event)."""
    import onnxruntime as ort

    from training.lapse_step import step_model

    w = whole_history(trained)
    table = w.table
    firsts = table.starts[:-1][np.diff(table.starts) > 0]
    rng = np.random.default_rng(7)
    rest = np.setdiff1d(np.arange(table.ts.shape[0]), firsts)
    idx = np.sort(np.concatenate([firsts, rng.choice(rest, 1000 - firsts.shape[0], False)]))
    first = np.isin(idx, firsts)
    units = trained.result.config.units
    h = np.where(first[:, None], 0.0, rng.uniform(-0.9, 0.9, (1000, units))).astype(np.float32)
    c = np.where(first[:, None], 0.0, rng.normal(0.0, 1.5, (1000, units))).astype(np.float32)
    whole = table.starts[table.user_of[idx]]
    static = static_features(
        w.n_events[idx], table.ts[whole], table.ts[idx], np.zeros(1000), UNIT_H
    )
    feeds = {"event": table.rows[idx], "h": h, "c": c, "static": static}
    assert np.all(feeds["event"][first, 0] == 0.0)  # a first event has no gap
    keras_out = step_model(trained.result.model, trained.result.spec.n_features).predict(
        feeds, verbose=0
    )
    session = ort.InferenceSession(str(trained.path), providers=["CPUExecutionProvider"])
    names = ["h_next", "c_next", "params"]
    onnx_out = dict(zip(names, session.run(names, feeds), strict=True))
    for name in names:
        diff = np.abs(onnx_out[name] - keras_out[name])
        print(f"{name}: max abs diff {diff.max():.2e}")
        np.testing.assert_allclose(onnx_out[name], keras_out[name], rtol=1e-5, atol=1e-6)
    assert int(first.sum()) == int(firsts.shape[0]) > 100


def batch_log(events: pd.DataFrame) -> list[Record]:
    """The first 2,000 events, a few of them delivered late (after a user's newer ones)."""
    recs = records(events.iloc[:2000])
    rng = np.random.default_rng(3)
    for i in sorted(rng.choice(len(recs) - 40, 40, replace=False).tolist()):
        recs.insert(i + 30, recs.pop(i))  # 30 records later, still within the grace period
    return [Record(0, k, r.key, r.value, r.timestamp) for k, r in enumerate(recs)]


def test_lapse_alerts_and_state_do_not_depend_on_batch_size(trained: Trained) -> None:
    from stream_app.lapse_scorer import LapseScorer

    scorer = LapseScorer(trained.path)
    recs = batch_log(trained.events)
    newest: dict[bytes | None, int] = {}
    older = 0  # events older than their user's last one: counted, not stepped
    for r in recs:
        older += r.timestamp < newest.get(r.key, 0)
        newest[r.key] = max(newest.get(r.key, 0), r.timestamp)
    assert older >= 10
    now = int(trained.events["ts"].max())
    results = []
    for size in (1, 7, 500):
        store = MemoryStore()
        proc = Processor(ProcessorConfig(threshold=THRESHOLD), scorer, store, lambda: now)
        outs = run(proc, store, recs, size)
        alerts = [json.loads(a.payload) for out in outs for a in out.alerts]
        ids = [(a["alert_id"], a["kind"], a["score"], a["half_life_hours"]) for a in alerts]
        stepped = sum(out.counts["ok"] + out.counts["late"] for out in outs)
        results.append((ids, store.data, stepped))
    ids, data, stepped = results[0]
    assert stepped == len(recs)
    print(f"{len(ids)} alerts, {older} events older than their user's last")
    assert {kind for _, kind, _, _ in ids} >= {"dormant", "reengaged"}
    assert all(len(v) > 0 for v in data.values())
    for other in results[1:]:
        assert other[0] == ids
        assert other[1] == data


def test_a_step_model_is_loaded_as_such_and_an_unknown_state_layout_refused(
    trained: Trained, tmp_path: Path
) -> None:
    import onnx

    from decay.card import read_card, write_card
    from stream_app.lapse_scorer import LapseScorer, UnknownStateLayoutError
    from stream_app.rollout import ModelUnavailableError, ModelWatcher, load_scorer, startup_scorer

    settings = Settings(scorer="onnx", model_path=trained.path)
    assert isinstance(load_scorer(settings), LapseScorer)
    card = read_card(trained.path)
    proto = onnx.load(str(trained.path))
    layout = {**card.state_layout, "h": 32}  # h of another size than c
    write_card(proto, type(card)(**{**card.__dict__, "state_layout": layout}))
    foreign = tmp_path / "foreign.onnx"
    onnx.save_model(proto, foreign)
    with pytest.raises(UnknownStateLayoutError, match="state layout this worker does not know"):
        load_scorer(settings, foreign)
    with pytest.raises(ModelUnavailableError, match="DECAY_MODEL_PATH: cannot load"):
        startup_scorer(Settings(scorer="onnx", model_path=foreign))
    wide = {**card.state_layout, "h": 32, "c": 32}  # a layout the graph does not have
    write_card(proto, type(card)(**{**card.__dict__, "state_layout": wide}))
    onnx.save_model(proto, tmp_path / "wide.onnx")
    with pytest.raises(UnknownStateLayoutError, match=r"inputs are .* wide"):
        load_scorer(settings, tmp_path / "wide.onnx")
    refused: list[Path] = []
    watcher = ModelWatcher(tmp_path, settings, lambda p, _: refused.append(p))
    assert watcher.poll() is None and refused == [tmp_path / "wide.onnx"]  # the newest
    assert watcher.poll() is None  # refused once, then skipped: the worker keeps its model


def test_the_user_page_curve_of_a_whole_history_in_the_window_is_the_stream_score(
    trained: Trained,
) -> None:
    """``curves`` steps a window from a new user's state: for a user whose every event is in
    the window (and whose amounts are prices, quantity 1), the curve after each event starts
    at the peak the worker scored; the page renders with it."""
    from stream_app.lapse_scorer import LapseScorer
    from stream_app.queries import user_clock
    from stream_app.ui import user_page
    from stream_app.user_view import prefix_windows

    scorer = LapseScorer(trained.path)
    events = trained.events
    single = events.groupby("user_id")["quantity"].agg(lambda q: bool((q.fillna(1) == 1).all()))
    recs = records(events)
    store = MemoryStore()
    now = int(events["ts"].max())
    proc = Processor(ProcessorConfig(threshold=THRESHOLD), scorer, store, lambda: now)
    outs = run(proc, store, recs, 500)
    peaks: dict[str, list[float]] = {}
    applied = [r.key.decode() for r in recs if r.key]
    for user, peak in zip(applied, [p for out in outs for p in out.peaks], strict=True):
        peaks.setdefault(user, []).append(peak)
    checked = []
    for user, raw in store.data[0].items():
        if user.startswith("\x00") or not single[user]:
            continue
        st = decode_state(raw)
        if st.n_total > st.n_events:  # the lapse model's record keeps its last 10 events
            continue
        got = scorer.curves(prefix_windows(st), np.zeros(1))[:, 0]
        np.testing.assert_allclose(got, peaks[user], rtol=1e-5)
        checked.append((user, st))
    assert len(checked) >= 20
    assert "<svg" in user_page(*checked[-1], scorer, THRESHOLD, user_clock(0, now, now))


def test_with_the_exponential_lifetime_the_stream_scores_are_the_training_paths(
    tmp_path: Path,
) -> None:
    """Dropout ``exp`` (Pareto/NBD's lifetime): the worker's scores after every event are
    decay.lifetime's closed form on the heads training computes over each whole history."""
    from decay.events import Event, Limits, parse_event
    from stream_app.lapse_scorer import LapseScorer

    t = train(tmp_path, "exp", 1)
    w = whole_history(t)
    scorer = LapseScorer(t.path)
    assert scorer.dropout == "exp"
    by_user: dict[str, list[Event]] = {}
    for r in records(t.events):
        e = parse_event(r.value, r.key, Limits(max_ts_ms=2**62))
        assert isinstance(e, Event)
        by_user.setdefault(e.user_id, []).append(e)
    users = [str(u) for u in w.table.users]
    after = scorer.step([scorer.start()] * len(users), [by_user[u] for u in users])
    got = scorer.scores([s for a in after for s in a], THRESHOLD)
    peak, half_life, deadline = closed_form(w, np.arange(w.table.ts.shape[0]), "exp")
    np.testing.assert_allclose(got.peak, peak, rtol=1e-5)
    np.testing.assert_allclose(got.half_life_s, half_life, rtol=1e-5)
    np.testing.assert_allclose(got.deadline_s, deadline, rtol=1e-5)
    assert np.all((got.peak > 0) & (got.peak < 1))


def test_after_a_rollout_from_a_window_model_a_user_resumes_from_their_window(
    trained: Trained,
) -> None:
    """The baseline serves the first 2,000 events, the lapse model the rest: a user whose
    whole history is in the window (at quantity 1) gets the state and scores the lapse model
    would have given them had it served from the start."""
    from decay.scoring import ExponentialDecayScorer
    from stream_app.lapse_scorer import LapseScorer

    scorer = LapseScorer(trained.path)
    recs = records(trained.events)
    now = int(trained.events["ts"].max())
    config = ProcessorConfig(threshold=THRESHOLD)
    always, switched = MemoryStore(), MemoryStore()
    run(Processor(config, scorer, always, lambda: now), always, recs, 500)
    baseline = ExponentialDecayScorer(half_life_s=72 * 3600.0)
    run(Processor(config, baseline, switched, lambda: now), switched, recs[:2000], 500)
    before = {u: decode_state(v) for u, v in switched.data[0].items() if not u.startswith("\x00")}
    assert all(st.model_state == b"" for st in before.values())
    run(Processor(config, scorer, switched, lambda: now), switched, recs[2000:], 500)
    single = trained.events.groupby("user_id")["quantity"].agg(
        lambda q: bool((q.fillna(1) == 1).all())
    )
    later = {r.key.decode() for r in recs[2000:] if r.key}
    checked = 0
    for user, st in before.items():
        if st.n_total > 64 or not single[user] or user not in later:
            continue
        want = unpack_states([decode_state(always.get(0, user) or b"").model_state], scorer.tag, 8)
        got = unpack_states([decode_state(switched.get(0, user) or b"").model_state], scorer.tag, 8)
        np.testing.assert_allclose(got["h"], want["h"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["params"], want["params"], rtol=1e-5, atol=1e-7)
        assert got["n_events"].tolist() == want["n_events"].tolist() and want["n_events"][0] > 0
        checked += 1
    assert checked >= 10
