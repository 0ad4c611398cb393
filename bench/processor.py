"""The worker's processor alone: CPU per event on simulated traffic, without Kafka or Faust.

    .venv/bin/python bench/processor.py --events 60000            # CPU per event
    .venv/bin/python bench/processor.py --events 60000 --profile  # and where it goes

The same simulation as bench/throughput.py (100,000 users, seed 7, the first ``--events``
events in time order), split over ``--partitions`` partitions by key as the producer does, fed
to ``stream_app.processor.Processor`` in batches of ``--batch`` with the ONNX scorer and an
in-memory store. It prints process CPU time (the ONNX session's threads included) per event:
the part of bench/throughput.py's "CPU per event of the processor" that is ours, not Faust's
table reads. Compare two versions of the code by running it on each, one after the other.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import zlib

from decay.eventlog import frame_to_records
from decay.replay import encode
from decay.settings import Settings
from decay.simulate import simulate
from stream_app.app import processor_config
from stream_app.processor import Processor, Record
from stream_app.rollout import load_scorer
from stream_app.store import MemoryStore


def records(users: int, events: int, partitions: int, seed: int) -> list[Record]:
    frame = simulate(n_users=users, days=30.0, seed=seed).events.iloc[:events]
    offsets = [0] * partitions
    out = []
    for key, value in (encode(r) for r in frame_to_records(frame)):
        p = zlib.crc32(key or b"") % partitions
        out.append(Record(p, offsets[p], key, value))
        offsets[p] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print the top 30 functions")
    args = parser.parse_args()
    recs = records(args.users, args.events, args.partitions, args.seed)
    settings = Settings()
    store = MemoryStore()
    proc = Processor(
        processor_config(settings), load_scorer(settings), store, lambda: int(time.time() * 1000)
    )

    def run() -> None:
        for i in range(0, len(recs), args.batch):
            out = proc.process(recs[i : i + args.batch])
            for (p, k), v in out.writes.items():
                store.put(p, k, v)

    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.runcall(run)
    else:
        run()
    cpu = time.process_time() - started
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    print(
        f"{len(recs):,} events, {args.users:,} simulated users, batches of {args.batch}: "
        f"{cpu:.2f} s of CPU = {cpu / len(recs) * 1e6:.0f} us per event"
        + (" (under cProfile)" if profiler is not None else "")
    )


if __name__ == "__main__":
    main()
