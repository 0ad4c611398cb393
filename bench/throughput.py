"""Throughput of one worker against its references, all measured in the same run.

    .venv/bin/python bench/throughput.py --users 100000 --events 300000

One topic of simulator traffic (``training.simulate``, the first ``--events`` events in time
order, keyed by user id, ``--partitions`` partitions) is produced once to a private broker
(``KafkaBroker`` on ports 19392/19393, data in /tmp/bench-kafka; ``--port``,
``--controller-port``, ``--broker-dir``). Then each contender, in its
own child process and its own consumer group / Faust app id, reads the whole topic from the
beginning, one after the other (never two at once: the machine has 2 cores):

  raw          aiokafka consumer, getmany() loop, no processing (reference ceiling)
  faust_count  a Faust agent that only counts (same Faust app settings as the worker)
  faust_batch_count  the same app counting the topic's messages in batches as Faust's
               conductor hands them over, without a Stream (bench/naive.py: RawTopic)
  faust_drain_count  the same, one level lower: the worker's intake (stream_app/runtime/intake.py)
               takes whole fetches in place of Consumer._drain_messages
  naive        a Faust agent doing, per event: parse, RocksDB table get + decode, window
               update, one scorer call, encode + table set (bench/naive.py)
  worker       stream_app.app.create_app: micro-batches, RocksDB state, scoring, alerts
               and dead letters out, offsets acked after each batch, with the ONNX LSTM
               scorer (stream_app/models/model.onnx; `decay worker`'s default)
  worker_baseline  the same worker with the exponential-decay baseline scorer
  worker_lapse the same worker with the lapse step model (stream_app/models/cdnow-lapse.onnx,
               scored incrementally: one step per event, state in the user's record)
  quix         a Quix Streams application doing as much of the worker's job as Quix's
               per-message model allows (bench/quix_peer.py: the last 64 events per user in
               its RocksDB state, an exponential-decay score, alerts to a topic; no model)

Per run: ``seconds`` = wall time from the first event in hand to the last event processed,
``events/s`` = N / seconds, ``wall`` = from the child's launch (imports, group join,
assignment, table recovery included) to the last event; ``CPU us/event`` = the child's CPU
(all its threads) between its first and last event, per event. With ``--repeat`` each
contender runs that many times (rounds interleaved) and the table shows the medians; the
ratios of the worker's figures to the other contenders' follow it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
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
    count_messages,
    create_topic,
    delete_topics,
    figures_path,
    free_port,
    is_child_call,
    launch_child,
    machine_note,
    new_run_dir,
    start_broker,
    wait_child,
    worker_settings_from_env,
    write_figures,
)

BENCH_PORT = 19392
BENCH_CONTROLLER_PORT = 19393
BROKER_DIR = Path("/tmp/bench-kafka")
CONTENDERS = (
    "raw",
    "faust_count",
    "faust_batch_count",
    "faust_drain_count",
    "naive",
    "naive_onnx",
    "worker",
    "worker_baseline",
    "worker_lapse",
    "quix",
)
LABELS = {
    "raw": "(a) raw aiokafka consume",
    "faust_count": "(b) Faust agent, count only",
    "faust_batch_count": "(b') Faust conductor to a raw channel, batch count, no stream",
    "faust_drain_count": "(b'') the worker's intake: whole fetches, batch count, no stream",
    "naive": "(c) naive Faust, per-event RocksDB + exp-decay score",
    "naive_onnx": "(c') naive Faust, per-event RocksDB + ONNX call",
    "worker": "(d) decay worker, ONNX LSTM scorer",
    "worker_baseline": "(d') decay worker, exp-decay scorer",
    "worker_lapse": "(d'') decay worker, lapse step model",
    "quix": "(e) Quix Streams, per-event RocksDB window + exp-decay score + alerts",
}
SCORER = {"worker": "onnx", "worker_baseline": "baseline", "worker_lapse": "lapse"}
LAPSE_MODEL = MODEL.parent / "cdnow-lapse.onnx"


# ------------------------------------------------------------------------ child side


class Probe:
    """First and last event times of one contender; writes the result, then stops it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.n = int(spec["n"])
        self.t_first: float | None = None
        self.n_first = 1  # events in hand at t_first (the raw consumer gets a whole fetch)
        self.cpu_first = 0.0
        self.done = False
        self.threads_first: dict[str, float] = {}
        self.extra: dict[str, Any] = {}

    def first(self, n_first: int = 1) -> None:
        if self.t_first is None:
            self.t_first = time.time()
            self.n_first = n_first
            ru = resource.getrusage(resource.RUSAGE_SELF)
            self.cpu_first = ru.ru_utime + ru.ru_stime
            self.threads_first = thread_cpu()

    def finish(self, count: int) -> None:
        if self.done:
            return
        self.done = True
        t_last = time.time()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        measured = t_last - (self.t_first or t_last)
        # The events after the first delivery took `measured`; scale to all of them (a no-op
        # for the Faust contenders, whose first delivery is one event).
        rest = count - self.n_first
        cpu = ru.ru_utime + ru.ru_stime
        result = {
            "count": count,
            "n_first": self.n_first,
            "t_launch": self.spec["t_launch"],
            "t_first": self.t_first,
            "t_last": t_last,
            "measured_s": measured,
            "seconds": measured * count / rest if rest > 0 else float("nan"),
            "wall": t_last - self.spec["t_launch"],
            "cpu_s": cpu,
            # CPU of this process between the first and the last event: robust to the other
            # tenants of a shared machine (wall-clock rates are not), blind to the broker's.
            "cpu_interval_s": cpu - self.cpu_first,
            "events_per_cpu_s": rest / (cpu - self.cpu_first) if cpu > self.cpu_first else None,
            # Per thread (the Python threads by name, the others by their OS name; the
            # threads of one name summed), between the first and the last event.
            "threads_cpu_s": {
                name: round(cpu - self.threads_first.get(name, 0.0), 4)
                for name, cpu in thread_cpu().items()
                if cpu - self.threads_first.get(name, 0.0) > 0.0005
            },
            "loadavg_at_end": os.getloadavg(),
            "peak_rss_mb": peak_rss_mb(),
            **self.extra,
        }
        Path(self.spec["out"]).write_text(json.dumps(result))


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, summed per name: a
    Python thread's name (``MainThread``, the batch thread's ``decay-batch_0``, ...) where
    it has one, else the OS thread name (RocksDB's ``rocksdb:low``, onnxruntime's, ...)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            comm, fields = (task / "stat").read_text().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        tid = int(task.name)
        name = names.get(tid) or comm.split("(", 1)[1]
        cpu = (int(fields.split()[11]) + int(fields.split()[12])) / hz
        out[name] = out.get(name, 0.0) + cpu
    return out


def peak_rss_mb() -> float | None:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def child_settings(spec: dict[str, Any]) -> Any:
    """A contender's settings; ``web_port`` and ``half_life_hours`` are optional in ``spec``
    (a free port; the settings' default half-life)."""
    from decay.settings import Settings

    optional: dict[str, Any] = {}
    if "half_life_hours" in spec:
        optional["half_life_hours"] = spec["half_life_hours"]
    _, _, cache_mb = spec.get("kind", "").partition("@")
    if cache_mb:  # a contender named kind@N: RocksDB memory of N MB (stream_app.runtime.rocks)
        optional["rocksdb_cache_mb"] = int(cache_mb)
    # The caller's worker settings first (DECAY_* of the benchmark's environment, see
    # common.worker_settings_from_env); the benchmark's own topics, group and ports win.
    return Settings(
        **{
            **spec.get("settings", {}),
            "bootstrap": spec["bootstrap"],
            "app_id": spec["group"],
            "events_topic": spec["topic"],
            "alerts_topic": f"{spec['group']}-alerts",
            "dead_letter_topic": f"{spec['group']}-dlq",
            "partitions": spec["partitions"],
            "data_dir": Path(spec["data_dir"]),
            "web_port": spec.get("web_port") or free_port(),
            "log_level": spec["loglevel"],
            **optional,
        }
    )


async def run_raw(spec: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaConsumer

    probe = Probe(spec)
    consumer = AIOKafkaConsumer(
        spec["topic"],
        bootstrap_servers=spec["bootstrap"],
        group_id=spec["group"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        count = 0
        deadline = time.monotonic() + spec["timeout"]
        while count < probe.n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            got = sum(len(msgs) for msgs in batches.values())
            if got:
                probe.first(got)
                count += got
        probe.finish(count)
    finally:
        await consumer.stop()


def stop_soon() -> None:
    """SIGTERM to ourselves: the Faust worker's own graceful shutdown (flush, commit)."""
    os.kill(os.getpid(), signal.SIGTERM)


def run_faust(spec: dict[str, Any]) -> None:
    import faust

    from bench.naive import (
        build_batch_count_app,
        build_count_app,
        build_drain_count_app,
        build_naive_app,
    )

    kind = spec["kind"].partition("@")[0]
    settings = child_settings(spec)
    probe = Probe(spec)
    if kind == "faust_count":
        app = build_count_app(settings, probe, stop_soon)
    elif kind == "faust_batch_count":
        app = build_batch_count_app(settings, probe, stop_soon)
    elif kind == "faust_drain_count":
        app = build_drain_count_app(settings, probe, stop_soon)
    elif kind == "naive":
        app = build_naive_app(settings, probe, stop_soon)
    elif kind == "naive_onnx":
        from stream_app.onnx_scorer import OnnxScorer

        app = build_naive_app(settings, probe, stop_soon, OnnxScorer(MODEL))
    elif kind in SCORER:
        app = build_worker(settings, probe, SCORER[kind])
    else:
        raise SystemExit(f"unknown contender {kind}")
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        # "info" is Settings.log_level's default. At "warning" or above, faust.Worker sets the
        # root logger to DEBUG for its terminal spinner, and every aiokafka/faust debug
        # record is then built (see bench/README.md).
        faust.Worker(app, loglevel=spec["loglevel"], quiet=True).execute_from_commandline()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(spec["profile"])


def build_worker(settings: Any, probe: Probe, scorer_kind: str) -> Any:
    """decay's own app, unchanged, with two read-only hooks: the first call of the
    processor (first event in hand) and the last metric a batch records (after its state
    writes, its sends and its acks). The scorer is chosen explicitly, never by default."""
    from decay.scoring import ExponentialDecayScorer
    from decay_kafka.topics import ensure_topics
    from stream_app import stages
    from stream_app.app import create_app
    from stream_app.onnx_scorer import OnnxScorer

    asyncio.run(ensure_topics(settings))
    if scorer_kind == "onnx":
        scorer: Any = OnnxScorer(MODEL)
    elif scorer_kind == "lapse":
        from stream_app.lapse_scorer import LapseScorer

        scorer = LapseScorer(LAPSE_MODEL)
    else:
        scorer = ExponentialDecayScorer(half_life_s=settings.half_life_hours * 3600.0)
    built = create_app(settings, scorer=scorer)
    probe.extra["scorer_version"] = built.processor.scorer.version
    processor, metrics = built.processor, built.metrics
    seen = [0]
    process = processor.process

    probe.extra["process_cpu_s"] = 0.0

    def counted(records: Any) -> Any:
        probe.first()
        # CPU of the batch thread in the processor (parse, state, features, ONNX), for the
        # split of the worker's CPU per event printed after the run.
        started = time.thread_time()
        out = process(records)
        probe.extra["process_cpu_s"] += time.thread_time() - started
        seen[0] += len(records)
        if "t_tenth" not in probe.extra and seen[0] >= probe.n // 10:
            # Past the warm-up (first batches, caches): bench/latency.py's steady rate.
            probe.extra["t_tenth"], probe.extra["n_tenth"] = time.time(), seen[0]
        return out

    processor.process = counted  # type: ignore[method-assign]

    class BatchSeconds:
        """Stands in for the histogram the agent observes last in each batch."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def observe(self, value: float) -> None:
            self.inner.observe(value)
            if seen[0] >= probe.n and not probe.done:
                probe.extra["results"] = samples(built.registry, "decay_events_total")
                probe.extra["alerts_emitted"] = samples(built.registry, "decay_alerts_total")
                probe.extra["dead_letters"] = samples(built.registry, "decay_dead_letters_total")
                probe.extra["scoring_s"] = samples(built.registry, "decay_scoring_seconds_sum")
                probe.extra["batches"] = samples(built.registry, "decay_batch_seconds_count")
                probe.extra["stages"] = stages.summary(built.metrics)
                # What stream_app.runtime.intake.limit_fetch_wait set (Faust's: 1500).
                aio = built.app.consumer._thread._consumer  # type: ignore[attr-defined]
                probe.extra["fetch_max_wait_ms"] = aio._fetcher._fetch_max_wait_ms
                probe.finish(seen[0])
                asyncio.get_event_loop().call_soon(stop_soon)

    object.__setattr__(metrics, "batch_seconds", BatchSeconds(metrics.batch_seconds))
    return built.app


def samples(registry: Any, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == name:
                label = ",".join(f"{v}" for v in s.labels.values()) or "all"
                out[label] = s.value
    return out


def child_main(spec: dict[str, Any]) -> None:
    if spec["kind"] == "raw":
        asyncio.run(run_raw(spec))
    elif spec["kind"].partition("@")[0] == "quix":
        from bench.quix_peer import run_quix

        run_quix(spec, Probe(spec), child_settings(spec))
    else:
        run_faust(spec)


# ----------------------------------------------------------------------- parent side


def make_topic(args: argparse.Namespace, bootstrap: str, topic: str) -> dict[str, Any]:
    """Simulate, keep the first ``--events`` events in time order, produce them once."""
    from decay.eventlog import frame_to_records
    from decay.scoring import fit_half_life, gaps_from_events
    from decay_cli.replay import encode, produce
    from training.simulate import simulate

    t = time.monotonic()
    log = simulate(n_users=args.users, days=args.days, seed=args.seed)
    events = log.events
    if len(events) < args.events:
        raise SystemExit(
            f"the simulation gave {len(events):,} events < --events {args.events:,}: "
            "raise --users or --days"
        )
    events = events.iloc[: args.events]  # sorted by ts: a prefix in event time
    sim_s = time.monotonic() - t
    # As `decay demo` does: the baseline's half-life is fitted on the replayed log.
    half_life_h = fit_half_life(gaps_from_events(events["user_id"], events["ts"])) / 3600.0
    messages = [encode(r) for r in frame_to_records(events)]
    asyncio.run(create_topic(bootstrap, topic, args.partitions))
    t = time.monotonic()
    sent = asyncio.run(produce(messages, bootstrap, topic))
    produce_s = time.monotonic() - t
    span_h = (int(events["ts"].iloc[-1]) - int(events["ts"].iloc[0])) / 3.6e6
    info = {
        "topic": topic,
        "partitions": args.partitions,
        "events": sent,
        "simulated_users": args.users,
        "simulated_days": args.days,
        "seed": args.seed,
        "distinct_users": int(events["user_id"].nunique()),
        "event_time_span_h": round(span_h, 1),
        "mean_bytes": round(sum(len(v) for _, v in messages) / len(messages), 1),
        "half_life_hours": round(half_life_h, 3),
        "simulate_s": round(sim_s, 1),
        "produce_s": round(produce_s, 1),
        "produce_events_per_s": round(sent / produce_s),
    }
    print(
        f"topic {topic}: {sent:,} events of {info['distinct_users']:,} users over "
        f"{span_h:.1f} h of event time, {info['mean_bytes']} B each; produced in "
        f"{produce_s:.1f} s; fitted half-life {half_life_h:.1f} h",
        flush=True,
    )
    return info


def run_child(
    kind: str,
    label: str,
    args: argparse.Namespace,
    common: dict[str, Any],
    run_dir: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    group = f"{common['run']}-{label.replace('@', '-cache')}"  # topic names take no '@'
    out = run_dir / f"{label}.json"
    spec = {
        **common,
        "kind": kind,
        "group": group,
        "out": str(out),
        "data_dir": str(run_dir / label),
        "timeout": args.timeout,
        "loglevel": args.faust_loglevel,
        "profile": str(profile) if profile else None,
        "t_launch": time.time(),
    }
    log_path = run_dir / f"{label}.log"
    proc = launch_child(__file__, spec, log_path)
    wait_child(proc, out, args.timeout)
    if not out.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        return {
            "kind": kind,
            "label": label,
            "error": f"no result (exit {proc.returncode})",
            "log": str(log_path),
            "log_tail": tail,
        }
    result = json.loads(out.read_text())
    result.update(kind=kind, label=label, exit_code=proc.returncode, log=str(log_path))
    result["shutdown_s"] = round(time.time() - result["t_last"], 1)
    if kind.startswith(("worker", "quix")):
        result["alerts_in_topic"] = asyncio.run(
            count_messages(common["bootstrap"], f"{group}-alerts")
        )
    if result["count"] < common["n"]:
        result["error"] = f"only {result['count']} of {common['n']} events before the timeout"
    return result


def summarize(results: list[dict[str, Any]], kinds: list[str], n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        ok = [r for r in results if r["kind"] == kind and "error" not in r]
        if not ok:
            rows.append({"kind": kind, "runs": 0})
            continue
        secs = statistics.median(r["seconds"] for r in ok)
        rows.append(
            {
                "kind": kind,
                "runs": len(ok),
                "events": n,
                "seconds": secs,
                "events_per_s": n / secs,
                "wall": statistics.median(r["wall"] for r in ok),
                "cpu_s": statistics.median(r["cpu_s"] for r in ok),
                "events_per_cpu_s": statistics.median(r["events_per_cpu_s"] or 0 for r in ok),
                "cpu_us_per_event": statistics.median(cpu_us_per_event(r) for r in ok),
                "events_per_s_runs": [round(n / r["seconds"]) for r in ok],
            }
        )

    def rate(kind: str) -> float | None:
        row = next((r for r in rows if r["kind"] == kind and r.get("runs")), None)
        return float(row["events_per_s"]) if row else None

    base = rate("faust_count")
    for row in rows:
        if base and row.get("runs"):
            row["ratio_to_faust_count"] = row["events_per_s"] / base
        # The worker against the naive design with the same scorer.
        base_kind = row["kind"].partition("@")[0]
        naive = rate({"worker": "naive_onnx", "worker_baseline": "naive"}.get(base_kind, ""))
        if naive and row.get("runs"):
            row["ratio_to_naive"] = row["events_per_s"] / naive
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| contender | events | seconds | events/s | ratio to (b) | ratio to naive, same scorer "
        "| wall incl. startup (s) | child CPU incl. startup (s) | events per CPU-second "
        "| CPU us/event | runs (events/s each) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        base_kind, _, cache_mb = row["kind"].partition("@")
        label = LABELS[base_kind] + (f", RocksDB {cache_mb} MB" if cache_mb else "")
        if not row.get("runs"):
            lines.append(f"| {label} | - | failed | - | - | - | - | - | - | - | - |")
            continue
        ratio = row.get("ratio_to_faust_count")
        vs_naive = row.get("ratio_to_naive")
        lines.append(
            f"| {label} | {row['events']:,} | {row['seconds']:.1f} | {row['events_per_s']:,.0f} "
            f"| {f'{ratio:.2f}' if ratio is not None else '-'} "
            f"| {f'{vs_naive:.2f}' if vs_naive is not None else '-'} | {row['wall']:.1f} "
            f"| {row['cpu_s']:.1f} | {row['events_per_cpu_s']:,.0f} "
            f"| {row['cpu_us_per_event']:.0f} "
            f"| {', '.join(f'{x:,}' for x in row['events_per_s_runs'])} |"
        )
    return "\n".join(lines)


def by_thread(r: dict[str, Any], per_event: float) -> str:
    """A run's CPU per event of each thread (the busiest first), in us."""
    threads = sorted(r.get("threads_cpu_s", {}).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {cpu * per_event:.1f}" for name, cpu in threads[:6])


def cpu_us_per_event(r: dict[str, Any]) -> float:
    """CPU of the child (all threads) between its first and last event, per event after
    the first delivery."""
    return float(r["cpu_interval_s"] * 1e6 / max(r["count"] - r["n_first"], 1))


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Each worker's events/s and CPU per event against each other contender's, from the
    medians of the same run."""
    ran = {r["kind"]: r for r in rows if r.get("runs")}
    lines = []
    for mine in (k for k in ran if k.startswith("worker")):
        for other in (k for k in ran if not k.startswith("worker")):
            a, b = ran[mine], ran[other]
            lines.append(
                f"{mine} / {other}: events/s {a['events_per_s'] / b['events_per_s']:.2f}, "
                f"CPU per event {a['cpu_us_per_event'] / b['cpu_us_per_event']:.2f} "
                f"({a['cpu_us_per_event']:.0f} vs {b['cpu_us_per_event']:.0f} us)"
            )
    return lines


def print_profile(path: Path, top: int) -> str:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="simulated users")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days")
    parser.add_argument("--events", type=int, default=60_000, help="events in the topic")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (median)")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"subset of {','.join(CONTENDERS)}; a Faust contender as kind@N runs with a RocksDB "
        "memory budget of N MB (default: the settings')",
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="per run, seconds (default: 120 + events/250)"
    )
    add_json_option(parser, "throughput")
    parser.add_argument(
        "--profile",
        choices=CONTENDERS,
        help="after the timed runs, one more "
        "run of this contender under cProfile (not in the table)",
    )
    parser.add_argument(
        "--profile-events", type=int, default=0, help="events for the profiled run (default: all)"
    )
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument(
        "--faust-loglevel",
        default="info",
        help="log level of the Faust contenders (Settings.log_level default)",
    )
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    add_broker_options(parser, BENCH_PORT, BENCH_CONTROLLER_PORT, BROKER_DIR)
    args = parser.parse_args()
    kinds = [k.strip() for k in args.contenders.split(",") if k.strip()]
    unknown = {k.partition("@")[0] for k in kinds} - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}")
    if "worker" in kinds and not MODEL.exists():
        print(f"no {MODEL}: skipping worker", flush=True)
        kinds.remove("worker")
    args.timeout = args.timeout or 120.0 + args.events / 250.0
    args.repeat = max(1, min(args.repeat, 20))

    given = worker_settings_from_env()  # DECAY_* of the caller: every contender's settings
    if given:
        print(f"settings from the environment: {given}", flush=True)
    run = time.strftime("bench-%Y%m%d-%H%M%S", time.gmtime())
    run_dir = new_run_dir(run)
    meta = machine_note()
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    broker = start_broker(args.broker_dir, args.port, args.controller_port)
    try:
        topic_info = make_topic(args, broker.bootstrap, f"{run}-events")
        common = {
            "run": run,
            "bootstrap": broker.bootstrap,
            "topic": topic_info["topic"],
            "partitions": args.partitions,
            "n": topic_info["events"],
            "half_life_hours": topic_info["half_life_hours"],
            "settings": given,
        }
        for rep in range(args.repeat):
            for kind in kinds:
                label = f"{kind}-{rep}"
                r = run_child(kind, label, args, common, run_dir)
                results.append(r)
                if "error" in r:
                    print(f"  {label}: FAILED: {r['error']} (log {r['log']})", flush=True)
                    print(r.get("log_tail", ""), flush=True)
                else:
                    extra = ""
                    if kind.startswith("quix"):
                        extra = (
                            f", alerts in topic {r['alerts_in_topic']:,}; CPU per event "
                            f"between first and last: {cpu_us_per_event(r):.0f} us"
                        )
                    elif kind.startswith("worker"):
                        per_event = 1e6 / r["count"]
                        extra = (
                            f", alerts in topic {r['alerts_in_topic']:,}, "
                            f"results {r.get('results')}; CPU per event between first and "
                            f"last: {r['cpu_interval_s'] * per_event:.1f} us, of which the "
                            f"processor {r['process_cpu_s'] * per_event:.1f} us; by thread: "
                            f"{by_thread(r, per_event)}"
                        )
                    elif kind.startswith("faust_"):
                        # Per event after the first delivery (1 event for faust_count).
                        rest = max(r["count"] - r["n_first"], 1)
                        extra = (
                            f"; first delivery {r['n_first']:,} events; CPU per event between "
                            f"first and last: {r['cpu_interval_s'] * 1e6 / rest:.0f} us"
                        )
                    print(
                        f"  {label}: {r['count']:,} events in {r['seconds']:.1f} s = "
                        f"{r['count'] / max(r['seconds'], 1e-9):,.0f}/s (wall {r['wall']:.1f} s, "
                        f"CPU {r['cpu_s']:.1f} s){extra}",
                        flush=True,
                    )
        rows = summarize(results, kinds, common["n"])
        text = table(rows)
        print()
        print(
            f"{meta['date_utc']}, {meta['cpus']} CPUs ({meta['cpu_model']}), "
            f"load at start {', '.join(f'{x:.2f}' for x in meta['loadavg_at_start'])}"
        )
        print(text, flush=True)
        for line in ratios(rows):
            print(line, flush=True)
        profile_text = None
        if args.profile:
            prof = run_dir / f"{args.profile}.prof"
            pargs = argparse.Namespace(**vars(args))
            pcommon = dict(common)
            if args.profile_events:
                pcommon["n"] = min(args.profile_events, common["n"])
            print(
                f"\nprofiling {args.profile} on {pcommon['n']:,} events (cProfile) ...", flush=True
            )
            r = run_child(args.profile, f"profile-{args.profile}", pargs, pcommon, run_dir, prof)
            if prof.exists():
                profile_text = print_profile(prof, args.profile_top)
                print(profile_text)
                print(
                    f"(profile: {prof}; run under cProfile: "
                    f"{r.get('count', 0) / max(r.get('seconds', 1e-9), 1e-9):,.0f} events/s)"
                )
            else:
                print(f"profile run failed: {r.get('error')} (log {r.get('log')})")
        write_figures(
            figures_path(args.json, "throughput"),
            {
                "meta": {
                    **meta,
                    "command": " ".join(sys.argv),
                    "total_s": round(time.monotonic() - started, 1),
                },
                "topic": topic_info,
                "summary": rows,
                "runs": [{k: v for k, v in r.items() if k != "log_tail"} for r in results],
                "table_markdown": text,
                "ratios": ratios(rows),
                "profile": profile_text,
            },
        )
        return 0 if all("error" not in r for r in results) else 1
    finally:
        try:
            for prefix in (run, f"changelog__{run}"):  # Quix's changelogs: changelog__<group>
                asyncio.run(delete_topics(broker.bootstrap, prefix))
        except Exception as exc:  # the broker may be down already
            print(f"could not delete the run's topics: {exc!r}")
        if not args.keep_broker:
            broker.stop()
        shutil.rmtree(run_dir / "state", ignore_errors=True)
        for d in run_dir.iterdir():
            if d.is_dir():  # Faust/RocksDB data of each run; logs and results stay
                shutil.rmtree(d, ignore_errors=True)
        print(f"total {time.monotonic() - started:.0f} s; logs in {run_dir}", flush=True)


if __name__ == "__main__":
    if is_child_call(sys.argv):
        child_main(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
