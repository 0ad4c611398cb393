"""A Faust RocksDB table as the processor's ``StateStore``, addressed by explicit partition."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import rocksdict
from faust.streams import _current_event

from stream_app.runtime.changelog_send import Change


class Changelog(Protocol):
    """Where a partition's changes go after its RocksDB (stream_app.runtime.changelog_send)."""

    async def send(
        self, partition: int, changes: Sequence[Change]
    ) -> list[asyncio.Future[Any]]: ...


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

    ``write``, the worker's, writes a batch's changes of each partition in one RocksDB
    ``WriteBatch`` and hands them to ``changelog`` for the same partition of the table's
    changelog, bypassing Faust's per-record path. ``put`` and ``delete`` take that path, one
    record at a time (for tools and tests; not to be mixed with ``write`` between flushes,
    as Faust's producer buffer may send them later): Faust picks the RocksDB instance and the
    changelog partition of a table write from the "current event" of the stream, so before
    each we set that context to the partition of the user concerned; otherwise the record
    would land in another partition's store and changelog, and be lost on recovery.
    """

    def __init__(self, table: Any, source_topic: str, changelog: Changelog) -> None:
        self.table = table
        self.source_topic = source_topic
        self.changelog = changelog
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

    async def write(
        self, puts: Mapping[tuple[int, str], bytes], deletes: Collection[tuple[int, str]]
    ) -> list[asyncio.Future[Any]]:
        """Per partition, the puts (in order) then the deletes in one RocksDB ``WriteBatch``,
        then their changelog records (a delete of a key not there sends none, as Faust's
        ``pop`` does not); the futures of the changelog's delivery."""
        store = self.table.data
        futures = []
        for partition, (put, gone) in _by_partition(puts, deletes).items():
            db = store._db_for_partition(partition)
            writes = rocksdict.WriteBatch(raw_mode=True)
            changes: list[Change] = []
            for key, value in put.items():
                writes.put(key, value)
                changes.append((key, value))
            for key in gone:
                if key in put or db.get(key) is not None:
                    writes.delete(key)
                    changes.append((key, None))
            db.write(writes)
            futures += await self.changelog.send(partition, changes)
        return futures

    def scan(self, partition: int, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """The partition's keys from ``prefix`` on, as they are when called (a RocksDB
        iterator reads the snapshot of its creation; rocksdict's ``snapshot()`` does not), so
        it may be read in another thread while the batches write."""
        # Faust offers no per-partition iteration; read that partition's RocksDB directly.
        store = self.table.data
        db = store._db_for_partition(partition)
        items = db.items(from_key=prefix.encode()) if prefix else db.items()
        return _items(items, prefix.encode(), store.offset_key)


def _by_partition(
    puts: Mapping[tuple[int, str], bytes], deletes: Collection[tuple[int, str]]
) -> dict[int, tuple[dict[bytes, bytes], list[bytes]]]:
    """Per partition: its puts by encoded key (in order: the processor writes a partition's
    watermark after its users) and its deleted keys."""
    out: dict[int, tuple[dict[bytes, bytes], list[bytes]]] = {}
    for (partition, key), value in puts.items():
        part = out.get(partition)
        if part is None:
            part = out[partition] = ({}, [])
        part[0][key.encode()] = value
    for partition, key in deletes:
        out.setdefault(partition, ({}, []))[1].append(key.encode())
    return out


def _items(items: Any, prefix: bytes, faust_key: bytes) -> Iterator[tuple[str, bytes]]:
    for key, value in items:  # keys in order: a prefix's keys are one run
        if not key.startswith(prefix):
            return
        if key != faust_key:  # Faust's own record of the changelog offset
            yield key.decode(), bytes(value)
