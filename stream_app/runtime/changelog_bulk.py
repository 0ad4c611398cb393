"""A table's changelog, while Faust recovers it, written to RocksDB a whole fetch at a time.

Faust's recovery hands each changelog record through its conductor, a queue and its
``Recovery`` loop, which books every record and checks after each one whether all partitions
are done: a few hundred µs of CPU per record, so a state table rebuilt from its changelog
(a worker that lost its disk) took minutes per million users (docs/performance.md, "Scale").
Here the intake gives each fetch of a partition in recovery to ``apply`` first, which writes
its records up to the partition's highwater (the last offset when recovery began) in one
RocksDB ``WriteBatch`` (what Faust's ``Store.apply_changelog_batch`` does with a buffer of
them), stores the partition's changelog offset and books it as Faust's loop would
(``Recovery.active_offsets``).

Nothing this path writes waits on a record reaching Faust's loop: the highwater's record is
written and booked here too, so once every partition is booked to its highwater, Faust's loop
ends the recovery at its next check, which it makes after every record it is handed and every
5 s without one. Each fetch's last record up to the highwater is still handed to Faust (its
loop skips it as applied, and checks at once); if that handing is lost (a rebalance stops the
flow, the queue is cleared), the 5 s check ends the recovery all the same, and a rebalance
restarts it from the offset stored here, which is never past what was written. Records past
the highwater (written after recovery began) go Faust's way after it, and Faust's buffer is
written out before a bulk write, so no older record of Faust's can land over a newer one.
Uses Faust internals (``Recovery.active_tps``, ``active_offsets``, ``active_highwaters``,
``tp_to_table``, ``in_recovery``, ``buffers``, ``flush_buffers``; the rocksdict ``Store``'s
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
        rest, in order, are for Faust's conductor (see the module's docstring)."""
        recovery = self.app.tables.recovery
        # A rebalance stops the flow: the records go the way Faust's loop drops them.
        if not consumer.flow_active or not recovery.in_recovery or tp not in recovery.active_tps:
            return batch
        table = recovery.tp_to_table[tp]
        store = table.data
        if not isinstance(store, faust_rocksdb.Store) or not store.use_rocksdict:
            return batch
        highwater = recovery.active_highwaters.get(tp)
        if highwater is None:
            return batch
        seen = recovery.active_offsets.get(tp)
        upto = [r for r in batch if r.offset <= highwater]
        taken = [r for r in upto if seen is None or r.offset > seen]
        if taken:
            if recovery.buffers.get(table):  # Faust's own, older: written first
                recovery.flush_buffers()
            self._write(store, tp, taken)
            last = taken[-1].offset
            recovery.active_offsets[tp] = last
            consumer._read_offset[tp] = last
            self.on_applied(len(taken))
        return upto[-1:] + [r for r in batch if r.offset > highwater]

    @staticmethod
    def _write(store: Any, tp: Any, records: Sequence[Any]) -> None:
        writes = rocksdict.WriteBatch(raw_mode=True)
        for record in records:
            if record.value is None:
                writes.delete(record.key)
            else:
                writes.put(record.key, record.value)
        store._db_for_partition(tp.partition).write(writes)
        store.set_persisted_offset(tp, records[-1].offset)
