"""A Faust RocksDB table as the processor's ``StateStore``, addressed by explicit partition."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    partition: int


@dataclass(frozen=True)  # no slots: Faust holds the current event through a weak reference
class _Scope:
    """Stands in for a Faust event: the table reads only ``message.topic/partition``."""

    message: _Message


class FaustTableStore:
    """A Faust RocksDB table addressed by explicit partition.

    Faust picks the RocksDB instance and the changelog partition of a table write from the
    "current event" of the stream. A micro-batch mixes partitions, so before each read or
    write we set that context to the partition of the user concerned; otherwise a user's
    record would land in another partition's store and changelog, and be lost on recovery.
    """

    def __init__(self, table: Any, source_topic: str) -> None:
        self.table = table
        self.source_topic = source_topic
        self._scopes: dict[int, _Scope] = {}

    @contextmanager
    def _partition(self, partition: int) -> Iterator[None]:
        scope = self._scopes.get(partition)
        if scope is None:
            scope = self._scopes[partition] = _Scope(_Message(self.source_topic, partition))
        token = _current_event.set(weakref.ref(scope))  # type: ignore[arg-type]
        try:
            yield
        finally:
            _current_event.reset(token)

    def get(self, partition: int, key: str) -> bytes | None:
        # Straight from the partition's RocksDB, as Faust's own read ends up (writes go to it
        # at once): Faust's table read path costs several times the RocksDB get.
        value = self.table.data._db_for_partition(partition).get(key.encode())
        return None if value is None else bytes(value)

    def put(self, partition: int, key: str, value: bytes) -> None:
        with self._partition(partition):
            self.table[key.encode()] = value

    def delete(self, partition: int, key: str) -> None:
        with self._partition(partition):
            self.table.pop(key.encode(), None)

    def scan(self, partition: int, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """The partition's keys from ``prefix`` on, as they are when called (a RocksDB
        iterator reads the snapshot of its creation; rocksdict's ``snapshot()`` does not), so
        it may be read in another thread while the batches write."""
        # Faust offers no per-partition iteration; read that partition's RocksDB directly.
        store = self.table.data
        db = store._db_for_partition(partition)
        items = db.items(from_key=prefix.encode()) if prefix else db.items()
        return _items(items, prefix.encode(), store.offset_key)


def _items(items: Any, prefix: bytes, faust_key: bytes) -> Iterator[tuple[str, bytes]]:
    for key, value in items:  # keys in order: a prefix's keys are one run
        if not key.startswith(prefix):
            return
        if key != faust_key:  # Faust's own record of the changelog offset
            yield key.decode(), bytes(value)
