"""Feature spec fs2: categories as rows of the category space (PCA of name embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from decay.category_space import EncodedNames, SpaceRows
from decay.embeddings import EncoderUnavailable
from decay.events import Event, EventType
from decay.features import (
    FeatureSpec,
    encode_windows,
    gather_windows,
    prepare_events,
    space_spec,
)
from decay.state import UserState
from training.category_space import fit_log_space

T0 = 1_700_000_000_000
H = 3_600_000
NAMES = ["running shoes", "trail running", "cookware", "chef knives", "coffee", "books", "toys"]


class CountingNames:
    """The encoder's names, counting what is asked of it."""

    def __init__(self) -> None:
        self.inner = EncodedNames()
        self.asked: list[str] = []

    def vectors(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        self.asked.extend(names)
        return self.inner.vectors(names)


@pytest.fixture
def names() -> CountingNames:
    try:
        return CountingNames()
    except EncoderUnavailable as exc:  # the `embed` extra is part of `dev`'s `train`
        pytest.fail(str(exc))


def _log(seed: int = 4, users: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cats: list[str | None] = [*NAMES, None, "unknown"]
    rows = []
    for u in range(users):
        n = int(rng.integers(1, 25))
        t = T0 + np.cumsum(rng.exponential(5 * H, size=n)).astype(np.int64)
        for i in range(n):
            rows.append(
                {
                    "event_id": f"u{u}-{i}",
                    "user_id": f"user{u}",
                    "ts": int(t[i]),
                    "type": ["view", "cart", "purchase"][int(rng.integers(3))],
                    "category": cats[int(rng.integers(len(cats)))],
                    "price": float(rng.uniform(1, 99)),
                }
            )
    return pd.DataFrame(rows).sort_values("ts", kind="stable", ignore_index=True)


def _windows(df: pd.DataFrame, max_events: int) -> list:  # type: ignore[type-arg]
    states: dict[str, UserState] = {}
    out = []
    for offset, row in enumerate(df.itertuples(index=False)):
        st = states.setdefault(row.user_id, UserState())
        cat = None if pd.isna(row.category) else str(row.category)
        ev = Event(row.event_id, row.user_id, int(row.ts), EventType[row.type.upper()],
                   None, cat, float(row.price))  # fmt: skip
        st.add(ev, offset, max_events)
        out.append(st.window())
    return out


def test_fs2_names_its_columns_and_refuses_what_it_cannot_encode() -> None:
    spec = space_spec(4, seq_len=8)
    assert spec.version == "fs2" and spec.n_features == 16 + 4
    assert spec.feature_names[16:] == ("cat_dim_0", "cat_dim_1", "cat_dim_2", "cat_dim_3")
    with pytest.raises(ValueError, match="unknown feature spec 'fs0'"):
        FeatureSpec(version="fs0")
    with pytest.raises(ValueError, match="category_dims > 0"):
        FeatureSpec(version="fs2", category_dims=0)
    with pytest.raises(ValueError, match="needs rows of 4 dims"):
        encode_windows(_windows(_log(users=2), 8), spec)  # no category rows given


def test_stream_and_training_paths_give_identical_fs2_arrays(names: CountingNames) -> None:
    df = _log()
    rows = fit_log_space(df, 4, names)
    spec = space_spec(4, seq_len=8)
    x_stream, len_stream = encode_windows(_windows(df, 8), spec, rows)
    table = prepare_events(df, spec, rows)
    user = pd.Index(table.users).get_indexer(df["user_id"].astype(str)).astype(np.int64)
    pos = np.empty(len(df), dtype=np.int64)
    pos[np.lexsort((df["ts"].to_numpy(), user))] = np.arange(len(df))
    x_train, len_train = gather_windows(table, user, pos)
    np.testing.assert_array_equal(len_stream, len_train)
    np.testing.assert_array_equal(x_stream, x_train)
    assert set(table.category_names) == set(NAMES)  # "unknown" is the missing category
    # each name went through the encoder once, for the fit; projecting asked nothing more
    assert sorted(names.asked) == sorted(NAMES)


def test_a_category_never_seen_in_training_gets_its_own_vector(names: CountingNames) -> None:
    df = _log()
    rows = fit_log_space(df, 4, names)
    spec = space_spec(4, seq_len=8)
    last = df.iloc[[-1]].assign(event_id="new", category="hiking boots")
    missing = df.iloc[[-1]].assign(event_id="none", category=None)
    unknown = df.iloc[[-1]].assign(event_id="unk", category="unknown")
    cols = slice(16, None)
    x, lengths = encode_windows(_windows(pd.concat([last, missing, unknown]), 1), spec, rows)
    assert lengths.tolist() == [1, 1, 1]
    new, none, unk = x[0, 0, cols], x[1, 0, cols], x[2, 0, cols]
    np.testing.assert_array_equal(none, [0, 0, 0, 0])  # the origin: no name is there
    np.testing.assert_array_equal(unk, none)
    assert np.linalg.norm(new) == pytest.approx(1.0, abs=1e-6)
    vec = {n: rows.rows([n])[0] for n in ("running shoes", "cookware")}
    assert float(new @ vec["running shoes"]) > float(new @ vec["cookware"])


def test_space_rows_ask_for_each_new_name_once(names: CountingNames) -> None:
    rows = fit_log_space(_log(), 4, names)
    fresh = SpaceRows(rows.space, names)
    before = len(names.asked)
    a = fresh.rows(["coffee", "coffee", "toys"])
    b = fresh.rows(["toys", "coffee"])
    assert names.asked[before:] == ["coffee", "toys"]
    np.testing.assert_array_equal(a[[2, 0]], b)
