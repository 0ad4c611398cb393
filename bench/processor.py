"""The worker's processor alone: CPU per event on simulated traffic, without Kafka or Faust.

    .venv/bin/python bench/processor.py --events 60000            # CPU per event
    .venv/bin/python bench/processor.py --events 60000 --profile  # and where it goes
    .venv/bin/python bench/processor.py --events 60000 --routing  # cost of the routing check
    .venv/bin/python bench/processor.py --events 60000 --split    # validation / scorer / gc / rest
    .venv/bin/python bench/processor.py --users 2000 --events 20000 --digest  # all it gave

The same simulation as bench/throughput.py (100,000 users, seed 7, the first ``--events``
events in time order), split over ``--partitions`` partitions by key as Kafka's default
partitioner does (murmur2: every event is on its user's own partition), fed
to ``stream_app.processor.Processor`` in batches of ``--batch`` with the ONNX scorer and an
in-memory store. It prints process CPU time (the ONNX session's threads included) per event:
the part of bench/throughput.py's "CPU per event of the processor" that is ours, not Faust's
table reads. Compare two versions of the code by running it on each, one after the other.
``--split`` divides the CPU into validation (``admit``, parsing included), the scorer's calls,
garbage collection, and the rest (the window, alert rules, schedule, state records): each
timed around the call with ``time.process_time``, so nested garbage collections count in the
stage they interrupt as well as in ``gc``; the timer's own cost (measured on a no-op) is
taken off each timed call. ``--routing`` runs the same records with the check of each event's
partition against its user's own (what the worker does) and without it, alternately, three
times each. ``--digest`` feeds the records with some of them spoiled (duplicated, not JSON,
on another user's partition, moved back in time), in batches of 1, 7, 700 and ``--batch``,
scores published, at a fixed clock, and prints a SHA-256 of everything the processor gave per
batch size: two versions of the code that print the same digests behave the same on them.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import pstats
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

import stream_app.processor as processor_module
from decay.eventlog import frame_to_records
from decay.settings import Settings
from decay_cli.replay import encode
from stream_app.app import processor_config
from stream_app.processor import BatchOutput, Processor, ProcessorConfig, Record
from stream_app.queries import partition_for
from stream_app.rollout import load_scorer
from stream_app.store import MemoryStore
from training.simulate import simulate


def records(users: int, events: int, partitions: int, seed: int) -> list[Record]:
    frame = simulate(n_users=users, days=30.0, seed=seed).events.iloc[:events]
    offsets = [0] * partitions
    out = []
    for key, value in (encode(r) for r in frame_to_records(frame)):
        p = partition_for(key or b"", partitions)
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
    parser.add_argument("--routing", action="store_true", help="with and without the check")
    parser.add_argument("--split", action="store_true", help="validation, scorer, gc, rest")
    parser.add_argument("--digest", action="store_true", help="a hash of all outputs")
    args = parser.parse_args()
    recs = records(args.users, args.events, args.partitions, args.seed)
    settings = Settings(partitions=args.partitions)
    config = processor_config(settings)
    if args.digest:
        clock = max(orjson.loads(r.value or b"").get("ts", 0) for r in recs) + 86_400_000
        for size in (1, 7, 700, args.batch):
            print(f"batches of {size}: {digest(spoiled(recs), config, settings, size, clock)}")
        return
    if args.split:
        print(split(recs, config, settings, args.batch))
        return
    if not args.routing:
        print(measure(recs, config, settings, args.batch, args.users, args.profile))
        return
    for _ in range(3):
        for label, cfg in (
            ("routing on ", config),
            ("routing off", replace(config, partitions=None)),
        ):
            print(label, measure(recs, cfg, settings, args.batch, args.users, False))


class Digest:
    """A SHA-256 over a run's outputs (writes in key order: a set's order is not behaviour),
    applying their writes and deletes to ``store``; also bench/digest_more.py's."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.h = hashlib.sha256()
        self.seen: Counter[str] = Counter()

    def apply(self, out: BatchOutput) -> None:
        h, store = self.h, self.store
        self.seen.update(a.kind for a in out.alerts)
        self.seen.update(out.counts)
        for (p, k), v in sorted(out.writes.items()):
            h.update(f"w{p}:{k}:".encode() + v)
            store.put(p, k, v)
        for p, k in out.deletes:
            h.update(f"d{p}:{k}".encode())
            store.delete(p, k)
        for a in (*out.alerts, *out.scores):
            h.update(f"a{a.partition}:{a.user_id}:{a.kind}:".encode() + a.payload)
        for d in out.dead_letters:
            h.update(f"x{d.record.partition}:{d.record.offset}:{d.reason}:{d.detail}".encode())
        for f in out.forwards:
            h.update(f"f{f.partition}:{f.user_id}:{f.record.offset}".encode())
        h.update(repr(sorted(out.counts.items())).encode())
        h.update(repr(sorted(out.gaps.items())).encode())

    def hexdigest(self) -> str:
        return self.h.hexdigest()[:16] + " " + repr(dict(sorted(self.seen.items())))


def spoiled(recs: list[Record]) -> list[Record]:
    """The records with every 97th duplicated, every 101st not JSON, every 103rd on the next
    partition (a forward), every 89th sent an hour back in time (late); offsets renumbered."""
    out: list[Record] = []
    partitions = max(r.partition for r in recs) + 1
    for i, r in enumerate(recs):
        value, part = r.value or b"", r.partition
        if i % 101 == 50:
            value = value[:-3]
        elif i % 89 == 44:
            event = orjson.loads(value)
            event["ts"] -= 3_600_000
            value = orjson.dumps(event)
        if i % 103 == 51:
            part = (part + 1) % partitions
        out.append(Record(part, 0, r.key, value, r.timestamp))
        if i % 97 == 48:
            out.append(out[-1])
    offsets = [0] * partitions
    renumbered = []
    for r in out:
        renumbered.append(Record(r.partition, offsets[r.partition], r.key, r.value, r.timestamp))
        offsets[r.partition] += 1
    return renumbered


def digest(
    recs: list[Record], config: ProcessorConfig, settings: Settings, batch: int, clock: int
) -> str:
    """SHA-256 over every batch's writes, deletes, alerts, scores, dead letters, forwards and
    counts, forwards fed back as the worker does; the clock fixed at ``clock``."""
    store = MemoryStore()
    config = replace(config, publish_scores=True, score_min_change=0.0)
    proc = Processor(config, load_scorer(settings), store, lambda: clock)
    d = Digest(store)

    for i in range(0, len(recs), batch):
        out = proc.process(recs[i : i + batch])
        d.apply(out)
        forwards = [
            Record(f.partition, n, f.record.key, f.record.value, f.record.timestamp)
            for n, f in enumerate(out.forwards)
        ]
        if forwards:
            d.apply(proc.process_forwarded(forwards))
    return d.hexdigest()


def measure(
    recs: list[Record],
    config: ProcessorConfig,
    settings: Settings,
    batch: int,
    users: int,
    profile: bool,
) -> str:
    store = MemoryStore()
    proc = Processor(config, load_scorer(settings), store, lambda: int(time.time() * 1000))
    forwarded = 0

    def run() -> None:
        nonlocal forwarded
        for i in range(0, len(recs), batch):
            out = proc.process(recs[i : i + batch])
            forwarded += len(out.forwards)
            for (p, k), v in out.writes.items():
                store.put(p, k, v)

    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.runcall(run)
    else:
        run()
    cpu = time.process_time() - started
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    assert forwarded == 0  # the records are on their users' own partitions
    return (
        f"{len(recs):,} events, {users:,} simulated users, batches of {batch}: "
        f"{cpu:.2f} s of CPU = {cpu / len(recs) * 1e6:.1f} us per event"
        + (" (under cProfile)" if profiler is not None else "")
    )


def _timed(f: Callable[..., Any], stage: str, acc: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            acc[stage] += time.process_time() - started
            acc[stage + " calls"] += 1

    return timed


def _timer_cost(n: int = 200_000) -> float:
    """CPU seconds one timed call adds (two clock reads, the wrapper)."""
    acc = {"noop": 0.0, "noop calls": 0.0}
    noop = _timed(lambda: None, "noop", acc)
    started = time.process_time()
    for _ in range(n):
        noop()
    return (time.process_time() - started) / n


def split(recs: list[Record], config: ProcessorConfig, settings: Settings, batch: int) -> str:
    """CPU per event in validation, the scorer's calls, garbage collection and the rest."""
    acc = dict.fromkeys(["validation", "validation calls", "scorer", "scorer calls", "gc"], 0.0)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.process_time()
        else:
            acc["gc"] += time.process_time() - gc_started[0]

    scorer = load_scorer(settings)
    for name in ("score", "resume", "step", "scores", "curves"):
        if hasattr(scorer, name):
            setattr(scorer, name, _timed(getattr(scorer, name), "scorer", acc))
    original = processor_module.admit
    processor_module.admit = _timed(original, "validation", acc)  # type: ignore[assignment]
    gc.callbacks.append(on_gc)
    try:
        store = MemoryStore()
        proc = Processor(config, scorer, store, lambda: int(time.time() * 1000))
        started = time.process_time()
        for i in range(0, len(recs), batch):
            out = proc.process(recs[i : i + batch])
            for (p, k), v in out.writes.items():
                store.put(p, k, v)
        total = time.process_time() - started
    finally:
        gc.callbacks.remove(on_gc)
        processor_module.admit = original  # type: ignore[assignment]
    cost = _timer_cost()
    total -= cost * (acc["validation calls"] + acc["scorer calls"])
    for stage in ("validation", "scorer"):  # what a timed call measures of its own timer
        acc[stage] -= cost * acc[stage + " calls"] / 2
    us = {k: v / len(recs) * 1e6 for k, v in acc.items()}
    rest = total / len(recs) * 1e6 - us["validation"] - us["scorer"]
    return (
        f"{len(recs):,} events, batches of {batch}, scorer {scorer.version}: "
        f"{total / len(recs) * 1e6:.1f} us of CPU per event = validation {us['validation']:.1f}"
        f" + scorer {us['scorer']:.1f} + rest {rest:.1f} (garbage collection {us['gc']:.1f},"
        " counted in the stage it interrupted)"
    )


if __name__ == "__main__":
    main()
