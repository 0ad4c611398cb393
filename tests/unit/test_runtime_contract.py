"""The private names of Faust, mode and aiokafka the worker relies on, pinned: an upgrade that
renames one or changes its signature fails here instead of changing the worker's behaviour.
And no module of stream_app outside stream_app/runtime uses another library's private name.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
from pathlib import Path

import faust
import faust.streams
from faust.stores import rocksdb
from faust.tables.table import Table
from faust.transport.consumer import Consumer

ROOT = Path(__file__).resolve().parents[2]

# (owner, name) -> its signature as this version of the library has it.
METHODS = {
    (Consumer, "_drain_messages"): "(self, fetcher: mode.types.services.ServiceT) -> None",
    (Consumer, "_wait_next_records"): "(self, timeout: float) -> Tuple[Optional[Mapping["
    "faust.types.tuples.TP, List[Any]]], Optional[Set[faust.types.tuples.TP]]]",
    (Consumer, "_to_message"): "(self, tp: faust.types.tuples.TP, record: Any) -> "
    "faust.types.tuples.ConsumerMessage",
    (Consumer, "_add_gap"): "(self, tp: faust.types.tuples.TP, offset_from: int, offset_to: "
    "int) -> None",
    (Consumer, "_commit_offsets"): "(self, offsets: Mapping[faust.types.tuples.TP, int], "
    "start_new_transaction: bool = True) -> bool",
    (Consumer, "maybe_wait_for_commit_to_finish"): "(self) -> bool",
    (rocksdb.Store, "_db_for_partition"): "(self, partition: int) -> Rdict",
    (rocksdb.Store, "_visible_items"): "(self, db: Rdict) -> Iterator[Tuple[bytes, bytes]]",
    (Table, "_new_store_by_url"): "(self, url: Union[str, yarl.URL]) -> faust.types.stores.StoreT",
}
# Attributes of a Faust (aiokafka driver) consumer, with their types.
CONSUMER_ATTRIBUTES = {
    "_committed_offset": dict,
    "_commit_fut": type(None),  # None between commits; the worker plants a future in it
    "_paused_partitions": set,
    "_buffered_partitions": set,
    "_read_offset": dict,
}


def test_the_private_methods_used_have_the_pinned_signatures() -> None:
    got = {
        f"{owner.__name__}.{name}": str(inspect.signature(getattr(owner, name)))
        for owner, name in METHODS
    }
    want = {f"{owner.__name__}.{name}": sig for (owner, name), sig in METHODS.items()}
    assert got == want


def test_the_private_attributes_used_exist_on_a_consumer() -> None:
    consumer = faust.App("contract", broker="kafka://127.0.0.1:9").consumer
    for name, kind in CONSUMER_ATTRIBUTES.items():
        assert isinstance(getattr(consumer, name), kind), name
    assert callable(consumer._stopped.is_set)  # mode's Service event
    assert isinstance(faust.streams._current_event, contextvars.ContextVar)


def test_the_fetch_wait_the_intake_lowers_is_where_it_looks() -> None:
    """stream_app.runtime.intake.limit_fetch_wait: Faust's consumer -> its thread's aiokafka
    consumer -> that consumer's fetcher, whose fetch requests carry ``_fetch_max_wait_ms``."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    consumer = faust.App("contract", broker="kafka://127.0.0.1:9").consumer
    assert isinstance(consumer._thread, AIOKafkaConsumerThread)
    assert consumer._thread._consumer is None  # set when the thread starts

    async def unstarted() -> object:
        aio = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        return aio._fetcher  # made by start()

    assert asyncio.run(unstarted()) is None
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)
    assert "self._fetch_max_wait_ms," in inspect.getsource(Fetcher._get_actions_per_node)


def private_uses(path: Path) -> list[str]:
    """``x._name`` on something other than self/cls, and ``from lib import _name``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("stream_app"):
            found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name[0] == "_"]
    return found


def test_private_names_of_other_libraries_only_under_runtime() -> None:
    outside = [
        p for p in (ROOT / "stream_app").rglob("*.py") if "runtime" not in p.relative_to(ROOT).parts
    ]
    assert len(outside) > 5
    assert [use for p in sorted(outside) for use in private_uses(p)] == []


def test_the_scan_finds_what_runtime_uses() -> None:
    """So that the check above is a check: inside runtime it does find private names."""
    inside = [
        use for p in (ROOT / "stream_app" / "runtime").glob("*.py") for use in private_uses(p)
    ]
    assert any("._committed_offset" in use for use in inside)
    assert any("_current_event" in use for use in inside)


def test_what_the_changelog_bulk_path_books_is_where_it_looks() -> None:
    """stream_app.runtime.changelog_bulk: Faust's Recovery attributes it reads and sets, the
    rocksdict Store's offset bookkeeping it calls, and Faust's own batch apply doing the same
    writes (a WriteBatch of key/value, a delete for a tombstone, then the persisted offset)."""
    from faust.tables.recovery import Recovery

    app = faust.App("contract", broker="kafka://127.0.0.1:9")
    recovery = app.tables.recovery
    assert isinstance(recovery, Recovery)
    for name in ("active_tps", "active_offsets", "active_highwaters", "tp_to_table", "buffers"):
        assert hasattr(recovery, name), name
    assert str(inspect.signature(Recovery.flush_buffers)) == "(self) -> None"
    assert recovery.in_recovery is False
    assert str(inspect.signature(rocksdb.Store.set_persisted_offset)) == (
        "(self, tp: faust.types.tuples.TP, offset: int) -> None"
    )
    apply = inspect.getsource(rocksdb.Store.apply_changelog_batch)
    assert "rocksdict.WriteBatch(raw_mode=True)" in apply
    assert "batches[msg.partition].delete(msg.key)" in apply
    assert "batches[msg.partition].put(msg.key, msg.value)" in apply
    assert "self.set_persisted_offset(tp, offset)" in apply
    slurp = inspect.getsource(Recovery._slurp_changelogs.fun)  # a mode ServiceTask
    assert "if seen_offset is None or offset > seen_offset:" in slurp
    # The end of recovery is checked after every record, applied or skipped as seen, and
    # after every 5 s without one: the bulk path books the highwater itself and relies on it.
    after_each = slurp.split("if seen_offset is None or offset > seen_offset:")[1]
    assert "\n                await _maybe_signal_recovery_end()\n" in after_each
    assert "changelog_queue.get(), timeout=5.0" in slurp
    assert "await _maybe_signal_recovery_end(\n                        timeout=True" in slurp
    assert "if self.in_recovery and not self.need_recovery():" in slurp


def test_the_seek_the_intake_puts_changelogs_back_with_is_where_it_looks() -> None:
    """stream_app.runtime.intake._put_back_changelogs: Faust's ``seek_wait`` (the seek its
    recovery makes) moves aiokafka's position and the read offset Faust's drain loop keeps;
    and why it is needed: aiokafka returns the records of every partition when the set of
    partitions asked for is empty (Faust's active set, while a rebalance pauses them all)."""
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.consumer import ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert str(inspect.signature(ThreadDelegateConsumer.seek_wait)) == (
        "(self, partitions: Mapping[faust.types.tuples.TP, int]) -> None"
    )
    seek = inspect.getsource(AIOKafkaConsumerThread._seek_wait)
    assert "consumer.seek(tp, offset)" in seek
    assert "self.consumer._read_offset[tp] = offset" in seek
    fetched = inspect.getsource(Fetcher.fetched_records)
    assert "if partitions and tp not in partitions:" in fetched


def test_what_the_changelog_batches_use_is_where_they_look() -> None:
    """stream_app.runtime.changelog_send: the app's aiokafka producer inside Faust's producer,
    aiokafka's batch API, and Faust's own changelog callback storing the offset it mimics."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator
    from faust.tables.base import Collection
    from faust.transport.drivers.aiokafka import Producer

    app = faust.App("contract", broker="kafka://127.0.0.1:9")
    assert type(app.producer) is Producer  # not the threaded one: its loop is another
    assert app.producer._producer is None  # set when the producer starts
    assert str(inspect.signature(AIOKafkaProducer.create_batch)) == "(self)"
    send_batch = inspect.signature(AIOKafkaProducer.send_batch)
    assert str(send_batch) == "(self, batch, topic, *, partition)"
    assert str(inspect.signature(BatchBuilder.append)) == (
        "(self, *, timestamp, key, value, headers: collections.abc.Sequence = [])"
    )
    # The producer's flush (before every commit) waits for the batches sent so, too.
    assert "batch = self._append_batch(builder, tp)" in inspect.getsource(
        MessageAccumulator.add_batch
    )
    assert "batch.future for batches in self._batches.values()" in inspect.getsource(
        MessageAccumulator.flush
    )
    sent = inspect.getsource(Collection._on_changelog_sent)
    assert "self.data.set_persisted_offset(res.topic_partition, res.offset)" in sent
    assert "if self.app.in_transaction:" in sent
    table = app.Table("contract", key_type=bytes, value_type=bytes)
    assert table.changelog_topic.get_topic_name() == "contract-contract-changelog"


def test_what_a_record_batch_of_a_given_size_uses_is_where_it_looks() -> None:
    """stream_app.runtime.record_batch: what ``create_batch`` gives (through the accumulator's
    ``create_builder``) is the batch it makes, but for the size it is given."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator
    from aiokafka.record.default_records import DefaultRecordBatch

    from stream_app.runtime.record_batch import new_batch

    assert str(inspect.signature(BatchBuilder.__init__)) == (
        "(self, batch_size, compression_type, *, is_transactional=0, key_serializer=None, "
        "value_serializer=None)"
    )
    made = inspect.getsource(MessageAccumulator.create_builder)
    for used in (
        "self._txn_manager is not None",
        "and self._txn_manager.transactional_id is not None",
        "self._batch_size,",
        "self._compression_type,",
        "is_transactional=is_transactional,",
    ):
        assert used in made, used
    assert "key_serializer=self._key_serializer" in inspect.getsource(AIOKafkaProducer.create_batch)

    async def batches() -> tuple[BatchBuilder, BatchBuilder]:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", compression_type="gzip")
        try:
            return producer.create_batch(), new_batch(producer, 100_000)
        finally:
            await producer.stop()

    theirs, ours = asyncio.run(batches())
    for batch in (theirs, ours):  # 50 records of 1 KB: more than one 16 KB batch holds
        taken = [batch.append(key=b"k", value=bytes(1000), timestamp=None) for _ in range(50)]
        batch.close()
        built = DefaultRecordBatch(bytes(batch._build()))
        assert (built.compression_type, built.is_transactional) == (1, False)  # the producer's
    assert taken.count(None) == 0
    assert theirs.record_count() < 20 < ours.record_count() == 50

    async def transactional() -> BatchBuilder:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", transactional_id="t")
        try:
            return new_batch(producer, 100_000)
        finally:
            await producer.stop()

    batch = asyncio.run(transactional())
    batch.append(key=b"k", value=b"v", timestamp=None)
    batch.close()
    assert DefaultRecordBatch(bytes(batch._build())).is_transactional


def test_a_consumer_record_has_the_fields_of_a_record() -> None:
    """stream_app.worker.Worker.applicable hands aiokafka's records to the processor as they
    come from the fetch, read as Records: every field of a Record is one of theirs."""
    import dataclasses

    from aiokafka.structs import ConsumerRecord

    from stream_app.batch import Record

    theirs = {f.name: f.type for f in dataclasses.fields(ConsumerRecord)}
    ours = {f.name: f.type for f in dataclasses.fields(Record)}
    assert {name: theirs.get(name) for name in ours} == {
        "partition": "int",
        "offset": "int",
        "key": "KT | None",
        "value": "VT | None",
        "timestamp": "int",
    }
