"""The feature encoder: stream windows and the training path must give identical arrays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from decay.events import Event, EventType
from decay.features import (
    FeatureSpec,
    category_bucket,
    encode_log,
    encode_windows,
    gather_windows,
    last_event_index,
    prepare_events,
)
from decay.state import UserState
from decay.window import Window

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, a Tuesday
H = 3_600_000


def _log(seed: int = 3, users: int = 12, per_user: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = ["view", "click", "cart", "purchase", "search", "other", "wishlist"]
    cats: list[str | None] = ["shoes", "books", "toys", "garden", None]
    rows = []
    for u in range(users):
        n = int(rng.integers(1, per_user))
        t = T0 + np.cumsum(rng.exponential(5 * H, size=n)).astype(np.int64)
        if n > 3:
            t[2] = t[1]  # a tie: order of arrival must be kept
        for i in range(n):
            price = float(rng.uniform(1, 300)) if rng.random() < 0.7 else None
            rows.append(
                {
                    "event_id": f"u{u}-{i}",
                    "user_id": f"user{u}",
                    "ts": int(t[i]),
                    "type": kinds[int(rng.integers(len(kinds)))],
                    "category": cats[int(rng.integers(len(cats)))],
                    "price": price,
                }
            )
    df = pd.DataFrame(rows).sort_values("ts", kind="stable", ignore_index=True)
    return df


def _event(row: pd.Series) -> Event:
    price = None if pd.isna(row["price"]) else float(row["price"])
    cat = None if pd.isna(row["category"]) else str(row["category"])
    return Event(
        event_id=row["event_id"],
        user_id=row["user_id"],
        ts_ms=int(row["ts"]),
        type=EventType[str(row["type"]).upper()],
        category=cat,
        price=price,
    )


@pytest.mark.parametrize(("seq_len", "max_events"), [(64, 64), (8, 8), (8, 20)])
def test_stream_windows_and_training_path_give_identical_arrays(
    seq_len: int, max_events: int
) -> None:
    spec = FeatureSpec(seq_len=seq_len, cat_buckets=8)
    df = _log()
    states: dict[str, UserState] = {}
    windows: list[Window] = []
    for offset, (_, row) in enumerate(df.iterrows()):
        st = states.setdefault(row["user_id"], UserState())
        assert st.add(_event(row), offset, max_events)
        windows.append(st.window())
    x_stream, len_stream = encode_windows(windows, spec)

    table = prepare_events(df, spec)
    user = pd.Index(table.users).get_indexer(df["user_id"].astype(str)).astype(np.int64)
    # the window right after each event: the event's own position in the sorted table
    pos = np.empty(len(df), dtype=np.int64)
    order = np.lexsort((df["ts"].to_numpy(), user))
    pos[order] = np.arange(len(df))
    x_train, len_train = gather_windows(table, user, pos)

    np.testing.assert_array_equal(len_stream, len_train)
    np.testing.assert_array_equal(x_stream, x_train)  # bit-identical, not just close
    assert x_stream.dtype == np.float32 and len_stream.dtype == np.int32
    most = int(df["user_id"].value_counts().max())
    assert len_stream.max() == min(seq_len, max_events, most)


def test_cut_times_pick_events_at_or_before_the_cut() -> None:
    spec = FeatureSpec(seq_len=4, cat_buckets=4)
    df = _log(users=3, per_user=10)
    first_user = str(df["user_id"].iloc[0])
    ts = df.loc[df["user_id"] == first_user, "ts"].to_numpy()
    cuts = np.array([ts[0] - 1, ts[0], ts[-1] + 10 * H])
    x, lengths = encode_log(df, [first_user] * 3 + ["nobody"], np.append(cuts, T0), spec)
    assert lengths.tolist() == [0, 1, min(4, ts.shape[0]), 0]
    assert not x[0].any() and not x[3].any()
    table = prepare_events(df, spec)
    u = np.array([0, 0], dtype=np.int64)
    got = last_event_index(table, u, np.array([table.ts[0] - 1, table.ts[0]]))
    assert got.tolist() == [-1, 0]


def test_encoding_of_one_event_by_hand() -> None:
    spec = FeatureSpec(seq_len=3, cat_buckets=4)
    ts = T0 + 2 * H
    w = Window(
        ts=np.array([T0, ts], dtype=np.int64),
        types=np.array([EventType.VIEW, EventType.PURCHASE], dtype=np.uint8),
        cats=np.array([0, 255], dtype=np.uint8),
        prices=np.array([0.0, 9.0], dtype=np.float32),
        categories=("shoes",),
        n_total=5,
        first_ts_ms=T0 - 24 * H,
    )
    x, lengths = encode_windows([w, w], spec)
    assert lengths.tolist() == [2, 2] and x.shape == (2, 3, spec.n_features)
    row = dict(zip(spec.feature_names, x[0, 1].tolist(), strict=True))
    assert row["log_gap_h"] == pytest.approx(math.log1p(2.0))
    assert row["log_price"] == pytest.approx(math.log1p(9.0))
    assert row["log_count"] == pytest.approx(math.log1p(5))
    assert row["log_tenure_d"] == pytest.approx(math.log1p(26 / 24))
    assert row["type_purchase"] == 1.0 and sum(x[0, 1, 8:16]) == 1.0
    hour = ((ts // 1000) % 86400) / 3600
    assert row["hod_sin"] == pytest.approx(math.sin(2 * math.pi * hour / 24), abs=1e-6)
    assert row[f"cat_{category_bucket(None, 4)}"] == 1.0  # missing category = "unknown"
    assert x[0, 0, 0] == 0.0 and x[0, 0, 6] == pytest.approx(math.log1p(4))
    assert not x[0, 2].any()  # right padding


def test_category_bucket_is_stable_and_in_range() -> None:
    # crc32("shoes") is fixed forever; Python's hash() would change between processes
    assert category_bucket("shoes", 1 << 32) == 0x14CF8197
    assert category_bucket("shoes", 16) == 7
    assert all(0 <= category_bucket(f"c{i}", 16) < 16 for i in range(100))
    assert category_bucket(None, 16) == category_bucket("unknown", 16)


def test_empty_inputs() -> None:
    spec = FeatureSpec(seq_len=4, cat_buckets=4)
    x, lengths = encode_windows([], spec)
    assert x.shape == (0, 4, spec.n_features) and lengths.shape == (0,)
    empty = Window(
        ts=np.zeros(0, np.int64),
        types=np.zeros(0, np.uint8),
        cats=np.zeros(0, np.uint8),
        prices=np.zeros(0, np.float32),
        categories=(),
        n_total=0,
        first_ts_ms=0,
    )
    x, lengths = encode_windows([empty], spec)
    assert lengths.tolist() == [0] and not x.any()


def test_spec_refuses_bad_edges() -> None:
    with pytest.raises(ValueError):
        FeatureSpec(bin_edges_h=(1.0, 2.0))
    assert FeatureSpec().encoding() == FeatureSpec(horizon_h=1.0).encoding()
