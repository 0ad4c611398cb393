"""A table's changelog, while Faust recovers it, written to RocksDB a whole fetch at a time.

Faust's recovery hands each changelog record through its conductor, a queue and its
``Recovery`` loop, which books every record and checks after each one whether all partitions
are done: a few hundred µs of CPU per record, so a state table rebuilt from its changelog
(a worker that lost its disk) took minutes per million users (docs/performance.md, "Scale").
Here the intake gives each fetch of a partition in recovery to ``apply`` first, which writes
its records in one RocksDB ``WriteBatch`` (what Faust's ``Store.apply_changelog_batch`` does
with a buffer of them), stores the partition's changelog offset and books it as Faust's loop
would (``Recovery.active_offsets``).

Only records before the partition's highwater (the last offset when recovery began) go this
way; the one at the highwater is left to Faust's path, so that Faust's loop sees it and ends
the recovery as it always does, and nothing this path writes can land after a record Faust
still holds in its buffer. Uses Faust internals (``Recovery.active_tps``, ``active_offsets``,
``active_highwaters``, ``tp_to_table``, ``in_recovery``; the rocksdict ``Store``'s
``_db_for_partition`` and ``set_persisted_offset``), pinned by
tests/unit/test_runtime_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb


class ChangelogBulk:
    def __init__(self, app: Any, on_applied: Callable[[int], None]) -> None:
        """``on_applied(n)``: called with the records of each fetch written here."""
        self.app = app
        self.on_applied = on_applied

    def apply(self, consumer: Any, tp: Any, batch: Sequence[Any]) -> Sequence[Any]:
        """Write the records of ``batch`` (one fetch of ``tp``) that this path takes; the
        rest, in order, are for Faust's conductor."""
        recovery = self.app.tables.recovery
        # A rebalance stops the flow: the records go the way Faust's loop drops them.
        if not consumer.flow_active or not recovery.in_recovery or tp not in recovery.active_tps:
            return batch
        store = recovery.tp_to_table[tp].data
        if not isinstance(store, faust_rocksdb.Store) or not store.use_rocksdict:
            return batch
        highwater = recovery.active_highwaters.get(tp)
        seen = recovery.active_offsets.get(tp)
        if highwater is None:
            return batch
        taken = [r for r in batch if r.offset < highwater and (seen is None or r.offset > seen)]
        if not taken:
            return [r for r in batch if r.offset >= highwater]
        writes = rocksdict.WriteBatch(raw_mode=True)
        for record in taken:
            if record.value is None:
                writes.delete(record.key)
            else:
                writes.put(record.key, record.value)
        store._db_for_partition(tp.partition).write(writes)
        last = taken[-1].offset
        store.set_persisted_offset(tp, last)
        recovery.active_offsets[tp] = last
        consumer._read_offset[tp] = last
        self.on_applied(len(taken))
        return [r for r in batch if r.offset >= highwater]
