"""One contract, both state stores: the in-memory one of the unit tests and benchmarks, and
the worker's Faust RocksDB table (stream_app.runtime.table_store), opened on a temporary
directory outside a running app (the changelog of its ``put``/``delete`` is buffered, never
sent; ``write`` hands its changelog to an in-memory one here, to the producer in the worker:
tests/integration/test_changelog_send.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import faust
import pytest

from stream_app.batch import StateStore
from stream_app.processor import WATERMARK_KEY, erased_key
from stream_app.runtime.changelog_send import Change
from stream_app.runtime.rocks import StateTable
from stream_app.runtime.table_store import FaustTableStore
from stream_app.store import MemoryStore

PARTITIONS = 4


class MemoryChangelog:
    """``table_store.Changelog`` as a list of what was sent: (partition, changes)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[Change]]] = []

    async def send(self, partition: int, changes: Sequence[Change]) -> list[asyncio.Future[Any]]:
        self.sent.append((partition, list(changes)))
        return []


@pytest.fixture
def table_store(tmp_path: Path) -> Iterator[FaustTableStore]:
    # Faust binds its app to the current event loop; a test before may have closed it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust.App("store-contract", store="rocksdb://", datadir=str(tmp_path), Table=StateTable)
    table = app.Table("state", key_type=bytes, value_type=bytes, partitions=PARTITIONS)
    yield FaustTableStore(table, "events", MemoryChangelog())
    table.data.reset_state()  # closes the partitions' DBs
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield request.getfixturevalue("table_store")


def write(
    store: StateStore, puts: Mapping[tuple[int, str], bytes], deletes: Collection[tuple[int, str]]
) -> list[asyncio.Future[Any]]:
    loop = asyncio.new_event_loop()  # not set as the current one: the fixture's stays
    try:
        return loop.run_until_complete(store.write(puts, deletes))
    finally:
        loop.close()


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


def test_a_prefix_scan_yields_the_keys_that_start_with_it(store: StateStore) -> None:
    for key in ("\x00erased:a", "\x00erased:b", "\x00watermark", "erased:c", "u"):
        store.put(2, key, key.encode())
    assert dict(store.scan(2, "\x00erased:")) == {"\x00erased:a": b"\x00erased:a",
                                                    "\x00erased:b": b"\x00erased:b"}  # fmt: skip
    assert list(store.scan(2, "\x00none")) == []


def test_a_scan_reads_the_keys_as_they_were_when_it_was_called(store: StateStore) -> None:
    store.put(0, "before", b"1")
    stored = store.scan(0)  # a restart reads it in another thread while batches write
    store.put(0, "after", b"2")
    store.put(0, "before", b"3")
    assert list(stored) == [("before", b"1")]


def test_a_batch_write_puts_and_deletes_across_partitions(store: StateStore) -> None:
    store.put(0, "old", b"o")
    store.put(3, "gone", b"g")
    write(store, {(0, "u1"): b"a", (2, "u2"): b"b", (0, "old"): b"new"}, [(3, "gone")])
    assert dict(store.scan(0)) == {"old": b"new", "u1": b"a"}
    assert dict(store.scan(2)) == {"u2": b"b"}
    assert list(store.scan(3)) == []
    assert store.get(1, "u1") is None


def test_a_batch_write_puts_before_it_deletes(store: StateStore) -> None:
    write(store, {(1, "u"): b"x", (1, "kept"): b"k"}, [(1, "u"), (1, "never-there")])
    assert dict(store.scan(1)) == {"kept": b"k"}
    write(store, {}, [])
    assert dict(store.scan(1)) == {"kept": b"k"}


def test_a_batch_write_leaves_a_scan_taken_before_it_alone(store: StateStore) -> None:
    store.put(0, "before", b"1")
    stored = store.scan(0)
    write(store, {(0, "after"): b"2", (0, "before"): b"3"}, [])
    assert list(stored) == [("before", b"1")]
    assert dict(store.scan(0)) == {"after": b"2", "before": b"3"}


def test_the_changelog_of_a_batch_write_is_per_partition_in_the_writes_order(
    table_store: FaustTableStore,
) -> None:
    """What recovery replays: the puts of each partition in the order given (the processor
    writes a partition's watermark after its users), then a tombstone for each deleted key
    that was there; a key the batch both puts and deletes ends deleted."""
    table_store.put(2, "gone", b"g")
    puts = {(2, "u2"): b"b", (0, "u1"): b"a", (2, "\x00watermark"): b"w", (0, "twice"): b"t"}
    write(table_store, puts, [(2, "gone"), (2, "missing"), (0, "twice")])
    sent = table_store.changelog.sent  # type: ignore[attr-defined]
    assert sorted(sent) == [
        (0, [(b"u1", b"a"), (b"twice", b"t"), (b"twice", None)]),
        (2, [(b"u2", b"b"), (b"\x00watermark", b"w"), (b"gone", None)]),
    ]
    assert table_store.get(0, "twice") is None and table_store.get(2, "gone") is None
