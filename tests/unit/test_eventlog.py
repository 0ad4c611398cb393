from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decay.eventlog import (
    EVENT_COLUMNS,
    EventLogError,
    cdnow_events,
    coerce_events,
    event_format,
    frame_to_records,
    iter_event_records,
    read_events,
    write_events,
)
from training.simulate import simulate

SUFFIXES = [".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet"]
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": ["a1", "a2", "a3", "a4", "a5"],
            "user_id": ["u1", "u1", "u2", "u2", "u3"],
            "ts": [T0, T0 + 1, T0 + 1_500, T0 + 60_000, T0 + 86_400_000],
            "type": ["search", "view", "cart", "purchase", "other"],
            "item_id": [None, "i-9", "i-9", "i-9", None],
            "category": ["música", "books", "books", "books", None],
            "price": [np.nan, 12.99, 12.99, 0.1 + 0.2, np.nan],
            "quantity": [None, None, 2, 2, None],
        }
    )


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    df = _events()
    path = write_events(df, tmp_path / f"events{suffix}")
    back = read_events(path)
    pd.testing.assert_frame_equal(back, coerce_events(df))
    assert tuple(back.columns) == EVENT_COLUMNS


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_round_trip_simulated(tmp_path: Path, suffix: str) -> None:
    events = simulate(100, 5, seed=3, start=datetime(2024, 1, 1, tzinfo=UTC)).events
    back = read_events(write_events(events, tmp_path / f"sim{suffix}"))
    pd.testing.assert_frame_equal(back, events)


def test_jsonl_lines_are_json_without_missing_fields(tmp_path: Path) -> None:
    path = write_events(_events(), tmp_path / "e.jsonl")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "música" in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0] == {
        "event_id": "a1",
        "user_id": "u1",
        "ts": T0,
        "type": "search",
        "category": "música",
    }
    assert records[3]["quantity"] == 2 and records[3]["price"] == 0.1 + 0.2


def test_jsonl_escapes_awkward_strings(tmp_path: Path) -> None:
    df = _events()
    df.loc[1, "item_id"] = 'say "hi"\\\n\ttab'
    path = write_events(df, tmp_path / "e.jsonl")
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(df)
    pd.testing.assert_frame_equal(read_events(path), coerce_events(df))


def test_rfc3339_timestamps(tmp_path: Path) -> None:
    path = write_events(_events(), tmp_path / "e.jsonl", ts_format="rfc3339")
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[1])
    assert first["ts"] == "2024-01-01T00:00:00.001Z"
    pd.testing.assert_frame_equal(read_events(path), coerce_events(_events()))


def test_mixed_timestamp_forms(tmp_path: Path) -> None:
    lines = [
        {"event_id": "x1", "user_id": "u", "ts": T0, "type": "view"},
        {"event_id": "x2", "user_id": "u", "ts": "2024-01-01T01:00:00+01:00", "type": "view"},
        {"event_id": "x3", "user_id": "u", "ts": "2024-01-01T00:00:00.250Z", "type": "click"},
        {"event_id": "x4", "user_id": "u", "ts": str(T0 + 7), "type": "view", "price": 3},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
    df = read_events(path)
    assert df["ts"].tolist() == [T0, T0, T0 + 250, T0 + 7]
    assert df["price"].iloc[3] == 3.0 and df["item_id"].isna().all()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_iter_event_records_streams_chunks(tmp_path: Path, suffix: str) -> None:
    df = _events()
    path = write_events(df, tmp_path / f"events{suffix}")
    chunks = list(iter_event_records(path, chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    records = [r for c in chunks for r in c]
    assert records == frame_to_records(coerce_events(df))
    assert "item_id" not in records[0] and "price" not in records[0]
    assert records[2]["quantity"] == 2 and isinstance(records[2]["ts"], int)
    json.dumps(records)  # plain Python values only


def test_format_and_schema_errors(tmp_path: Path) -> None:
    assert event_format("a/b.events.JSONL") == "jsonl"
    assert event_format("x.csv.gz") == "csv"
    for bad in ("x.txt", "x.parquet.gz", "x"):
        with pytest.raises(ValueError):
            event_format(bad)
    with pytest.raises(ValueError, match="required"):
        coerce_events(pd.DataFrame({"event_id": ["a"], "ts": [1]}))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert read_events(empty).empty
    assert tuple(read_events(empty).columns) == EVENT_COLUMNS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n\n{bad\n', "line 3, column 2: Expecting property name enclosed in"),
        ('{"a": 1}\n[1, 2]\n', "line 2: not a JSON object"),
        ('{"a": 1}\n{"a": 2} x\n', "line 2, column 10: Extra data"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_its_line_number(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EventLogError) as info:
        list(iter_event_records(path))
    assert str(info.value).startswith(f"{path} {message}"), info.value


def test_a_jsonl_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes('{"a": 1}\n{"a": "\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(EventLogError, match="not UTF-8"):
        list(iter_event_records(path))


def test_a_csv_log_without_a_required_column(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("event_id,user_id,ts\ne1,u1,1709287200000\n")
    with pytest.raises(EventLogError, match=r"events\.csv: event log lacks required columns"):
        list(iter_event_records(path))


needs_lifetimes = pytest.mark.skipif(
    find_spec("lifetimes") is None, reason="lifetimes (train extra) not installed"
)


@needs_lifetimes
def test_cdnow_master() -> None:
    df = cdnow_events(sample=False)
    assert len(df) == 69_659
    assert df["user_id"].nunique() == 23_570
    assert tuple(df.columns) == EVENT_COLUMNS
    assert (df["type"] == "purchase").all() and (df["category"] == "music").all()
    assert df["event_id"].is_unique and df["ts"].is_monotonic_increasing
    noon = pd.to_datetime(df["ts"], unit="ms", utc=True)
    assert (noon.dt.hour == 12).all()
    assert noon.min() == pd.Timestamp("1997-01-01T12:00Z")
    assert noon.max() == pd.Timestamp("1998-06-30T12:00Z")
    # first data row: customer 00001, 19970101, 1 CD, $11.77
    first = df.set_index("event_id").loc["cdnow-0"]
    assert first["user_id"] == "c1" and first["quantity"] == 1 and first["price"] == 11.77
    assert (df["quantity"] >= 1).all() and (df["price"] >= 0).all()


@needs_lifetimes
def test_cdnow_sample_is_a_subset_of_master() -> None:
    sample = cdnow_events(sample=True)
    assert sample["user_id"].nunique() == 2_357
    assert len(sample) == 6_919
    master = cdnow_events(sample=False)
    assert set(sample["user_id"]) <= set(master["user_id"])
    key = ["user_id", "ts", "quantity", "price"]
    assert len(sample[key].merge(master[key].drop_duplicates(), on=key)) == len(sample)
