"""What a restart reads from each stored user, in memory: the header alone against the whole
record, in the same run.

    .venv/bin/python bench/restart.py --users 1000000

Builds ``--users`` state records of 10 events and 2 stored alerts each (one partition, the
encoding the worker stores), then times, per record: ``decode_state`` (what activation did
for every user), ``peek_state`` (what it reads: the header), and a whole
``Processor._activate`` of the partition with the committed offset past every record, twice:
without the partition's ``WRITTEN_KEY`` record (every user read before the partition is
active, as after a crash with work to re-send) and with it (the usual restart: active at
once, the schedule read in a thread). RocksDB's own read time is not in it (bench/scale.py
measures a real restart).
"""

from __future__ import annotations

import argparse
import struct
import time

from decay.events import Event, EventType
from decay.scoring import ExponentialDecayScorer
from decay.state import StoredAlert, UserState, decode_state, encode_state, peek_state
from stream_app.partitions import WRITTEN_KEY
from stream_app.processor import BatchOutput, Processor, ProcessorConfig
from stream_app.store import MemoryStore

T0 = 1_704_067_200_000


def records(users: int) -> dict[str, bytes]:
    out = {}
    for u in range(users):
        st = UserState(partition=0)
        for i in range(10):
            ts = T0 + u + i * 3_600_000
            event = Event(f"e{u}-{i}", f"u{u}", ts, EventType.VIEW, category=f"c{u % 7}")
            st.add(event, i, 64)
        st.deadline_ms = T0 + u + 40 * 86_400_000
        st.alerts = [StoredAlert(3, b'{"kind":"dormant"}'), StoredAlert(8, b'{"kind":"x"}')]
        out[f"u{u}"] = encode_state(st)
    return out


def per_user_us(seconds: float, users: int) -> str:
    return f"{seconds:.2f} s = {seconds / users * 1e6:.2f} us per user"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    args = parser.parse_args()
    started = time.perf_counter()
    data = records(args.users)
    print(f"{args.users:,} records built in {time.perf_counter() - started:.1f} s")
    values = list(data.values())

    started = time.perf_counter()
    for v in values:
        decode_state(v)
    print("decode_state, every record:", per_user_us(time.perf_counter() - started, len(values)))

    started = time.perf_counter()
    for v in values:
        peek_state(v)
    print("peek_state, every record:  ", per_user_us(time.perf_counter() - started, len(values)))

    store = MemoryStore()
    store.data[0] = data
    proc = Processor(ProcessorConfig(), ExponentialDecayScorer(86_400.0), store, lambda: T0)
    proc.committed = {0: 100}  # past every stored offset: nothing to re-send
    started = time.perf_counter()
    proc._activate(0, 100, BatchOutput())
    took = time.perf_counter() - started
    print("activation, every user read first:", per_user_us(took, len(values)))
    print(f"pending deadlines rebuilt: {proc.pending_deadlines():,}")

    # What a worker's restart does when its WRITTEN_KEY record says nothing is to re-send:
    # the partition is active at once, its schedule read in a thread.
    data[WRITTEN_KEY] = struct.pack("<q", 99)
    proc = Processor(ProcessorConfig(), ExponentialDecayScorer(86_400.0), store, lambda: T0)
    proc.committed = {0: 100}
    started = time.perf_counter()
    proc._activate(0, 100, BatchOutput())
    active = time.perf_counter() - started
    for loading in proc.schedules_loading():
        loading.result()
    read = time.perf_counter() - started
    proc.tick(T0, 2**62)  # takes the schedule in
    print(f"activation, schedule read apart: active in {active * 1000:.1f} ms; read in", end=" ")
    print(per_user_us(read, len(values)), f"({proc.pending_deadlines():,} deadlines)")


if __name__ == "__main__":
    main()
