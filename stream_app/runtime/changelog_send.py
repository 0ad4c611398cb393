"""A Faust table's changelog written a batch of records at a time.

Faust sends a changelog record for each table write: a ``FutureMessage`` through its producer
buffer, ``publish_message`` and aiokafka's ``send``, each with its futures and callbacks, and
on delivery ``Table._on_changelog_sent`` stores the record's offset in the partition's RocksDB
(``Store.set_persisted_offset``), so that a restart knows how far its local state is. That
was a large share of the worker's CPU per event outside the processor. Here the records of a
partition's writes go into aiokafka batches (``send_batch`` of the app's producer, a new
batch when one is full, each as large as the changelog topic takes: see
stream_app.runtime.record_batch) sent to the same partition of the changelog topic,
in the same format (the raw codec's bytes: the key and value as they are, a tombstone's value
None, no headers, the producer's time), and the last offset of each delivered batch is stored
as Faust's callback would.

Uses the Faust aiokafka ``Producer._producer`` (the app's started aiokafka producer, see
``faust_ports.aiokafka_producer``) and the rocksdict ``Store.set_persisted_offset``, pinned
by tests/unit/test_runtime_contract.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from faust.types import TP

from decay.errors import DecayError
from stream_app.producer_batches import record_batch_bytes
from stream_app.runtime.faust_ports import aiokafka_producer
from stream_app.runtime.record_batch import new_batch

# A changelog record: key, value (None: a tombstone).
Change = tuple[bytes, bytes | None]


class TableChangelog:
    """``stream_app.runtime.table_store.Changelog`` over a Faust table and its app's producer.

    At least once only (what the worker runs Faust with): Faust's own exactly-once mode
    stores the offset at its commits instead (``persist_offset_on_commit``)."""

    def __init__(self, app: Any, table: Any, limits: Mapping[str, int] | None = None) -> None:
        """``limits``: the topics' ``max.message.bytes`` (decay_kafka.topics.message_limits),
        which size the changelog's record batches (producer_batches.record_batch_bytes)."""
        self.app = app
        self.table = table
        self.limits = limits or {}

    def _producer(self) -> Any:
        if self.app.in_transaction:
            raise DecayError("Faust's exactly-once processing is not supported by this store")
        return aiokafka_producer(self.app)

    async def send(self, partition: int, changes: Sequence[Change]) -> list[asyncio.Future[Any]]:
        """Hand ``changes`` (in order) to the producer for the changelog's ``partition``; the
        futures of their batches' delivery, each storing its last offset when delivered."""
        if not changes:
            return []
        producer = self._producer()
        topic = self.table.changelog_topic.get_topic_name()
        size = record_batch_bytes(self.limits, topic)
        futures = []
        batch, n = new_batch(producer, size), 0
        for key, value in changes:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                futures.append(await self._send(producer, batch, topic, partition, n))
                batch, n = new_batch(producer, size), 0
                # An empty batch takes any record; one too large fails on the broker.
                batch.append(key=key, value=value, timestamp=None)
            n += 1
        futures.append(await self._send(producer, batch, topic, partition, n))
        return futures

    async def _send(
        self, producer: Any, batch: Any, topic: str, partition: int, n: int
    ) -> asyncio.Future[Any]:
        batch.close()  # nothing else joins it: the order of the records is this one
        fut: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
        fut.add_done_callback(partial(self._delivered, TP(topic, partition), n))
        return fut

    def _delivered(self, tp: TP, n: int, fut: asyncio.Future[Any]) -> None:
        # A failed batch is the caller's (stream_app.delivery halts the worker on it).
        if fut.cancelled() or fut.exception() is not None:
            return
        self.table.data.set_persisted_offset(tp, fut.result().offset + n - 1)
