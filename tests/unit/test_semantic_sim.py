"""The semantic simulator: real names in families, titles and queries, drifts in the truth."""

from __future__ import annotations

import numpy as np

from decay.eventlog import EVENT_COLUMNS
from training.semantic_sim import (
    CATEGORY_NAMES,
    FAMILY_OF,
    SemanticConfig,
    session_starts,
    simulate_semantic,
)


def test_events_carry_titles_and_queries_in_the_contract() -> None:
    log = simulate_semantic(60, days=30, seed=3)
    ev = log.events
    assert tuple(ev.columns[: len(EVENT_COLUMNS)]) == EVENT_COLUMNS
    assert ev["event_id"].is_unique and ev["ts"].is_monotonic_increasing
    assert set(ev["category"]) <= set(CATEGORY_NAMES)
    searches = ev[ev["type"] == "search"]
    assert len(searches) and searches["query"].notna().all() and searches["item_id"].isna().all()
    views = ev[ev["type"] == "view"]
    assert views["item_title"].notna().all() and views["query"].isna().all()
    assert (ev["item_title"].dropna().str.len() <= 256).all()
    # a title names a product of its category
    row = views.iloc[0]
    assert any(p in row["item_title"] for p in _products(row["category"]))


def _products(category: str) -> tuple[str, ...]:
    from training.semantic_sim import FAMILIES

    return FAMILIES[FAMILY_OF[category]][category]


def test_the_same_seed_gives_the_same_log() -> None:
    a, b = simulate_semantic(30, days=20, seed=5), simulate_semantic(30, days=20, seed=5)
    assert a.events.equals(b.events) and a.truth.equals(b.truth)


def test_truth_records_drifts_and_behaviour_follows_them() -> None:
    cfg = SemanticConfig(drift_p=1.0, related_p=1.0)
    log = simulate_semantic(300, days=60, seed=9, config=cfg)
    truth = log.truth.set_index("user_id")
    assert truth["drift_to"].notna().all() and truth["drift_related"].all()
    assert (truth["drift_to"] != truth["drift_from"]).all()
    assert all(FAMILY_OF[t] == f for t, f in zip(truth["drift_to"], truth["family"], strict=True))
    sessions = session_starts(log.events).join(truth, on="user_id")
    before = sessions[sessions["ts"] < sessions["drift_ms"]]
    after = sessions[sessions["ts"] >= sessions["drift_ms"]]
    # the old main category loses its sessions, the target gains them
    share = lambda df, col: float(np.mean(df["category"] == df[col]))  # noqa: E731
    assert share(before, "drift_from") > 0.5 > 0.15 > share(after, "drift_from")
    assert share(after, "drift_to") > 0.5 > 0.15 > share(before, "drift_to")


def test_unrelated_drifts_leave_the_family() -> None:
    log = simulate_semantic(200, days=30, seed=2, config=SemanticConfig(drift_p=1.0, related_p=0.0))
    t = log.truth
    assert not t["drift_related"].any()
    assert all(FAMILY_OF[c] != f for c, f in zip(t["drift_to"], t["family"], strict=True))


def test_session_starts_split_on_a_30_minute_gap() -> None:
    import pandas as pd

    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "ts": [0, 29 * 60_000, 29 * 60_000 + 31 * 60_000, 5],
            "category": ["x", "y", "z", "w"],
        }
    )
    got = session_starts(ev)
    assert got.values.tolist() == [["a", 0, "x"], ["a", 3_600_000, "z"], ["b", 5, "w"]]
