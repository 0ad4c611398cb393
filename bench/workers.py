"""Throughput of 1 vs 2 worker processes on the same topic, measured in the same run.

    .venv/bin/python bench/workers.py

One topic of simulator traffic (``training.simulate(--users, --days, --seed)``, the first
``--events`` events in time order, keyed by user id, ``--partitions`` partitions) is produced
once to a private broker (``KafkaBroker`` on 127.0.0.1:19592, controller 19593, data in
/tmp/scale-kafka, the same as bench/scale.py's, so never run the two at once; logs in
var/bench/runs/<run>/). Then, ``--repeat`` rounds, the order alternating (1, 2 | 2, 1 | ...):

  1 worker   one worker process (``stream_app.app.create_app``, ONNX scorer) in a fresh
             consumer group / Faust app id, from offset 0
  2 workers  two worker processes launched together in one fresh group, each with its own
             data dir and web port, from offset 0

events/s = topic events / (last event processed − first event in hand), over all workers of
the run: first = start of the first batch any worker processed, last = the moment the last
partition's last offset was processed (each worker journals its batches; see
bench/scale.py). The broker runs with ``group.initial.rebalance.delay.ms`` =
``--rebalance-delay-ms`` so that two workers launched together join one generation instead
of the first taking all partitions and handing half over seconds later. The CPU of each
worker and of the broker between first and last event (/proc/PID/stat), and the machine's,
show whether the 2 cores were the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    MODEL,
    add_json_option,
    delete_topics,
    figures_path,
    free_port,
    machine_note,
    new_run_dir,
    write_figures,
)
from bench.scale import (  # noqa: E402
    Progress,
    Sampler,
    WorkerProc,
    broker_pid,
    end_offsets,
    fmt,
    produce_topic,
    share,
    start_broker,
    uptime,
    wait_for,
)
from bench.throughput import child_settings  # noqa: E402


def make_topic(args: argparse.Namespace, bootstrap: str, topic: str) -> dict[str, Any]:
    """Simulate, keep the first ``--events`` events in time order, produce them once."""
    from decay.eventlog import frame_to_records
    from decay_cli.replay import encode
    from training.simulate import simulate

    t = time.monotonic()
    events = simulate(n_users=args.users, days=args.days, seed=args.seed).events
    if len(events) < args.events:
        raise SystemExit(f"the simulation gave {len(events):,} events < --events {args.events:,}")
    events = events.iloc[: args.events]  # sorted by ts: a prefix in event time
    simulate_s = time.monotonic() - t
    messages = [encode(r) for r in frame_to_records(events)]
    sent, produce_s = produce_topic(bootstrap, topic, args.partitions, messages)
    span_h = (int(events["ts"].iloc[-1]) - int(events["ts"].iloc[0])) / 3.6e6
    info = {
        "topic": topic,
        "events": sent,
        "partitions": args.partitions,
        "simulated_users": args.users,
        "simulated_days": args.days,
        "seed": args.seed,
        "distinct_users": int(events["user_id"].nunique()),
        "event_time_span_h": round(span_h, 1),
        "mean_bytes": round(sum(len(v) for _, v in messages) / len(messages), 1),
        "simulate_s": round(simulate_s, 1),
        "produce_s": round(produce_s, 1),
    }
    print(
        f"topic {topic}: {sent:,} events of {info['distinct_users']:,} users over "
        f"{span_h:.1f} h of event time, {info['mean_bytes']} B each",
        flush=True,
    )
    return info


def launch(k: int, group: str, common: dict[str, Any], run_dir: Path) -> list[WorkerProc]:
    """k worker processes of one fresh group, started together; the group's alerts and DLQ
    topics are made first, so that they do not race to create them."""
    from decay_kafka.topics import ensure_topics

    specs = [
        {
            **common,
            "group": group,
            "data_dir": str(run_dir / f"{group}-data-{i}"),
            "web_port": free_port(),
        }
        for i in range(k)
    ]
    asyncio.run(ensure_topics(child_settings(specs[0])))
    workers = [WorkerProc(f"{group}-{i}", spec, run_dir) for i, spec in enumerate(specs)]
    for w in workers:
        w.start()
    return workers


def stop_all(workers: list[WorkerProc]) -> list[dict[str, Any]]:
    for w in workers:  # SIGTERM to all first: they leave the group together
        w.terminate()
    return [w.stop(timeout=120.0) for w in workers]


def worker_facts(
    w: WorkerProc, sampler: Sampler, t0: float, t1: float, metrics: dict[str, float] | None
) -> dict[str, Any]:
    batches = [e for e in w.entries if e["ev"] == "batch"]
    assigned = [e for e in w.entries if e["ev"] == "assigned"]
    cpu = sampler.between(f"{w.label}_cpu_s", t0, t1)
    m = metrics or {}
    return {
        "label": w.label,
        "events_in_batches": sum(e["n"] for e in batches),
        "batches": len(batches),
        "first_batch_after_s": batches[0]["t0"] - t0 if batches else None,
        "last_batch_at_s": batches[-1]["t"] - t0 if batches else None,
        "assignments": [
            {"at_s": round(e["t"] - t0, 2), "partitions": e["partitions"]} for e in assigned
        ],
        "restored_records": sum(e["n"] for e in w.entries if e["ev"] == "restored"),
        "cpu_s": cpu,
        "cores": cpu / (t1 - t0) if cpu is not None and t1 > t0 else None,
        "events_ok": m.get("decay_events_total{ok}", 0.0) + m.get("decay_events_total{late}", 0.0),
        "events_redelivered": m.get("decay_events_total{redelivered}", 0.0),
        "events_duplicate": m.get("decay_events_total{duplicate}", 0.0),
        "alerts": m.get("decay_alerts_total", 0.0),
        "peak_rss_mb": (sampler.peak(f"{w.label}_rss_kb") or 0) / 1024,
    }


def run_once(
    k: int, rep: int, args: argparse.Namespace, common: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    group = f"{common['run']}-k{k}-r{rep}"
    ends = asyncio.run(end_offsets(common["bootstrap"], common["topic"]))
    sampler = Sampler(broker_pid())
    progress = Progress(ends)
    workers = launch(k, group, common, run_dir)
    t_launch = min(w.spec["t_launch"] for w in workers)
    try:
        waited = wait_for(workers, progress, sampler, args.timeout, f"{k}w r{rep}")
        metrics = [w.metrics() for w in workers]
    finally:
        stops = stop_all(workers)
        for w in workers:
            shutil.rmtree(w.spec["data_dir"], ignore_errors=True)
    if not waited["ok"]:
        tails = {w.label: w.log_tail() for w in workers}
        return {"k": k, "rep": rep, "error": waited["error"], "log_tails": tails}
    t0, t1 = progress.t_first or 0.0, progress.t_done or 0.0
    seconds = t1 - t0
    return {
        "k": k,
        "rep": rep,
        "group": group,
        "events": common["n"],
        "processed_in_batches": progress.events,
        "seconds": seconds,
        "events_per_s": common["n"] / seconds,
        "first_event_after_launch_s": t0 - t_launch,
        "workers": [
            worker_facts(w, sampler, t0, t1, m) for w, m in zip(workers, metrics, strict=True)
        ],
        "broker_cpu_s": sampler.between("broker_cpu_s", t0, t1),
        "broker_cores": (sampler.between("broker_cpu_s", t0, t1) or 0) / seconds,
        "machine_busy_share": share(sampler, t0, t1),
        "loadavg_after": list(os.getloadavg()),
        "stops": stops,
    }


def describe(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  {r['k']} worker(s), round {r['rep']}: FAILED: {r['error']}"
    each = "; ".join(
        f"{w['label'].rsplit('-', 1)[-1]}: {w['events_in_batches']:,} ev, "
        f"{fmt(w['cores'], '.2f')} cores, {len(w['assignments'])} assignment(s) "
        f"{[a['partitions'] for a in w['assignments']]}"
        for w in r["workers"]
    )
    return (
        f"  {r['k']} worker(s), round {r['rep']}: {r['events']:,} events in "
        f"{r['seconds']:.1f} s = {r['events_per_s']:,.0f}/s; broker "
        f"{r['broker_cores']:.2f} cores, machine busy {fmt(r['machine_busy_share'], '.0%')} "
        f"[{each}]"
    )


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for k in (1, 2):
        ok = [r for r in results if r["k"] == k and "error" not in r]
        if not ok:
            rows.append({"k": k, "runs": 0})
            continue
        rows.append(
            {
                "k": k,
                "runs": len(ok),
                "events": ok[0]["events"],
                "seconds": statistics.median(r["seconds"] for r in ok),
                "events_per_s": statistics.median(r["events_per_s"] for r in ok),
                "events_per_s_runs": [round(r["events_per_s"]) for r in ok],
                "worker_cores": statistics.median(
                    sum(w["cores"] or 0 for w in r["workers"]) for r in ok
                ),
                "per_worker_cores": [[round(w["cores"] or 0, 2) for w in r["workers"]] for r in ok],
                "broker_cores": statistics.median(r["broker_cores"] for r in ok),
                "machine_busy": statistics.median(r["machine_busy_share"] or 0 for r in ok),
                "redelivered": sum(sum(w["events_redelivered"] for w in r["workers"]) for r in ok),
            }
        )
    if all(r.get("runs") for r in rows):
        rows[1]["ratio"] = rows[1]["events_per_s"] / rows[0]["events_per_s"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | runs | events | seconds (median) | events/s (median) | events/s each run "
        "| ratio to 1 worker | workers' CPU, cores (median) | cores per worker, each run "
        "| broker, cores | machine busy |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        if not r.get("runs"):
            lines.append(f"| {r['k']} | 0 | failed | | | | | | | | |")
            continue
        lines.append(
            f"| {r['k']} | {r['runs']} | {r['events']:,} | {r['seconds']:.1f} "
            f"| {r['events_per_s']:,.0f} | {', '.join(f'{x:,}' for x in r['events_per_s_runs'])} "
            f"| {fmt(r.get('ratio', 1.0 if r['k'] == 1 else None), '.2f')} "
            f"| {r['worker_cores']:.2f} "
            f"| {' / '.join('+'.join(str(c) for c in run) for run in r['per_worker_cores'])} "
            f"| {r['broker_cores']:.2f} | {r['machine_busy']:.0%} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="simulated users")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days")
    parser.add_argument("--events", type=int, default=120_000, help="events in the topic")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (1 and 2 workers each)")
    parser.add_argument(
        "--rebalance-delay-ms",
        type=int,
        default=10_000,
        help="broker group.initial.rebalance.delay.ms (kafka.sh's default is 0)",
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="per run, s (default 300 + events/200)"
    )
    parser.add_argument("--faust-loglevel", default="info")
    add_json_option(parser, "workers")
    parser.add_argument("--keep-broker", action="store_true")
    args = parser.parse_args()
    args.timeout = args.timeout or 300.0 + args.events / 200.0
    args.repeat = max(1, min(args.repeat, 10))
    return args


def run_all(args: argparse.Namespace, broker: Any, run: str, run_dir: Path) -> list[dict[str, Any]]:
    topic_info = make_topic(args, broker.bootstrap, f"{run}-events")
    common = {
        "run": run,
        "bootstrap": broker.bootstrap,
        "topic": topic_info["topic"],
        "partitions": args.partitions,
        "n": topic_info["events"],
        "loglevel": args.faust_loglevel,
    }
    results: list[dict[str, Any]] = [{"topic": topic_info}]
    for rep in range(args.repeat):
        for k in (1, 2) if rep % 2 == 0 else (2, 1):
            r = run_once(k, rep, args, common, run_dir)
            print(describe(r), flush=True)
            if "error" in r:
                for label, tail in r["log_tails"].items():
                    print(f"--- {label}\n{tail}", flush=True)
            results.append(r)
    return results


def main() -> int:
    args = parse_args()
    if not MODEL.exists():
        raise SystemExit(f"no {MODEL}")
    run = time.strftime("workers-%Y%m%d-%H%M%S", time.gmtime())
    run_dir = new_run_dir(run)
    meta = {**machine_note(), "uptime_start": uptime(), "command": " ".join(sys.argv)}
    print(f"{meta['date_utc']}: {meta['uptime_start']}", flush=True)
    started = time.monotonic()
    broker = None
    results: list[dict[str, Any]] = []
    try:
        broker = start_broker((f"group.initial.rebalance.delay.ms={args.rebalance_delay_ms}",))
        results = run_all(args, broker, run, run_dir)
    finally:
        meta["uptime_end"] = uptime()
        meta["total_s"] = round(time.monotonic() - started, 1)
        if broker is not None:
            try:
                asyncio.run(delete_topics(broker.bootstrap, run))
            except Exception as exc:  # the broker may be down already
                print(f"could not delete the run's topics: {exc!r}")
            if not args.keep_broker:
                broker.stop()
    runs = [r for r in results if "k" in r]
    rows = summarize(runs)
    text = table(rows)
    print(f"\n{meta['date_utc']}, load at start: {meta['uptime_start']}")
    print(text)
    print(f"load at end: {meta['uptime_end']}; total {meta['total_s']:.0f} s; logs in {run_dir}")
    for r in runs:
        r.pop("log_tails", None)
    topic = results[0].get("topic") if results else None
    out = {"meta": meta, "topic": topic, "summary": rows, "runs": runs, "table_markdown": text}
    write_figures(figures_path(args.json, "workers"), out)
    return 0 if runs and all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
