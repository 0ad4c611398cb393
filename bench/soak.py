"""Soak: one worker for 30 minutes at a steady offered load; RSS, state size and lag per minute.

    .venv/bin/python bench/soak.py --minutes 30 --rate 400 --users 50000
    # a fixed population (its first 96,000 events offered again and again):
    .venv/bin/python bench/soak.py --minutes 30 --rate 400 --users 5000 --cycle-events 96000

On a private broker (``KafkaBroker`` on 127.0.0.1:19492, controller 19493, data in
/tmp/soak-kafka; worker data and logs in var/bench/runs/<run>/), ONE worker
(``stream_app.app.create_app`` with the ONNX LSTM scorer, in a child process, default
settings, built by bench/throughput.py's ``build_worker``/``child_settings``) consumes a
fresh events topic while a producer thread offers simulator traffic (``training.simulate``,
events in event-time order, keyed by user id, ``decay_cli.replay.produce`` with ``rate``) at
``--rate`` events/s for ``--minutes`` minutes. The worker starts first; the producer starts
once its partitions are assigned.

Every minute one line: events produced (end offsets of the topic), events processed (the
worker's ``decay_events_total``), consumer lag (topic end offsets minus the group's committed
offsets, and the worker's own ``decay_consumer_lag``), the worker's RSS (VmRSS), its state on
disk (bytes under its data dir; the RocksDB table dirs), users tracked, alerts emitted.
After the load the worker is given ``--drain-timeout`` seconds to catch up, then the summary:
RSS and state size of the first vs the last 10 minutes (means and least-squares slopes per
10 minutes), max lag, and whether the worker kept up. Every sample and the summary go to
var/bench/soak-<time>.json (or ``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the child runs this file as a script
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    MODEL,
    add_json_option,
    create_topic,
    delete_topics,
    figures_path,
    free_port,
    is_child_call,
    launch_child,
    machine_note,
    new_run_dir,
    start_broker,
    write_figures,
)
from bench.throughput import (  # noqa: E402
    Probe,
    build_worker,
    child_settings,
)

# This bench's own broker and directories: other benches and tests run on the same machine.
SOAK_PORT = 19492
SOAK_CONTROLLER_PORT = 19493
BROKER_DIR = Path("/tmp/soak-kafka")
# The results of decay_events_total that are events of the events topic (not erasures, TTL).
EVENT_RESULTS = ("ok", "late", "duplicate", "invalid", "redelivered")
NEVER = 10**15  # Probe's event count: the worker never stops itself, the parent stops it

# ------------------------------------------------------------------------ child side


def child_main(spec: dict[str, Any]) -> None:
    """The worker: create_app with the ONNX scorer, default settings, a known web port, and
    a "ready" file written once its assignment and table recovery are done."""
    import faust

    update: dict[str, Any] = {"web_port": spec["web_port"]}
    if spec.get("rocksdb_cache_mb"):
        update["rocksdb_cache_mb"] = spec["rocksdb_cache_mb"]
    settings = child_settings(spec).model_copy(update=update)
    app = build_worker(settings, Probe(spec), "onnx")
    ready = Path(spec["ready"])

    async def on_ready(sender: Any, **kwargs: Any) -> None:
        ready.write_text(str(time.time()))

    app.on_rebalance_complete.connect(on_ready)
    if spec.get("tracemalloc"):
        trace_python_memory(app, Path(spec["tracemalloc"]))
    faust.Worker(app, loglevel=spec["loglevel"], quiet=True).execute_from_commandline()


def trace_python_memory(app: Any, out: Path, every_s: float = 60.0) -> None:
    """--tracemalloc: every minute, the Python allocations that grew most since the first
    snapshot (by line), appended to ``out``. Memory malloc'd by C libraries (RocksDB, ONNX
    Runtime, numpy buffers are traced) is not in it: a flat total here with a growing RSS
    points there."""
    import tracemalloc

    tracemalloc.start(1)
    first: list[Any] = []

    @app.timer(interval=every_s)
    async def snapshot() -> None:
        snap = tracemalloc.take_snapshot()
        if not first:
            first.append(snap)
            return
        traced = tracemalloc.get_traced_memory()[0]
        top = snap.compare_to(first[0], "lineno")[:12]
        with out.open("a") as f:
            f.write(f"--- {time.strftime('%H:%M:%S')} traced {traced / 2**20:.1f} MB\n")
            f.writelines(f"{stat}\n" for stat in top)


# ------------------------------------------------------------------- what we measure


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process, in MiB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


def cpu_s(pid: int) -> float | None:
    """user+sys CPU seconds of a process so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def file_kind(name: str) -> str:
    """RocksDB file kinds: sst, wal (NNNNNN.log), info_log (LOG, LOG.old.*), other."""
    if name.endswith(".sst"):
        return "sst"
    if name.endswith(".log") and name[:-4].isdigit():
        return "wal"
    if name == "LOG" or name.startswith("LOG.old"):
        return "info_log"
    return "other"


def disk_usage(root: Path) -> dict[str, int]:
    """Bytes (apparent sizes) under ``root``: total, in RocksDB dirs (``*.db``), by file kind.
    Files vanishing under the walk (compactions) are skipped."""
    out = {"total": 0, "tables": 0, "sst": 0, "wal": 0, "info_log": 0, "other": 0}
    for dirpath, _dirs, files in os.walk(root):
        in_table = any(part.endswith(".db") for part in Path(dirpath).parts)
        for name in files:
            try:
                size = os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            out["total"] += size
            if in_table:
                out["tables"] += size
                out[file_kind(name)] += size
    return out


def live_state(root: Path) -> dict[str, Any]:
    """Keys and bytes (key + value) really held in the RocksDB tables under ``root``, read
    once the worker has stopped (read-only; the WAL is replayed), against their disk size."""
    from rocksdict import AccessType, Options, Rdict

    keys = nbytes = 0
    for db in sorted(p for p in root.rglob("*.db") if p.is_dir()):
        table = Rdict(str(db), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in table.items():
                keys += 1
                assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
                nbytes += len(key) + len(value)
        finally:
            table.close()
    disk = disk_usage(root)
    return {"keys": keys, "live_bytes": nbytes, "tables_disk_bytes": disk["tables"], **disk}


def scrape(port: int, timeout: float = 15.0) -> dict[str, dict[str, float]]:
    """The worker's /metrics: sample name -> {labels as "k=v,..." or "": value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out.setdefault(s.name, {})[label] = float(s.value)
    return out


def metric_sum(metrics: dict[str, dict[str, float]], name: str, only: tuple[str, ...] = ()) -> int:
    """Sum of a metric's samples; with ``only``, of those whose single label value is in it."""
    values = metrics.get(name, {})
    return int(sum(v for k, v in values.items() if not only or k.split("=", 1)[-1] in only))


class KafkaView:
    """End offsets of topics and committed offsets of the worker's group, over aiokafka."""

    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)

    async def start(self) -> None:
        await self.consumer.start()
        await self.admin.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        from aiokafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        offsets = await self.admin.list_consumer_group_offsets(group)
        return {
            tp.partition: int(om.offset)
            for tp, om in offsets.items()
            if tp.topic == topic and om.offset >= 0
        }


async def kafka_sample(view: KafkaView, spec: dict[str, Any]) -> dict[str, Any]:
    """Produced (sum of end offsets), committed lag (sum over partitions), changelog size."""
    n = spec["partitions"]
    ends = await view.end_offsets(spec["topic"], n)
    committed = await view.committed(spec["group"], spec["topic"])
    lag = {p: max(end - committed.get(p, 0), 0) for p, end in ends.items()}
    try:  # Faust creates it at startup; not worth failing a sample for
        changelog: int | None = sum(
            (
                await asyncio.wait_for(
                    view.end_offsets(f"{spec['group']}-user-state-changelog", n), 15.0
                )
            ).values()
        )
    except Exception:
        changelog = None
    return {
        "produced": sum(ends.values()),
        "lag": sum(lag.values()),
        "lag_by_partition": [lag[p] for p in sorted(lag)],
        "changelog_records": changelog,
    }


def worker_sample(pid: int, spec: dict[str, Any]) -> dict[str, Any]:
    """The worker's side: its metrics, RSS, CPU and data dir (blocking; run in a thread)."""
    m = scrape(spec["web_port"])
    usage = disk_usage(Path(spec["data_dir"]))
    return {
        "processed": metric_sum(m, "decay_events_total", EVENT_RESULTS),
        "events_by_result": m.get("decay_events_total", {}),
        "worker_lag": metric_sum(m, "decay_consumer_lag"),
        "users": metric_sum(m, "decay_users_tracked"),
        "alerts": metric_sum(m, "decay_alerts_total"),
        "pending_deadlines": metric_sum(m, "decay_pending_deadlines"),
        "batches": metric_sum(m, "decay_batch_seconds_count"),
        "scoring_s": round(sum(m.get("decay_scoring_seconds_sum", {}).values()), 2),
        "rss_mb": rss_mb(pid),
        "cpu_s": cpu_s(pid),
        "state_bytes": usage["total"],
        "tables_bytes": usage["tables"],
        "tables_by_kind": {k: usage[k] for k in ("sst", "wal", "info_log", "other")},
        "loadavg": list(os.getloadavg()),
    }


async def take_sample(
    view: KafkaView, pid: int, spec: dict[str, Any], t0: float, producer: Producer
) -> dict[str, Any]:
    t = time.monotonic()
    kafka = await kafka_sample(view, spec)
    worker = await asyncio.to_thread(worker_sample, pid, spec)
    return {
        "minute": round((t - t0) / 60.0, 2),
        "handed_to_producer": producer.sent,
        **kafka,
        **worker,
    }


# ---------------------------------------------------------------------- the producer


class Producer:
    """A thread producing the events at ``rate`` per second (``decay_cli.replay.produce``) for
    at most ``seconds``; ``sent`` counts the messages handed to it."""

    def __init__(
        self, frame: Any, bootstrap: str, topic: str, rate: float, seconds: float, cycle: bool
    ):
        self.frame = frame
        self.cycle = cycle
        self.bootstrap = bootstrap
        self.topic = topic
        self.rate = rate
        self.seconds = seconds
        self.sent = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-producer", daemon=True)

    def messages(self, chunk: int = 5000) -> Iterator[tuple[bytes, bytes]]:
        from decay.eventlog import frame_to_records
        from decay_cli.replay import encode

        deadline = time.monotonic() + self.seconds
        ts = self.frame["ts"]
        span_ms = int(ts.iloc[-1]) - int(ts.iloc[0]) + 3_600_000
        for turn in range(10_000 if self.cycle else 1):  # bounded by the deadline anyway
            for start in range(0, len(self.frame), chunk):
                for record in frame_to_records(self.frame.iloc[start : start + chunk]):
                    if self.stop.is_set() or time.monotonic() >= deadline:
                        return
                    if turn:  # the same users again, later, with new event ids
                        record["ts"] = int(record["ts"]) + turn * span_ms
                        record["event_id"] = f"{record['event_id']}~{turn}"
                    self.sent += 1
                    yield encode(record)

    def _run(self) -> None:
        from decay_cli.replay import produce

        try:
            asyncio.run(produce(self.messages(), self.bootstrap, self.topic, rate=self.rate))
        except BaseException as exc:  # reported by the monitor
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def finish(self, timeout: float) -> None:
        self.stop.set()
        self.thread.join(timeout)


# ----------------------------------------------------------------------- parent side


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def simulate_events(users: int, days: float, seed: int, n: int) -> tuple[Any, dict[str, Any]]:
    """The first n events of the simulation, in event-time order, and what they hold."""
    from training.simulate import simulate

    t = time.monotonic()
    events = simulate(n_users=users, days=days, seed=seed).events
    if len(events) < n:
        raise SystemExit(
            f"the simulation gave {len(events):,} events < {n:,} (rate x minutes): "
            "raise --users or --days"
        )
    head = events.iloc[:n].reset_index(drop=True)
    span_h = (int(head["ts"].iloc[-1]) - int(head["ts"].iloc[0])) / 3.6e6
    info = {
        "simulated_users": users,
        "simulated_days": days,
        "seed": seed,
        "simulated_events": len(events),
        "events": n,
        "distinct_users": int(head["user_id"].nunique()),
        "event_time_span_h": round(span_h, 1),
        "simulate_s": round(time.monotonic() - t, 1),
    }
    return head, info


def launch_worker(spec: dict[str, Any], log_path: Path) -> subprocess.Popen[bytes]:
    """The worker child in its own session: a Ctrl-C in the terminal reaches only the
    parent, which then stops the worker gracefully."""
    return launch_child(__file__, spec, log_path, new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], ready: Path, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not ready.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"worker not ready (exit {proc.returncode}); log {log_path}:\n{tail}")


def stop_worker(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (Faust's graceful stop), up to 60 s, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode


HEADER = (
    f"{'min':>5} {'produced':>9} {'processed':>9} {'lag':>7} {'lag(w)':>7} {'RSS MB':>7} "
    f"{'state MB':>8} {'tables MB':>9} {'users':>7} {'alerts':>7} {'cpu%':>5} {'load1':>5}"
)


def line(s: dict[str, Any], label: str | None = None) -> str:
    cpu = s.get("cpu_pct")
    return (
        f"{label or format(s['minute'], '.1f'):>5} {s['produced']:>9,} {s['processed']:>9,} "
        f"{s['lag']:>7,} {s['worker_lag']:>7,} {s['rss_mb'] or 0:>7.1f} "
        f"{s['state_bytes'] / 2**20:>8.1f} {s['tables_bytes'] / 2**20:>9.1f} {s['users']:>7,} "
        f"{s['alerts']:>7,} {'-' if cpu is None else format(cpu, '.0f'):>5} "
        f"{s['loadavg'][0]:>5.2f}"
    )


def add_cpu_pct(sample: dict[str, Any], previous: dict[str, Any] | None, t_prev: float) -> None:
    """Worker CPU since the previous sample, in % of one core."""
    if previous is None or sample["cpu_s"] is None or previous["cpu_s"] is None:
        sample["cpu_pct"] = None
        return
    wall = (sample["minute"] - t_prev) * 60.0
    sample["cpu_pct"] = 100.0 * (sample["cpu_s"] - previous["cpu_s"]) / wall if wall > 0 else None


def check_alive(proc: subprocess.Popen[bytes], producer: Producer, log_path: Path) -> None:
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"the worker exited ({proc.returncode}); log {log_path}:\n{tail}")
    if producer.error is not None:
        raise SystemExit(f"the producer failed: {producer.error!r}")


async def monitor(
    args: argparse.Namespace,
    spec: dict[str, Any],
    proc: subprocess.Popen[bytes],
    producer: Producer,
    log_path: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Start the producer, sample every minute of the load, then every 5 s of the drain
    until the committed lag is 0 (bounded by --drain-timeout)."""
    view = KafkaView(spec["bootstrap"])
    await view.start()
    try:
        base = await take_sample(view, proc.pid, spec, time.monotonic(), producer)
        base["cpu_pct"] = None
        t0 = time.monotonic()
        producer.start()
        print(HEADER, flush=True)
        samples: list[dict[str, Any]] = []
        previous, t_prev = base, 0.0
        for k in range(1, args.minutes + 1):
            while time.monotonic() < t0 + 60.0 * k:  # bounded: one minute
                check_alive(proc, producer, log_path)
                await asyncio.sleep(min(1.0, max(t0 + 60.0 * k - time.monotonic(), 0.01)))
            s = await take_sample(view, proc.pid, spec, t0, producer)
            add_cpu_pct(s, previous, t_prev)
            samples.append(s)
            previous, t_prev = s, s["minute"]
            print(line(s), flush=True)
        await asyncio.to_thread(producer.finish, 60.0)
        if producer.error is not None:
            raise SystemExit(f"the producer failed: {producer.error!r}")
        drain: list[dict[str, Any]] = []
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:  # bounded by --drain-timeout
            check_alive(proc, producer, log_path)
            s = await take_sample(view, proc.pid, spec, t0, producer)
            add_cpu_pct(s, previous, t_prev)
            previous, t_prev = s, s["minute"]
            drain.append(s)
            if s["lag"] == 0 and s["processed"] >= s["produced"]:
                break
            await asyncio.sleep(5.0)
        if drain:
            print(line(drain[-1], "end"), flush=True)
        return samples, drain
    finally:
        await view.stop()


def slope_per_10min(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (minutes), per 10 minutes."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 10.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def window_stats(samples: list[dict[str, Any]], key: str, scale: float) -> dict[str, Any]:
    """Mean and slope of ``key`` over the first and the last window of samples (10 minutes,
    or half the run when shorter), and over the whole run."""
    w = max(1, min(10, len(samples) // 2))

    def stats(part: list[dict[str, Any]]) -> dict[str, Any]:
        xs = [s["minute"] for s in part]
        ys = [(s[key] or 0) / scale for s in part]
        slope = slope_per_10min(xs, ys)
        return {
            "minutes": [xs[0], xs[-1]],
            "mean": sum(ys) / len(ys),
            "slope_per_10min": slope,
        }

    return {
        "window_minutes": w,
        "first": stats(samples[:w]),
        "last": stats(samples[-w:]),
        "all": stats(samples),
        "max": max((s[key] or 0) / scale for s in samples),
    }


def summarize(
    args: argparse.Namespace, samples: list[dict[str, Any]], drain: list[dict[str, Any]]
) -> dict[str, Any]:
    final = drain[-1] if drain else samples[-1]
    worst = max(samples, key=lambda s: s["lag"])
    w = max(1, min(10, len(samples) // 2))
    last = samples[-w:]
    lag_slope = slope_per_10min([s["minute"] for s in last], [float(s["lag"]) for s in last])
    bound = args.rate * args.keep_up_s
    drained = final["lag"] == 0 and final["processed"] >= final["produced"]
    end_of_load = samples[-1]
    return {
        "rss_mb": window_stats(samples, "rss_mb", 1.0),
        "state_mb": window_stats(samples, "state_bytes", 2**20),
        "tables_mb": window_stats(samples, "tables_bytes", 2**20),
        "max_lag": worst["lag"],
        "max_lag_minute": worst["minute"],
        "max_worker_lag": max(s["worker_lag"] for s in samples),
        "lag_slope_last_window_per_10min": lag_slope,
        "lag_at_end_of_load": end_of_load["lag"],
        "produced": final["produced"],
        "processed": final["processed"],
        "achieved_rate": end_of_load["produced"] / (end_of_load["minute"] * 60.0),
        "drained": drained,
        "drain_s": round((final["minute"] - end_of_load["minute"]) * 60.0, 1),
        "keep_up_bound_events": bound,
        "kept_up": drained and worst["lag"] <= bound,
        "users": final["users"],
        "alerts": final["alerts"],
        "worker_cpu_s_load": (end_of_load["cpu_s"] or 0) - (samples[0]["cpu_s"] or 0),
    }


def fmt(x: float | None, spec: str = "+.1f") -> str:
    return "-" if x is None else format(x, spec)


def print_summary(summary: dict[str, Any], args: argparse.Namespace) -> None:
    for key, label in (("rss_mb", "RSS (MB)"), ("state_mb", "state (MB)")):
        st = summary[key]
        f, la = st["first"], st["last"]
        print(
            f"{label:<11} first {st['window_minutes']} min: mean {f['mean']:.1f}, slope "
            f"{fmt(f['slope_per_10min'])}/10 min | last {st['window_minutes']} min: mean "
            f"{la['mean']:.1f}, slope {fmt(la['slope_per_10min'])}/10 min | whole run: slope "
            f"{fmt(st['all']['slope_per_10min'])}/10 min, max {st['max']:.1f}"
        )
    print(
        f"lag         max {summary['max_lag']:,} events (committed offsets) at minute "
        f"{summary['max_lag_minute']:.0f}, max {summary['max_worker_lag']:,} (worker metric); "
        f"at the end of the load {summary['lag_at_end_of_load']:,}; slope over the last window "
        f"{fmt(summary['lag_slope_last_window_per_10min'], '+,.0f')}/10 min"
    )
    print(
        f"load        offered {args.rate:,.0f}/s, achieved {summary['achieved_rate']:,.1f}/s; "
        f"{summary['produced']:,} produced, {summary['processed']:,} processed; "
        f"{summary['users']:,} users, {summary['alerts']:,} alerts"
    )
    live = summary.get("live_state_after_stop", {})
    if "keys" in live:
        print(
            f"tables      after the stop: {live['keys']:,} keys, "
            f"{live['live_bytes'] / 2**20:.1f} MB of keys+values; "
            f"{live['tables_disk_bytes'] / 2**20:.1f} MB on disk (sst "
            f"{live['sst'] / 2**20:.1f}, wal {live['wal'] / 2**20:.1f})"
        )
    verdict = "YES" if summary["kept_up"] else "NO"
    print(
        f"kept up     {verdict}: lag never above {summary['keep_up_bound_events']:,.0f} "
        f"(= {args.keep_up_s:.0f} s of offered load): "
        f"{'yes' if summary['max_lag'] <= summary['keep_up_bound_events'] else 'no'}; "
        f"drained after the load: {'yes' if summary['drained'] else 'no'} "
        f"({summary['drain_s']:.0f} s)",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30, help="minutes of offered load")
    parser.add_argument("--rate", type=float, default=400.0, help="offered events per second")
    parser.add_argument("--users", type=int, default=50_000, help="simulated users")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--cycle-events",
        type=int,
        default=0,
        help="offer the first N events over and over (shifted in time, new event ids): a "
        "fixed population, whose state must stop growing once its windows are full "
        "(default 0: the simulation's first rate x minutes events, new users all along)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=300.0, help="seconds to catch up after the load"
    )
    parser.add_argument(
        "--keep-up-s",
        type=float,
        default=30.0,
        help="kept up: lag never above this many seconds of offered load, and drained after",
    )
    add_json_option(parser, "soak")
    parser.add_argument("--faust-loglevel", default="info")
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=0,
        help="the worker's RocksDB memory for all partitions (default: the settings' default)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the worker's Python allocations: top growth each minute in "
        "<run dir>/tracemalloc.txt (slows the worker)",
    )
    args = parser.parse_args()
    if not 1 <= args.minutes <= 24 * 60 or not 0 < args.rate <= 100_000:
        parser.error("need 1 <= --minutes <= 1440 and 0 < --rate <= 100000")
    if args.drain_timeout < 0 or args.keep_up_s <= 0:
        parser.error("need --drain-timeout >= 0 and --keep-up-s > 0")
    return args


def run(args: argparse.Namespace, run_id: str, run_dir: Path, bootstrap: str) -> dict[str, Any]:
    """Everything between the broker's start and its stop; returns the JSON document."""
    from decay.settings import Settings

    n = args.cycle_events or math.ceil(args.rate * args.minutes * 60)
    frame, topic_info = simulate_events(args.users, args.days, args.seed, n)
    print(
        f"simulated {topic_info['simulated_events']:,} events in {topic_info['simulate_s']} s; "
        f"offering the first {n:,} ({topic_info['distinct_users']:,} users, "
        f"{topic_info['event_time_span_h']} h of event time)"
        f"{', again and again (later, new ids)' if args.cycle_events else ''} "
        f"at {args.rate:,.0f}/s for {args.minutes} min",
        flush=True,
    )
    topic = f"{run_id}-events"
    asyncio.run(create_topic(bootstrap, topic, args.partitions))
    spec = {
        "run": run_id,
        "bootstrap": bootstrap,
        "topic": topic,
        "partitions": args.partitions,
        "group": f"{run_id}-worker",
        "n": NEVER,
        "out": str(run_dir / "worker.json"),
        "ready": str(run_dir / "worker.ready"),
        "data_dir": str(run_dir / "worker"),
        "web_port": free_port(),
        "half_life_hours": Settings.model_fields["half_life_hours"].default,
        "loglevel": args.faust_loglevel,
        "tracemalloc": str(run_dir / "tracemalloc.txt") if args.tracemalloc else None,
        "rocksdb_cache_mb": args.cache_mb,
        "t_launch": time.time(),
    }
    log_path = run_dir / "worker.log"
    proc = launch_worker(spec, log_path)
    producer = Producer(
        frame, bootstrap, topic, args.rate, args.minutes * 60.0, cycle=bool(args.cycle_events)
    )
    try:
        wait_ready(proc, Path(spec["ready"]), log_path, 180.0)
        time.sleep(2.0)  # let the fetchers settle after the assignment
        print(
            f"worker pid {proc.pid} ready (web port {spec['web_port']}, data {spec['data_dir']})",
            flush=True,
        )
        samples, drain = asyncio.run(monitor(args, spec, proc, producer, log_path))
    finally:
        producer.finish(30.0)
        code = stop_worker(proc)
    summary = summarize(args, samples, drain)
    try:
        summary["live_state_after_stop"] = live_state(Path(spec["data_dir"]))
    except Exception as exc:  # a measurement, not the bench's purpose
        summary["live_state_after_stop"] = {"error": repr(exc)}
    print()
    print_summary(summary, args)
    return {
        "topic": {**topic_info, "topic": topic, "partitions": args.partitions},
        "worker": {
            "pid": proc.pid,
            "exit_code": code,
            "log": str(log_path),
            "web_port": spec["web_port"],
        },
        "summary": summary,
        "samples": samples,
        "drain": drain,
    }


def main() -> int:
    args = parse_args()
    if not MODEL.exists():
        raise SystemExit(f"no {MODEL}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    run_id = time.strftime("soak-%Y%m%d-%H%M%S", time.gmtime())
    run_dir = new_run_dir(run_id)
    meta = {**machine_note(), "command": " ".join(sys.argv), "uptime_start": uptime()}
    print(f"{meta['date_utc']}, {meta['cpus']} CPUs ({meta['cpu_model']})", flush=True)
    print(f"uptime at start: {meta['uptime_start']}", flush=True)
    started = time.monotonic()
    broker = start_broker(BROKER_DIR, SOAK_PORT, SOAK_CONTROLLER_PORT)
    try:
        doc = run(args, run_id, run_dir, broker.bootstrap)
        meta["uptime_end"] = uptime()
        meta["total_s"] = round(time.monotonic() - started, 1)
        print(f"uptime at end: {meta['uptime_end']}", flush=True)
        params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        write_figures(
            figures_path(args.json, "soak"), {"meta": meta, "params": params, **doc}, indent=1
        )
        return 0 if doc["summary"]["kept_up"] else 1
    finally:
        try:
            asyncio.run(delete_topics(broker.bootstrap, run_id))
        except Exception as exc:  # the broker may be down already
            print(f"could not delete the run's topics: {exc!r}")
        broker.stop()
        shutil.rmtree(run_dir / "worker", ignore_errors=True)  # RocksDB; logs stay
        print(f"total {time.monotonic() - started:.0f} s; logs in {run_dir}", flush=True)


if __name__ == "__main__":
    if is_child_call(sys.argv):
        child_main(json.loads(sys.argv[2]))
    else:
        try:
            sys.exit(main())
        except KeyboardInterrupt:  # the broker and the worker were stopped in main's finally
            print("interrupted", flush=True)
            sys.exit(130)
