"""The state table's changelog written a batch at a time (stream_app.runtime.changelog_send)
lands on the broker as Faust's own table writes do: same partition, key, value, tombstone and
headers, record for record; and each delivered batch stores its last offset in the
partition's RocksDB, where Faust's recovery reads how far the local state is, also when a
write fills several batches (the topic's limit is smaller than it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from stream_app.runtime.changelog_send import TableChangelog
from stream_app.runtime.rocks import StateTable
from stream_app.runtime.table_store import FaustTableStore

PARTITIONS = 2
DEADLINE_S = 30.0
STATE = b"\x01\x00\x02state bytes \xff\xfe"


async def _read(bootstrap: str, topic: str, partition: int, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[Any] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < n and time.monotonic() < deadline:
            got += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        return got
    finally:
        await consumer.stop()


async def _both_paths(bootstrap: str, datadir: Path) -> tuple[list[Any], FaustTableStore]:
    app = faust.App(
        f"changelog-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=str(datadir),
        Table=StateTable,
    )
    table = app.Table("state", key_type=bytes, value_type=bytes, partitions=PARTITIONS)
    topic = table.changelog_topic.get_topic_name()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    # 2 KB batches on this topic: the 10 records of 500 B below take several.
    store = FaustTableStore(table, "events", TableChangelog(app, table, {topic: 2048}))
    await app.producer.start()
    try:
        # Faust's own path (the worker's before), then the batch path, on partition 1.
        store.put(1, "user-ü", STATE)
        store.delete(1, "user-ü")
        await app.producer.flush()
        await store.write({(1, "user-ü"): STATE}, [])
        await store.write({}, [(1, "user-ü"), (1, "never-there")])
        await store.write({(0, "other"): b"x", (1, "\x00watermark"): b"w"}, [])
        sent = await store.write({(0, f"many-{i}"): bytes(500) for i in range(10)}, [])
        assert 1 < len(sent) < 10  # batches of a few records
        await app.producer.flush()
        await asyncio.sleep(0)  # the delivery callbacks
    finally:
        await app.producer.stop()
    many = await _read(bootstrap, topic, 0, 11)
    assert [(r.offset, r.key) for r in many[1:]] == [
        (i + 1, f"many-{i}".encode()) for i in range(10)
    ]
    return await _read(bootstrap, topic, 1, 5), store


@pytest.mark.kafka
def test_batch_changelog_records_are_faust_records_and_book_their_offset(
    bootstrap: str, tmp_path: Path
) -> None:
    records, store = asyncio.run(_both_paths(bootstrap, tmp_path))
    try:
        assert [r.offset for r in records] == [0, 1, 2, 3, 4]
        faust_put, faust_del, put, tombstone, watermark = records
        for old, new in ((faust_put, put), (faust_del, tombstone)):
            assert (new.key, new.value, new.headers) == (old.key, old.value, old.headers)
            assert new.timestamp_type == old.timestamp_type
        assert (put.key, put.value, put.headers) == ("user-ü".encode(), STATE, ())
        assert tombstone.value is None  # the missing key sent none
        assert (watermark.key, watermark.value) == (b"\x00watermark", b"w")
        data = store.table.data
        changelog = store.table.changelog_topic.get_topic_name()
        assert data.persisted_offset(TP(changelog, 1)) == 4
        assert data.persisted_offset(TP(changelog, 0)) == 10  # the last of several batches
        assert store.get(1, "user-ü") is None and store.get(1, "\x00watermark") == b"w"
    finally:
        store.table.data.reset_state()
