"""The in-memory state store behind the processor's ``StateStore`` protocol (the Faust table
one, which reaches into Faust, is ``stream_app.runtime.table_store``)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from typing import Any


class MemoryStore:
    """Per-partition dicts: for unit tests and for benchmarking the logic alone."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, bytes]] = {}

    def get(self, partition: int, key: str) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data.setdefault(partition, {})[key] = value

    def delete(self, partition: int, key: str) -> None:
        self.data.get(partition, {}).pop(key, None)

    async def write(
        self, puts: Mapping[tuple[int, str], bytes], deletes: Collection[tuple[int, str]]
    ) -> list[asyncio.Future[Any]]:
        for (partition, key), value in puts.items():
            self.put(partition, key, value)
        for partition, key in deletes:
            self.delete(partition, key)
        return []  # no changelog

    def scan(self, partition: int, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """As the keys are when called (may be read in another thread meanwhile)."""
        items = list(self.data.get(partition, {}).items())  # one step: no thread gets between
        return iter([(k, v) for k, v in items if k.startswith(prefix)])
