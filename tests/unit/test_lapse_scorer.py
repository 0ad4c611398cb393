"""The lapse step model's batch path (stream_app.lapse_scorer) with the shipped model: a
batch stepped in rounds is the events stepped one at a time, and its scores are the
closed form's, with the root search to 1 us of silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decay import btyd
from decay.events import Event, EventType
from decay.lapse_state import unpack_states
from decay.scoring import HOUR_S, without_event
from decay.window import NO_CATEGORY, Window
from stream_app.lapse_scorer import ROOT_TOL_S, LapseScorer
from stream_app.window_steps import window_events

MODEL = Path(__file__).resolve().parents[2] / "stream_app" / "models" / "cdnow-lapse.onnx"
DAY_MS = 86_400_000


def _events(seed: int, users: int) -> list[list[Event]]:
    """Per user 0-6 events a few days apart, some of them older than the one before."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(users):
        ts = 850_000_000_000 + int(rng.integers(0, 30)) * DAY_MS
        evs = []
        for j in range(int(rng.integers(0, 7))):
            ts += int(rng.integers(-2, 9)) * DAY_MS // 2  # now and then one step back
            kind = EventType.PURCHASE if rng.random() < 0.7 else EventType.VIEW
            price = float(rng.choice([np.nan, 0.0, 12.5, 40.0])) if j % 3 else 9.99
            evs.append(
                Event(
                    event_id=f"{u}-{j}",
                    user_id=str(u),
                    ts_ms=ts,
                    type=kind,
                    category=None if j % 4 == 0 else f"c{j % 3}",
                    price=None if np.isnan(price) else price,
                    quantity=None if j % 2 else int(rng.integers(1, 4)),
                )
            )
        out.append(evs)
    return out


@pytest.fixture(scope="module")
def scorer() -> LapseScorer:
    return LapseScorer(MODEL)


def test_a_batch_in_rounds_is_its_events_one_at_a_time(scorer: LapseScorer) -> None:
    events = _events(3, 60)
    batched = scorer.step([scorer.start()] * len(events), events)
    for evs, got in zip(events, batched, strict=True):
        state, want = scorer.start(), []
        for e in evs:
            state = scorer.step([state], [[e]])[0][0]
            want.append(state)
        assert got == want  # bytes: counters, h, c and params
    st = unpack_states([s for a in batched for s in a], scorer.tag, scorer.units)
    assert st["n_events"].max() == 6 and (st["amount_sum"] >= 0).all()


def test_scores_are_the_closed_form_with_roots_to_a_microsecond(scorer: LapseScorer) -> None:
    states = [s for a in scorer.step([scorer.start()] * 80, _events(4, 80)) for s in a]
    got = scorer.scores(states, 0.125)
    p, k, beta = scorer.heads(unpack_states(states, scorer.tag, scorer.units))
    h, to_s = scorer.horizon, scorer.unit_h * HOUR_S
    np.testing.assert_allclose(got.peak, btyd.interest(p, k, beta, h, 0.0), rtol=1e-12)
    # the default search (rtol 1e-12) stands in for the old 80 bisections here
    for have, want in (
        (got.half_life_s, btyd.half_life(p, k, beta, h) * to_s),
        (got.deadline_s, btyd.deadline(p, k, beta, h, 0.125) * to_s),
    ):
        assert np.abs(have - want).max() < 2 * ROOT_TOL_S + 1e-12 * want.max()
    curve = btyd.interest_curve(p, k, beta, h)  # at the crossing or past it (to the seconds' ulp)
    assert (curve(got.deadline_s / to_s) <= 0.125 * (1 + 1e-12)).all()
    assert (curve(got.half_life_s / to_s) <= got.peak / 2 * (1 + 1e-12)).all()


@pytest.mark.parametrize("heavy", [False, True])
def test_the_counters_counted_at_once_are_those_counted_round_by_round(heavy: bool) -> None:
    from decay.lapse_state import state_dtype
    from stream_app.lapse_rounds import batch_rounds, count_all, count_rounds

    rng = np.random.default_rng(5)
    users = 40
    m = rng.integers(1, 6, users)
    if heavy:  # one user with most of the events: too wide a grid, counted in rounds
        m[3] = 2000
    st = np.zeros(users, dtype=state_dtype(4))
    old = rng.random(users) < 0.6  # the others are new users
    st["n_events"] = np.where(old, rng.integers(1, 50, users), 0)
    st["first_ts_ms"] = np.where(old, 1_000_000, 0)
    st["last_ts_ms"] = np.where(old, 5_000_000 + rng.integers(0, 100_000, users), 0)
    st["amount_sum"] = np.where(old, rng.random(users) * 100, 0.0)
    n = int(m.sum())
    ts = 5_000_000 + rng.integers(-200_000, 200_000, n)  # some older than the user's last
    amount = np.where(rng.random(n) < 0.3, 0.0, rng.random(n) * 37.3)
    starts = np.cumsum(m) - m
    rounds = batch_rounds(m, starts)
    want = count_rounds(st.copy(), rounds, ts, amount)
    got = count_all(st.copy(), m, starts, rounds, ts, amount)
    assert got[0].tobytes() == want[0].tobytes()
    assert got[1].tolist() == want[1].tolist() and got[2].tolist() == want[2].tolist()
    assert not want[2].all() and want[2].any()


def _window(rng: np.random.Generator, n: int, n_total: int) -> Window:
    ts = 850_000_000_000 + np.cumsum(rng.integers(0, 5 * DAY_MS, n)).astype(np.int64)
    cats = rng.integers(0, 3, n).astype(np.uint8)
    cats[rng.random(n) < 0.3] = NO_CATEGORY
    return Window(
        ts,
        rng.integers(0, 8, n).astype(np.uint8),
        cats,
        rng.choice([0.0, 9.99, 40.0], n).astype(np.float32),
        ("a", "b", "c"),
        n_total,
        int(ts[0]) - (n_total - n) * DAY_MS,
    )


def test_explanations_windows_are_each_window_stepped_alone(scorer: LapseScorer) -> None:
    """occlusion's windows (each whole window, then without each of its last events), warmed
    up together with their events built once: the interest is bit for bit each window's
    stepped alone, from events of its own."""
    rng = np.random.default_rng(9)
    windows = [_window(rng, int(rng.integers(1, 11)), int(rng.integers(10, 40))) for _ in range(8)]
    variants = [v for w in windows for v in [w, *(without_event(w, j) for j in range(len(w.ts)))]]
    variants.insert(5, windows[0])  # the same window twice
    silent = np.array([[0.0, 3600.0, 86_400.0 * 9]])
    together = scorer.curves(variants, silent)
    alone = np.concatenate([scorer.curves([v], silent) for v in variants])
    assert together.tobytes() == alone.tobytes()
    made: dict = {}
    events = [window_events(v, made) for v in variants]
    assert sum(map(len, events)) > 3 * len(made)  # shared, not built again
    assert [e.ts_ms for e in events[0]] == windows[0].ts.tolist()


def test_window_events_are_the_rows_events_even_when_times_tie() -> None:
    """Events shared between windows only when time, type, category and price all match:
    rows at one time that differ in any of them stay apart."""
    ts = np.array([5_000, 5_000, 5_000, 5_000, 7_000], dtype=np.int64)
    types = np.array([1, 4, 1, 1, 1], dtype=np.uint8)
    cats = np.array([0, 0, 1, 0, NO_CATEGORY], dtype=np.uint8)
    prices = np.array([9.99, 9.99, 9.99, 40.0, 0.0], dtype=np.float32)
    w = Window(ts, types, cats, prices, ("a", "b"), 5, 5_000)
    made: dict = {}
    got = window_events(w, made) + window_events(w, made)
    rows = []
    columns = (ts.tolist(), types.tolist(), cats.tolist(), prices.tolist())
    for t, code, cat, price in zip(*columns, strict=True):
        name = None if cat == NO_CATEGORY else ("a", "b")[cat]
        rows.append(Event("", "", t, EventType(code), category=name, price=price))
    assert got == rows + rows
    assert len(made) == 5
