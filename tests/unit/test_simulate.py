from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from decay.eventlog import EVENT_COLUMNS, EVENT_TYPES
from training.simulate import (
    CATEGORY_NAMES,
    MS_PER_DAY,
    SimulatedLog,
    rhythm_grid,
    simulate,
    users_for_events,
)

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def log() -> SimulatedLog:
    return simulate(n_users=1_500, days=21, seed=11, start=START)


def test_same_seed_gives_identical_log() -> None:
    a = simulate(300, 10, seed=5, start=START)
    b = simulate(300, 10, seed=5, start=START)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = simulate(300, 10, seed=6, start=START)
    assert not a.events["ts"].equals(c.events["ts"])


def test_naive_start_is_utc() -> None:
    naive = simulate(50, 3, seed=1, start=START.replace(tzinfo=None))
    aware = simulate(50, 3, seed=1, start=START)
    pd.testing.assert_frame_equal(naive.events, aware.events)


def test_schema(log: SimulatedLog) -> None:
    ev = log.events
    assert tuple(ev.columns) == EVENT_COLUMNS
    assert ev["ts"].dtype == np.int64
    assert ev["price"].dtype == np.float64
    assert str(ev["quantity"].dtype) == "Int64"
    assert set(ev["type"].unique()) == set(EVENT_TYPES)
    assert ev[["event_id", "user_id", "ts", "type"]].notna().all().all()
    assert ev["ts"].between(log.start_ms, log.end_ms - 1).all()

    with_item = ev["type"].isin(["view", "click", "cart", "purchase", "wishlist"])
    assert ev.loc[with_item, ["item_id", "category", "price"]].notna().all().all()
    assert (ev.loc[with_item, "price"] > 0).all()
    assert ev.loc[~with_item, ["item_id", "price"]].isna().all().all()
    assert set(ev["category"].dropna().unique()) <= set(CATEGORY_NAMES)

    with_qty = ev["type"].isin(["cart", "purchase"])
    assert (ev.loc[with_qty, "quantity"] >= 1).all()
    assert ev.loc[~with_qty, "quantity"].isna().all()


def test_sorted_with_unique_sequential_ids(log: SimulatedLog) -> None:
    ev = log.events
    assert ev["ts"].is_monotonic_increasing
    assert ev["event_id"].is_unique
    assert ev["event_id"].tolist() == [f"e{n}" for n in range(len(ev))]


def test_truth_matches_events(log: SimulatedLog) -> None:
    ev, truth = log.events, log.truth.set_index("user_id")
    assert len(truth) == 1_500 and truth.index.is_unique
    assert int(truth["n_events"].sum()) == len(ev)
    first = ev.groupby("user_id")["ts"].min()
    # the arrival is the first session, so every user has events from it on
    assert (first.reindex(truth.index) == truth["arrival_ts"]).all()
    assert (truth["sessions_per_day"] > 0).all()
    assert truth["dropout_p"].between(0, 1).all()
    # users arrive over the first half of the period, not all at t0
    arrival_day = (truth["arrival_ts"] - log.start_ms) / MS_PER_DAY
    assert arrival_day.max() <= 10.5
    assert arrival_day.min() < 1 and arrival_day.median() > 3


def test_churned_users_are_silent_after_churn(log: SimulatedLog) -> None:
    ev, truth = log.events, log.truth.set_index("user_id")
    last = ev.groupby("user_id")["ts"].max().reindex(truth.index)
    churned = truth["churned"]
    assert 0.1 < churned.mean() < 0.9
    assert (last[churned] <= truth.loc[churned, "churn_ts"]).all()
    assert (last[churned] == truth.loc[churned, "churn_ts"]).all()
    assert truth.loc[~churned, "churn_ts"].isna().all()


def test_funnel_ordering(log: SimulatedLog) -> None:
    counts = log.events["type"].value_counts()
    assert counts["purchase"] < counts["cart"] < counts["click"] < counts["view"]
    # every purchase follows an add-to-cart of the same item by the same user
    ev = log.events
    carts = ev[ev["type"] == "cart"][["user_id", "item_id", "ts"]]
    buys = ev[ev["type"] == "purchase"][["user_id", "item_id", "ts"]]
    joined = buys.merge(carts, on=["user_id", "item_id"], suffixes=("", "_cart"))
    preceded = joined[joined["ts_cart"] < joined["ts"]].groupby(["user_id", "item_id"]).size()
    assert len(preceded) == buys.groupby(["user_id", "item_id"]).ngroups


def test_daily_and_weekly_rhythm(log: SimulatedLog) -> None:
    hours = pd.to_datetime(log.events["ts"], unit="ms", utc=True).dt.hour
    by_hour = hours.value_counts()
    assert by_hour[[19, 20, 21]].sum() > 3 * by_hour[[2, 3, 4]].sum()

    edges, cum = rhythm_grid(log.start_ms, log.start_ms + 14 * MS_PER_DAY)
    intensity = np.diff(cum) / np.diff(edges)
    weekday = pd.to_datetime(edges[:-1], unit="ms", utc=True).weekday
    assert intensity[weekday >= 5].mean() > 1.1 * intensity[weekday < 5].mean()
    # normalised so that the rate is "sessions per average day"
    assert cum[-1] == pytest.approx(14, rel=0.01)


def test_preferences_switch(log: SimulatedLog) -> None:
    truth = log.truth
    switched = truth["switch_ts"].notna()
    assert 0.05 < switched.mean() < 0.3
    assert (truth.loc[switched, "switch_ts"] >= truth.loc[switched, "arrival_ts"]).all()
    assert (truth.loc[switched, "switch_ts"] < log.end_ms).all()
    moved = truth["final_top_category"] != truth["top_category"]
    assert moved[switched].mean() > 0.8
    assert moved[~switched].mean() < 0.5
    # views follow the user's main category
    views = log.events[log.events["type"] == "view"].merge(truth, on="user_id")
    assert (views["category"] == views["top_category"]).mean() > 0.3


def test_duplicates_repeat_whole_events() -> None:
    clean = simulate(300, 10, seed=2, start=START).events
    dirty = simulate(300, 10, seed=2, start=START, duplicate_fraction=0.02).events
    n_dup = len(dirty) - len(clean)
    assert n_dup == round(0.02 * len(clean))
    assert dirty["event_id"].duplicated().sum() == n_dup
    assert dirty["ts"].is_monotonic_increasing
    deduped = dirty.drop_duplicates(subset="event_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(deduped, clean)
    assert not dirty.drop_duplicates().duplicated(subset="event_id").any()


def test_users_for_events_is_close() -> None:
    n_users = users_for_events(60_000, days=14, seed=4, pilot_users=1_000)
    events = simulate(n_users, 14, seed=9, start=START).events
    assert 0.7 * 60_000 < len(events) < 1.3 * 60_000


@pytest.mark.parametrize(
    "kwargs",
    [{"n_users": 0}, {"days": 0.0}, {"duplicate_fraction": 1.0}],
)
def test_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"n_users": 10, "days": 1.0, "duplicate_fraction": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError):
        simulate(
            int(args["n_users"]),
            args["days"],
            0,
            START,
            duplicate_fraction=args["duplicate_fraction"],
        )


def test_truth_names_the_category_switched_to(log: SimulatedLog) -> None:
    truth = log.truth
    switched = truth["switch_ts"].notna()
    assert (truth["switch_category"].notna() == switched).all()
    moved = truth[switched]
    assert (moved["switch_category"] != moved["top_category"]).all()
    # After the switch the user's views go to the new category, away from the old main one.
    views = log.events[log.events["type"] == "view"].merge(moved, on="user_id")
    after = views["ts"] >= views["switch_ts"]
    to_new = views["category"] == views["switch_category"]
    to_old = views["category"] == views["top_category"]
    assert to_new[after].mean() > 0.5 > to_new[~after].mean()
    assert to_old[after].mean() < 0.5 * to_old[~after].mean()
