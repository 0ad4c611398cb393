"""One contract, both state stores: the in-memory one of the unit tests and benchmarks, and
the worker's Faust RocksDB table (stream_app.runtime.table_store), opened on a temporary
directory outside a running app (its changelog writes are buffered, never sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faust
import pytest

from stream_app.batch import StateStore
from stream_app.processor import WATERMARK_KEY, erased_key
from stream_app.runtime.rocks import StateTable
from stream_app.runtime.table_store import FaustTableStore
from stream_app.store import MemoryStore

PARTITIONS = 4


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    app = faust.App("store-contract", store="rocksdb://", datadir=str(tmp_path), Table=StateTable)
    table = app.Table("state", key_type=bytes, value_type=bytes, partitions=PARTITIONS)
    yield FaustTableStore(table, "events")
    table.data.reset_state()  # closes the partitions' DBs


def test_a_missing_key_reads_none(store: StateStore) -> None:
    assert store.get(0, "nobody") is None
    assert list(store.scan(0)) == []


def test_put_then_get_returns_the_bytes_and_a_later_put_replaces_them(store: StateStore) -> None:
    store.put(1, "u1", b"\x00\x01first")
    assert store.get(1, "u1") == b"\x00\x01first"
    store.put(1, "u1", b"second")
    assert store.get(1, "u1") == b"second"


def test_partitions_are_separate(store: StateStore) -> None:
    store.put(0, "u", b"zero")
    store.put(2, "u", b"two")
    assert store.get(0, "u") == b"zero"
    assert store.get(2, "u") == b"two"
    assert store.get(1, "u") is None
    assert list(store.scan(2)) == [("u", b"two")]


def test_delete_removes_a_key_and_is_a_no_op_for_a_missing_one(store: StateStore) -> None:
    store.put(3, "u", b"x")
    store.delete(3, "u")
    store.delete(3, "never-there")
    assert store.get(3, "u") is None
    assert list(store.scan(3)) == []


def test_scan_yields_every_key_of_the_partition_including_the_processors_own(
    store: StateStore,
) -> None:
    keys = {"u-1": b"a", "ü-2 ✓": b"b", WATERMARK_KEY: b"wm", erased_key("gone"): b"e"}
    for key, value in keys.items():
        store.put(1, key, value)
    store.put(0, "elsewhere", b"z")
    assert dict(store.scan(1)) == keys


def test_scan_may_be_written_to_while_it_runs(store: StateStore) -> None:
    for i in range(20):
        store.put(0, f"u{i}", b"v")
    for key, _ in store.scan(0):  # the processor's expiry deletes as it scans
        store.delete(0, key)
    assert list(store.scan(0)) == []
