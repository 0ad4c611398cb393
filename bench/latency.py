"""Event-to-score latency of one worker at half its maximum throughput, in one run.

    .venv/bin/python bench/latency.py

On a private broker (``KafkaBroker`` on 127.0.0.1:19392/19393, data in /tmp/bench-kafka, as
bench/throughput.py; ``--port``, ``--controller-port``, ``--broker-dir``), with simulator
traffic (``training.simulate``, events in time order, keyed by user id, ``--partitions``
partitions), and ONE worker (``stream_app.app.create_app``
with the ONNX LSTM scorer or ``--scorer``'s, in a child process, its scores topic on with
``score_min_change=0``: one score message per event, carrying ``event_id``):

1. max: ``--events`` events (200,000 by default: 10-20 s of the worker's work here, long
   enough for a steady rate; a few seconds of it no longer are) are produced to a fresh topic
   on the loopback broker, then a fresh worker goes through them; max = the events after
   the first tenth / seconds from the batch that passed a tenth to its last event processed
   (bench/throughput.py's ``worker`` contender, with the scores topic on: its start, first
   batches and warm caches left out). The first-to-last rate is printed too.
2. load: a fresh worker is started on another fresh topic and, once it is assigned and
   ready, events are produced at ``--fraction`` x max per second (``decay_cli.replay.produce``'s
   ``rate``) for ``--duration`` seconds while it consumes live.

After the run both topics are read back with aiokafka. Latency of an event = Kafka timestamp
of its score message (CreateTime, set by the worker's producer) minus Kafka timestamp of the
event message (CreateTime, set by the replayer). Reported: p50, p90, p95, p99, max, count, and
the events without a score (should be 0). Then where the time went, from the load worker's
own histograms (``decay_record_stage_seconds``, see stream_app/metrics.py): per stage (fetch,
queue, process, send) the records counted, p50 and p99. The caller's ``DECAY_*`` worker
settings (``DECAY_BATCH_MAX=...``) are given to both workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the child runs this file as a script
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    MODEL,
    add_broker_options,
    add_json_option,
    create_topic,
    delete_topics,
    figures_path,
    is_child_call,
    launch_child,
    machine_note,
    new_run_dir,
    start_broker,
    wait_child,
    worker_settings_from_env,
    write_figures,
)
from bench.throughput import (  # noqa: E402
    BENCH_CONTROLLER_PORT,
    BENCH_PORT,
    BROKER_DIR,
    Probe,
    build_worker,
    child_settings,
)

# ------------------------------------------------------------------------ child side


def child_main(spec: dict[str, Any]) -> None:
    """The worker contender of bench/throughput.py, scores topic on, plus a "ready" file
    written when the group's assignment and table recovery are done (the load phase waits
    for it before producing)."""
    import faust

    settings = child_settings(spec).model_copy(
        update={"scores_topic": spec["scores_topic"], "score_min_change": 0.0}
    )
    probe = Probe(spec)
    app = build_worker(settings, probe, spec["scorer"])
    ready = Path(spec["ready"])

    async def on_ready(sender: Any, **kwargs: Any) -> None:
        ready.write_text(str(time.time()))

    app.on_rebalance_complete.connect(on_ready)
    # build_worker's hook stops the worker itself (SIGTERM) after the n-th event.
    faust.Worker(app, loglevel=spec["loglevel"], quiet=True).execute_from_commandline()


# ----------------------------------------------------------------------- parent side


def listener_pid(port: int) -> int | None:
    """The process listening on a loopback port (the broker's JVM), for its CPU time."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for part in out.split("pid=")[1:]:
        digits = part.split(",", 1)[0]
        if digits.isdigit():
            return int(digits)
    return None


def proc_cpu_s(pid: int | None) -> float | None:
    """user+sys CPU seconds of a process so far (/proc/PID/stat)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat), all cores."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def simulate_events(args: argparse.Namespace) -> tuple[Any, float]:
    """The simulation's events in time order, and the half-life fitted on the first
    ``--events`` of them (for the worker's settings; the ONNX scorer ignores it)."""
    from decay.scoring import fit_half_life, gaps_from_events
    from training.simulate import simulate

    events = simulate(n_users=args.users, days=args.days, seed=args.seed).events
    head = events.iloc[: args.events]
    half_life_h = fit_half_life(gaps_from_events(head["user_id"], head["ts"])) / 3600.0
    return events, half_life_h


def encoded(events: Any, n: int) -> list[tuple[bytes, bytes]]:
    """The first n events as (key, value) messages (decay_cli.replay.encode)."""
    from decay.eventlog import frame_to_records
    from decay_cli.replay import encode

    return [encode(r) for r in frame_to_records(events.iloc[:n])]


def launch(label: str, spec: dict[str, Any], run_dir: Path) -> tuple[subprocess.Popen, Path]:
    log_path = run_dir / f"{label}.log"
    return launch_child(__file__, spec, log_path), log_path


def wait_result(proc: subprocess.Popen, out: Path, log_path: Path, timeout: float) -> dict:
    wait_child(proc, out, timeout)
    if not out.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"worker gave no result (exit {proc.returncode}); log {log_path}:\n{tail}")
    result = json.loads(out.read_text())
    result.update(exit_code=proc.returncode, log=str(log_path))
    return result


def spec_for(
    label: str, topic: str, n: int, common: dict[str, Any], run_dir: Path, timeout: float
) -> dict[str, Any]:
    group = f"{common['run']}-{label}"
    return {
        **common,
        "kind": "worker",
        "topic": topic,
        "n": n,
        "group": group,
        "scores_topic": f"{group}-scores",
        "out": str(run_dir / f"{label}.json"),
        "ready": str(run_dir / f"{label}.ready"),
        "data_dir": str(run_dir / label),
        "timeout": timeout,
        "t_launch": time.time(),
    }


async def read_topic(bootstrap: str, topic: str, timeout: float) -> list[tuple[bytes, int, int]]:
    """(value, timestamp ms, timestamp type) of every message in the topic, bounded."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes, int, int]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for msgs in batches.values():
                out.extend((m.value or b"", m.timestamp, m.timestamp_type) for m in msgs)
        else:
            raise SystemExit(f"could not read {topic} to its end in {timeout:.0f} s")
        return out
    finally:
        await consumer.stop()


def latencies(
    events: list[tuple[bytes, int, int]], scores: list[tuple[bytes, int, int]]
) -> dict[str, Any]:
    import numpy as np

    sent: dict[str, int] = {}
    for value, ts, _ in events:
        sent.setdefault(json.loads(value)["event_id"], ts)
    scored: dict[str, int] = {}
    for value, ts, _ in scores:
        scored.setdefault(json.loads(value)["event_id"], ts)
    pairs = sorted((t, scored[e] - t) for e, t in sent.items() if e in scored)
    lat = np.array([d for _, d in pairs], dtype=float)
    # Over the run: p50/p99 of each tenth of the scored events (in event CreateTime order).
    tenths = [
        {"p50_ms": float(np.percentile(c, 50)), "p99_ms": float(np.percentile(c, 99))}
        for c in np.array_split(lat, 10)
        if len(c)
    ]
    # Score messages come out in bursts (one per worker batch): bursts = runs of score
    # timestamps less than 50 ms apart.
    sc_ts = np.sort(np.array([t for _, t, _ in scores], dtype=float))
    bursts = int(1 + np.count_nonzero(np.diff(sc_ts) >= 50)) if len(sc_ts) else 0
    ev_ts = np.array([t for _, t, _ in events], dtype=float)
    span_s = (ev_ts.max() - ev_ts.min()) / 1000.0 if len(ev_ts) > 1 else float("nan")

    def q(p: float) -> float:
        return float(np.percentile(lat, p)) if len(lat) else float("nan")

    return {
        "events": len(events),
        "distinct_event_ids": len(sent),
        "score_messages": len(scores),
        "count": len(lat),
        "no_score": sum(1 for e in sent if e not in scored),
        "scores_for_unknown_events": sum(1 for e in scored if e not in sent),
        "p50_ms": q(50),
        "p90_ms": q(90),
        "p95_ms": q(95),
        "p99_ms": q(99),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "min_ms": float(lat.min()) if len(lat) else float("nan"),
        "mean_ms": float(lat.mean()) if len(lat) else float("nan"),
        "event_timestamp_types": sorted({t for _, _, t in events}),
        "score_timestamp_types": sorted({t for _, _, t in scores}),
        "by_tenth": tenths,
        "score_bursts": bursts,
        "mean_burst_interval_ms": float((sc_ts[-1] - sc_ts[0]) / max(bursts - 1, 1))
        if len(sc_ts)
        else float("nan"),
        # What the replayer really offered, from the broker's timestamps.
        "event_span_s": span_s,
        "achieved_rate": len(events) / span_s if span_s and span_s > 0 else float("nan"),
    }


def steady_rate(r: dict[str, Any]) -> float:
    """A max-phase run's events/s from the batch that passed a tenth of them to the last:
    without the worker's start and first batches (see bench/throughput.py's build_worker)."""
    seconds = r["t_last"] - r["t_tenth"]
    if seconds <= 0:
        raise SystemExit(f"max phase: {r['count'] - r['n_tenth']} events after the tenth in 0 s")
    return float(r["count"] - r["n_tenth"]) / seconds


def table(max_rate: float, rate: float, lat: dict[str, Any], duration: float) -> str:
    return "\n".join(
        [
            "| max events/s | offered events/s | achieved events/s | duration (s) | events "
            "| scored | no score | p50 (ms) | p90 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {max_rate:,.0f} | {rate:,.0f} | {lat['achieved_rate']:,.0f} | {duration:.0f} "
            f"| {lat['events']:,} | {lat['count']:,} | {lat['no_score']:,} "
            f"| {lat['p50_ms']:,.0f} | {lat['p90_ms']:,.0f} | {lat['p95_ms']:,.0f} "
            f"| {lat['p99_ms']:,.0f} "
            f"| {lat['max_ms']:,.0f} |",
        ]
    )


def stage_table(stages: dict[str, dict[str, float]]) -> str:
    """The load worker's stage histograms (stream_app.stages.summary), one row each."""
    lines = [
        "| stage (worker's histograms) | records | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, row in stages.items():
        lines.append(f"| {name} | {row['count']:,} | {row['p50_ms']:,.1f} | {row['p99_ms']:,.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="simulated users")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days")
    parser.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="events for the max phase (its rate is taken past the first tenth)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of offered load")
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="offered load as a share of the max"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offered events/s (instead of --fraction x the max phase's): to compare two "
        "versions of the code at the same load",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--scorer",
        choices=("onnx", "baseline", "lapse"),
        default="onnx",
        help="the worker's scorer: the ONNX LSTM, the exp-decay baseline or the lapse step "
        "model (bench/throughput.py's worker, worker_baseline, worker_lapse)",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase, seconds")
    add_json_option(parser, "latency")
    parser.add_argument("--faust-loglevel", default="info")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    add_broker_options(parser, BENCH_PORT, BENCH_CONTROLLER_PORT, BROKER_DIR)
    args = parser.parse_args()
    if not MODEL.exists():
        raise SystemExit(f"no {MODEL}")
    if not 0 < args.fraction <= 1 or args.duration <= 0 or args.events <= 0:
        parser.error("need 0 < --fraction <= 1, --duration > 0, --events > 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("need --rate > 0")

    from decay_cli.replay import produce

    run = time.strftime("lat-%Y%m%d-%H%M%S", time.gmtime())
    run_dir = new_run_dir(run)
    meta = machine_note()
    started = time.monotonic()
    broker = start_broker(args.broker_dir, args.port, args.controller_port)
    try:
        bootstrap = broker.bootstrap
        t = time.monotonic()
        frame, half_life_h = simulate_events(args)
        print(f"simulated {len(frame):,} events in {time.monotonic() - t:.1f} s", flush=True)
        if len(frame) < args.events:
            raise SystemExit(f"the simulation gave {len(frame):,} events < --events")
        given = worker_settings_from_env()
        if given:
            print(f"worker settings from the environment: {given}", flush=True)
        common = {
            "run": run,
            "bootstrap": bootstrap,
            "partitions": args.partitions,
            "half_life_hours": half_life_h,
            "loglevel": args.faust_loglevel,
            "settings": given,
            "scorer": args.scorer,
        }

        # 1. max: pre-produced topic, timed from the first event in hand to the last done.
        topic1 = f"{run}-max-events"
        asyncio.run(create_topic(bootstrap, topic1, args.partitions))
        asyncio.run(produce(encoded(frame, args.events), bootstrap, topic1))
        spec = spec_for("max", topic1, args.events, common, run_dir, args.timeout)
        proc, log_path = launch("max", spec, run_dir)
        r_max = wait_result(proc, Path(spec["out"]), log_path, args.timeout)
        if r_max["count"] < args.events:
            raise SystemExit(f"max phase: only {r_max['count']} of {args.events} events")
        max_rate, first_to_last = steady_rate(r_max), args.events / r_max["seconds"]
        rate = args.rate or max_rate * args.fraction
        n_load = math.ceil(rate * args.duration)
        print(
            f"max: {max_rate:,.0f}/s past the first tenth of {args.events:,} events "
            f"({r_max['t_last'] - r_max['t_tenth']:.1f} s; first to last event "
            f"{r_max['seconds']:.1f} s = {first_to_last:,.0f}/s, CPU "
            f"{r_max['cpu_interval_s']:.1f} s); "
            f"offering {rate:,.0f}/s for {args.duration:.0f} s = {n_load:,} events",
            flush=True,
        )
        if n_load > len(frame):
            raise SystemExit(f"need {n_load:,} events, the simulation has {len(frame):,}")
        load_messages = encoded(frame, n_load)

        # 2. load: a fresh worker on a fresh topic; produce at `rate` once it is ready.
        topic2 = f"{run}-load-events"
        asyncio.run(create_topic(bootstrap, topic2, args.partitions))
        spec = spec_for("load", topic2, n_load, common, run_dir, args.timeout)
        proc, log_path = launch("load", spec, run_dir)
        ready = Path(spec["ready"])
        deadline = time.monotonic() + min(args.timeout, 180.0)
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not ready.exists():
            proc.kill()
            proc.wait(timeout=30)
            raise SystemExit(f"load worker not ready (exit {proc.returncode}); log {log_path}")
        time.sleep(2.0)  # let the fetchers settle after the assignment
        load_at_start = os.getloadavg()
        broker_pid = listener_pid(args.port)
        broker_cpu0, machine0 = proc_cpu_s(broker_pid), machine_cpu()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        sent = asyncio.run(produce(load_messages, bootstrap, topic2, rate=rate))
        produce_s = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        print(f"produced {sent:,} events in {produce_s:.1f} s", flush=True)
        r_load = wait_result(proc, Path(spec["out"]), log_path, args.timeout)
        load_at_end = os.getloadavg()
        broker_cpu1, machine1 = proc_cpu_s(broker_pid), machine_cpu()
        # Who had the CPU from the first event produced to the worker's stop.
        cpu_load_phase = {
            "wall_s": time.monotonic() - t0,
            "replayer_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "worker_cpu_s": r_load["cpu_interval_s"],
            "broker_cpu_s": None
            if broker_cpu0 is None or broker_cpu1 is None
            else broker_cpu1 - broker_cpu0,
            "machine_busy_cpu_s": machine1[0] - machine0[0],
            "machine_total_cpu_s": machine1[1] - machine0[1],
        }
        print(
            "load phase CPU-s: "
            + ", ".join(
                f"{k.removesuffix('_s')} {v:.1f}"
                for k, v in cpu_load_phase.items()
                if v is not None
            ),
            flush=True,
        )

        events = asyncio.run(read_topic(bootstrap, topic2, 120.0))
        scores = asyncio.run(read_topic(bootstrap, spec["scores_topic"], 120.0))
        lat = latencies(events, scores)
        text = table(max_rate, rate, lat, args.duration)
        print()
        print(
            f"{meta['date_utc']}, {meta['cpus']} CPUs ({meta['cpu_model']}), load at start "
            f"{', '.join(f'{x:.2f}' for x in meta['loadavg_at_start'])}, during the load phase "
            f"{load_at_start[0]:.2f} -> {load_at_end[0]:.2f}"
        )
        print(text, flush=True)
        print()
        print(stage_table(r_load.get("stages", {})), flush=True)
        print(f"aiokafka fetch_max_wait_ms: {r_load.get('fetch_max_wait_ms')}", flush=True)
        if lat["no_score"]:
            print(f"WARNING: {lat['no_score']:,} events without a score", flush=True)
        write_figures(
            figures_path(args.json, "latency"),
            {
                "meta": {
                    **meta,
                    "command": " ".join(sys.argv),
                    "loadavg_load_phase": [load_at_start, load_at_end],
                    "total_s": round(time.monotonic() - started, 1),
                },
                "params": {
                    k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                },
                "max_phase": {
                    **r_max,
                    "events_per_s": max_rate,
                    "first_to_last_events_per_s": first_to_last,
                },
                "load_phase": {
                    **r_load,
                    "offered_rate": rate,
                    "produced": sent,
                    "produce_s": produce_s,
                    "cpu": cpu_load_phase,
                },
                "latency": lat,
                "table_markdown": text,
            },
        )
        return 0 if lat["no_score"] == 0 and lat["count"] > 0 else 1
    finally:
        try:
            asyncio.run(delete_topics(broker.bootstrap, run))
        except Exception as exc:  # the broker may be down already
            print(f"could not delete the run's topics: {exc!r}")
        if not args.keep_broker:
            broker.stop()
        for d in run_dir.iterdir():
            if d.is_dir():  # Faust/RocksDB data; logs and results stay
                shutil.rmtree(d, ignore_errors=True)
        print(f"total {time.monotonic() - started:.0f} s; logs in {run_dir}", flush=True)


if __name__ == "__main__":
    if is_child_call(sys.argv):
        child_main(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
