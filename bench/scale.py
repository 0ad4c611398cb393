"""One worker and 1,000,000 users: state bytes per user, RSS, each step of a restart from
RocksDB and from the changelog.

    .venv/bin/python bench/scale.py --users 1000000 --events-per-user 1

A private broker (``KafkaBroker`` on 127.0.0.1:19592, controller 19593, data in
/tmp/scale-kafka, or ``--port``, ``--controller-port``, ``--broker-dir``; logs and worker data
in var/bench/runs/<run>/) gets one topic of synthetic valid events (the contract of
``decay/events.py``, encoded with ``decay_cli.replay.encode``): ``--users`` distinct users,
``--events-per-user`` events each, event times uniform over ``--span-hours`` and produced in
time order, keyed by user id, seeded. Then one worker (``stream_app.app.create_app`` with the
ONNX scorer ``stream_app/models/model.onnx``), in a child process, with one app id and one
data dir throughout:

  (a) process   the worker goes through the whole topic: events/s, its RSS at the end and
                its peak, RocksDB bytes on disk, bytes per user, the changelog topic (read
                back: records, bytes, mean state record), then a graceful stop (SIGTERM).
  then the restarts of ``--restarts``, in order, each after one probe event per partition:
  local         the worker started again on the same data dir, after a graceful stop;
  killed        the same after a SIGKILL of the previous restart's worker (give it
                DECAY_GROUP_INSTANCE_ID, else it waits out the dead worker's session);
  changelog     the data dir deleted: the table rebuilt from the changelog alone.
  Each: seconds from the launch to the imports, the app built, the assignment, the RocksDBs
  opened, Faust's table recovery, the first batch and ready (the probe events processed and
  delivered); the partitions' activation and the schedule read in a thread; RSS per user.

``--keep`` leaves the broker, the topic and the data dir; ``--reuse RUN_DIR`` then runs the
restarts alone on them. The worker child journals (JSON lines) its steps, each RocksDB open
and activation, its table recovery (changelog records restored) and every batch (time, size,
highest offset per partition); the parent samples its RSS and CPU (/proc) and its /metrics
page. The module also holds the helpers of ``bench/workers.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
    worker_settings_from_env,
    write_figures,
)
from bench.common import start_broker as start_own_broker  # noqa: E402
from bench.latency import machine_cpu, proc_cpu_s  # noqa: E402
from bench.throughput import child_settings  # noqa: E402

PORT = 19592
CONTROLLER_PORT = 19593
BROKER_DIR = Path("/tmp/scale-kafka")
TABLE = "user-state"  # create_app's table; its changelog is "<app id>-user-state-changelog"
T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, as training.simulate starts
TYPES = ("view", "click", "cart", "search", "purchase", "wishlist", "other")
TYPE_WEIGHTS = (0.66, 0.20, 0.05, 0.04, 0.02, 0.015, 0.015)  # about training.simulate's mix
MB = 1024.0 * 1024.0


# ------------------------------------------------------------------------ child side


class Journal:
    """JSON lines the parent reads while the child runs (one flush per line)."""

    def __init__(self, path: Path) -> None:
        self.fh: IO[str] = path.open("a", encoding="utf-8")

    def write(self, ev: str, **fields: Any) -> None:
        self.fh.write(json.dumps({"ev": ev, "t": time.time(), **fields}) + "\n")
        self.fh.flush()


def hook_batches(built: Any, journal: Journal) -> None:
    """Journal each batch: its start (processor call), end (the last metric the agent
    records, after state writes, sends and acks), size and offsets per partition."""
    processor, metrics = built.processor, built.metrics
    process = processor.process
    current: dict[str, Any] = {}

    def journaled(records: Any) -> Any:
        hi: dict[int, int] = {}
        for rec in records:
            hi[rec.partition] = max(hi.get(rec.partition, -1), rec.offset)
        current.update(t0=time.time(), n=len(records), hi=hi)
        return process(records)

    processor.process = journaled

    class BatchSeconds:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def observe(self, value: float) -> None:
            self.inner.observe(value)
            journal.write("batch", **current)

    object.__setattr__(metrics, "batch_seconds", BatchSeconds(metrics.batch_seconds))


def hook_lifecycle(app: Any, topic: str, journal: Journal) -> None:
    """Journal assignments, the end of each table recovery, and changelog records restored
    (through Faust's recovery, and a fetch at a time by the intake)."""

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == topic)
        journal.write("assigned", partitions=mine)

    async def on_recovered(sender: Any, **kwargs: Any) -> None:
        journal.write("recovered")

    app.on_partitions_assigned.connect(on_assigned)
    app.on_rebalance_complete.connect(on_recovered)
    table = app.tables[TABLE]
    apply = table.apply_changelog_batch

    def counted(batch: Any) -> None:
        apply(batch)
        journal.write("restored", n=len(batch))

    table.apply_changelog_batch = counted
    # The records the intake writes to RocksDB a fetch at a time (changelog_bulk.py).
    bulk = app.consumer._drain_messages.__self__.changelog
    applied = bulk.on_applied

    def counted_bulk(n: int) -> None:
        applied(n)
        journal.write("restored", n=n)

    bulk.on_applied = counted_bulk


def hook_restart(built: Any, journal: Journal) -> None:
    """Journal what a restart costs inside the worker: each RocksDB open (Faust opens a
    partition's DB at its assignment) and each partition's activation (its schedule rebuilt
    from the stored users, in the first batch that reaches it)."""
    from faust.stores import rocksdb as faust_rocksdb

    store_open = faust_rocksdb.Store._open_for_partition

    def timed_open(store: Any, partition: int) -> Any:
        t0 = time.time()
        db = store_open(store, partition)
        journal.write("db_open", t0=t0, partition=partition, table=store.table.name)
        return db

    faust_rocksdb.Store._open_for_partition = timed_open  # type: ignore[method-assign]
    processor = built.processor
    activate = processor._activate

    def timed_activate(partition: int, first_offset: int, out: Any) -> Any:
        t0 = time.time()
        part = activate(partition, first_offset, out)
        apart = part.loading is not None
        journal.write("activated", t0=t0, partition=partition, users=part.users, apart=apart)
        if part.loading is not None:  # the schedule read in a thread (partitions.activate)
            part.loading.add_done_callback(lambda f: schedule_read(t0, partition, f))
        return part

    def schedule_read(t0: float, partition: int, done: Any) -> None:
        users = done.result()[2] if done.exception() is None else -1
        journal.write("schedule_read", t0=t0, partition=partition, users=users)

    processor._activate = timed_activate


def child_main(spec: dict[str, Any]) -> None:
    """One worker: create_app with the ONNX scorer, unchanged but for read-only hooks.
    Runs until SIGTERM (Faust's graceful stop) or SIGKILL."""
    journal = Journal(Path(spec["journal"]))
    journal.write("main", t_launch=spec["t_launch"])
    import faust

    from decay_kafka.topics import ensure_topics
    from stream_app.app import create_app
    from stream_app.onnx_scorer import OnnxScorer

    journal.write("imported")
    settings = child_settings(spec)
    asyncio.run(ensure_topics(settings))
    built = create_app(settings, scorer=OnnxScorer(MODEL))
    hook_batches(built, journal)
    hook_lifecycle(built.app, settings.events_topic, journal)
    hook_restart(built, journal)
    journal.write("built")
    faust.Worker(built.app, loglevel=spec["loglevel"], quiet=True).execute_from_commandline()


# ------------------------------------------------------------------- /proc and disk


def proc_status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, kB; empty once it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def broker_pid(data_dir: Path = BROKER_DIR) -> int | None:
    try:
        pid = int((data_dir / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def dir_usage(path: Path) -> dict[str, int]:
    """Bytes under a directory: allocated (as du), and apparent by kind of RocksDB file."""
    out = {"allocated": 0, "apparent": 0, "sst": 0, "wal": 0, "other": 0, "files": 0}
    if not path.exists():
        return out
    for p in path.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if not p.is_file():
            continue
        out["files"] += 1
        out["allocated"] += st.st_blocks * 512
        out["apparent"] += st.st_size
        kind = "sst" if p.suffix == ".sst" else "wal" if p.suffix == ".log" else "other"
        out[kind] += st.st_size
    return out


def table_dirs(data_dir: Path) -> list[Path]:
    """The worker's RocksDB dirs of its user-state table (one per partition)."""
    return sorted(p for p in data_dir.rglob(f"{TABLE}-*.db") if p.is_dir())


def topic_disk_bytes(topic: str, data_dir: Path = BROKER_DIR) -> int:
    """Bytes of a topic's partition dirs in the broker's log dir (allocated)."""
    total = 0
    for d in (data_dir / "kraft").glob(f"{topic}-*"):
        if d.is_dir() and d.name.rsplit("-", 1)[-1].isdigit():
            total += dir_usage(d)["allocated"]
    return total


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {os.getloadavg()}"


# ------------------------------------------------------------------- worker process


def metric_sums(text: str) -> dict[str, float]:
    """Prometheus text -> sum of each sample name over its labels; also name{labels}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
            if s.labels and s.name in ("decay_events_total", "decay_alerts_total"):
                label = ",".join(str(v) for v in s.labels.values())
                out[f"{s.name}{{{label}}}"] = s.value
    return out


@dataclass
class WorkerProc:
    """A worker child (this file run as ``_child``), its journal and its web port."""

    label: str
    spec: dict[str, Any]
    run_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    _pos: int = 0
    _t_term: float | None = None

    @property
    def journal(self) -> Path:
        return self.run_dir / f"{self.label}.jsonl"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.label}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.journal.unlink(missing_ok=True)
        self.spec.update(journal=str(self.journal), t_launch=time.time())
        self.proc = launch_child(__file__, self.spec, self.log_path)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_journal(self) -> list[dict[str, Any]]:
        """The journal lines written since the last call."""
        if not self.journal.exists():
            return []
        with self.journal.open("r", encoding="utf-8") as fh:
            fh.seek(self._pos)
            chunk = fh.read()
        end = chunk.rfind("\n") + 1  # only complete lines
        self._pos += len(chunk[:end].encode())
        new = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
        self.entries.extend(new)
        return new

    def metrics(self, timeout: float = 3.0) -> dict[str, float] | None:
        url = f"http://127.0.0.1:{self.spec['web_port']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return metric_sums(resp.read().decode())
        except (OSError, ValueError):
            return None

    def first(self, ev: str) -> float | None:
        return next((e["t"] for e in self.entries if e["ev"] == ev), None)

    def terminate(self) -> None:
        """SIGTERM (Faust's graceful stop), once."""
        if self.proc is not None and self._t_term is None:
            self._t_term = time.monotonic()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 120.0, kill: bool = False) -> dict[str, Any]:
        """SIGTERM unless sent already, then wait, bounded; SIGKILL after ``timeout``.
        ``kill``: SIGKILL at once (a crash: no graceful stop, no leaving the group)."""
        out: dict[str, Any] = {"graceful": not kill}
        if self.proc is None:
            return out
        if kill and self.proc.poll() is None:
            self._t_term = time.monotonic()
            self.proc.kill()
        self.terminate()
        t = self._t_term or time.monotonic()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                out["graceful"] = False
                self.proc.kill()
                self.proc.wait(timeout=30)
        out.update(shutdown_s=round(time.monotonic() - t, 2), exit_code=self.proc.returncode)
        self.read_journal()
        return out

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Progress:
    """Where the workers are in the topic: done once every partition's last offset
    (``ends``: next offset per partition) is processed, by whichever worker."""

    ends: dict[int, int]
    hi: dict[int, int] = field(default_factory=dict)
    reached: dict[int, float] = field(default_factory=dict)  # first time p got to its end
    events: int = 0
    batches: int = 0
    t_first: float | None = None  # start of the first batch (first event in hand)

    def add(self, entry: dict[str, Any]) -> None:
        if entry["ev"] != "batch":
            return
        self.events += entry["n"]
        self.batches += 1
        if self.t_first is None or entry["t0"] < self.t_first:
            self.t_first = entry["t0"]
        for p_text, off in entry["hi"].items():
            p = int(p_text)
            self.hi[p] = max(self.hi.get(p, -1), off)
            if p in self.ends and off >= self.ends[p] - 1:
                self.reached[p] = min(self.reached.get(p, entry["t"]), entry["t"])

    def done(self) -> bool:
        return all(p in self.reached for p, end in self.ends.items() if end > 0)

    @property
    def t_done(self) -> float | None:
        return max(self.reached.values()) if self.done() and self.reached else None


@dataclass
class Sampler:
    """RSS and CPU of the workers and the broker, and the machine's CPU, over time."""

    broker: int | None
    samples: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, workers: Iterable[WorkerProc]) -> dict[str, Any]:
        busy, total = machine_cpu()
        s: dict[str, Any] = {
            "t": time.time(),
            "machine_busy_s": busy,
            "machine_total_s": total,
            "broker_cpu_s": proc_cpu_s(self.broker),
        }
        for w in workers:
            if w.pid is not None and w.alive():
                s[f"{w.label}_cpu_s"] = proc_cpu_s(w.pid)
                s[f"{w.label}_rss_kb"] = proc_status_kb(w.pid).get("VmRSS")
        self.samples.append(s)
        return s

    def at(self, key: str, t: float) -> float | None:
        """A sampled counter at time t, linearly interpolated."""
        pts = [(s["t"], s[key]) for s in self.samples if s.get(key) is not None]
        if not pts:
            return None
        if t <= pts[0][0]:
            return float(pts[0][1])
        for (ta, va), (tb, vb) in itertools.pairwise(pts):
            if ta <= t <= tb:
                return float(va + (vb - va) * (t - ta) / max(tb - ta, 1e-9))
        return float(pts[-1][1])

    def between(self, key: str, t0: float, t1: float) -> float | None:
        a, b = self.at(key, t0), self.at(key, t1)
        return None if a is None or b is None else b - a

    def series(
        self, key: str, t0: float, step_s: float, scale: float = 1.0
    ) -> list[tuple[float, float]]:
        """(seconds since t0, value) about every ``step_s``, for the JSON."""
        out: list[tuple[float, float]] = []
        for s in self.samples:
            if s.get(key) is not None and (not out or s["t"] - t0 >= out[-1][0] + step_s):
                out.append((round(s["t"] - t0, 1), round(s[key] * scale, 1)))
        return out

    def peak(self, key: str) -> float | None:
        vals = [s[key] for s in self.samples if s.get(key) is not None]
        return max(vals) if vals else None


def wait_for(
    workers: list[WorkerProc],
    progress: Progress,
    sampler: Sampler,
    timeout: float,
    label: str,
    poll_metrics: float = 0.0,
) -> dict[str, Any]:
    """Poll journals and /proc until ``progress`` is done, a worker dies, or the timeout.
    With ``poll_metrics`` > 0, also the first time /metrics answers and the recovery gauge."""
    deadline = time.monotonic() + timeout
    started = time.time()
    last_print = time.monotonic()
    web: dict[str, Any] = {"t_web": {}, "recovery_remaining": []}
    while time.monotonic() < deadline:
        for w in workers:
            for entry in w.read_journal():
                progress.add(entry)
        sampler.sample(workers)
        if progress.done():
            return {"ok": True, **web}
        dead = [w.label for w in workers if not w.alive()]
        if dead:
            return {"ok": False, "error": f"worker(s) {dead} exited", **web}
        if poll_metrics > 0:
            for w in workers:
                m = w.metrics(timeout=1.0)
                if m is not None:
                    web["t_web"].setdefault(w.label, time.time())
                    rem = m.get("decay_recovery_remaining_records")
                    web["recovery_remaining"].append((round(time.time() - started, 2), rem))
        if time.monotonic() - last_print > 30:
            last_print = time.monotonic()
            rss = [proc_status_kb(w.pid).get("VmRSS", 0) / 1024 for w in workers if w.pid]
            print(
                f"  [{label}] {time.time() - started:6.0f} s: {progress.events:,} events in "
                f"{progress.batches} batches; RSS {', '.join(f'{r:.0f}' for r in rss)} MB",
                flush=True,
            )
        time.sleep(poll_metrics if poll_metrics > 0 else 0.5)
    return {"ok": False, "error": f"timeout after {timeout:.0f} s", **web}


# ----------------------------------------------------------------------- Kafka helpers


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: int(off) for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def caught_up(consumer: Any, ends: dict[Any, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def changelog_stats(
    bootstrap: str, topic: str, timeout: float, sample_every: int = 100
) -> dict[str, Any]:
    """Read a changelog topic: records, key/value bytes, and the size of the latest record
    of each key (the state a worker restores); decodes every ``sample_every``-th latest state
    to split its size into events, categories and alerts."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    records = key_bytes = value_bytes = 0
    latest: dict[bytes, int] = {}
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await caught_up(consumer, ends):
                break
            batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for msgs in batch.values():
                for m in msgs:
                    records += 1
                    key_bytes += len(m.key or b"")
                    value_bytes += len(m.value or b"")
                    latest[m.key or b""] = len(m.value) if m.value is not None else -1
        users = {k: v for k, v in latest.items() if not k.startswith(b"\x00") and v >= 0}
        sample_keys = set(list(users)[::sample_every])
        breakdown = await state_breakdown(consumer, tps, sample_keys, deadline)
    finally:
        await consumer.stop()
    sizes = sorted(users.values())
    n = len(sizes)
    return {
        "topic": topic,
        "records": records,
        "key_bytes": key_bytes,
        "value_bytes": value_bytes,
        "distinct_users": n,
        "latest_value_bytes": sum(sizes),
        "mean_state_bytes": sum(sizes) / n if n else None,
        "p50_state_bytes": sizes[n // 2] if n else None,
        "p99_state_bytes": sizes[min(n - 1, n * 99 // 100)] if n else None,
        "max_state_bytes": sizes[-1] if n else None,
        "mean_key_bytes": sum(len(k) for k in users) / n if n else None,
        **breakdown,
    }


async def state_breakdown(
    consumer: Any, tps: list[Any], keys: set[bytes], deadline: float
) -> dict[str, Any]:
    """Decode the latest state of the given keys (a second pass over the changelog)."""
    from decay.state import decode_state

    if not keys:
        return {}
    found: dict[bytes, bytes] = {}
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    while time.monotonic() < deadline:
        if await caught_up(consumer, ends):
            break
        batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
        for msgs in batch.values():
            for m in msgs:
                if m.key in keys and m.value is not None:
                    found[m.key] = m.value
    states = [decode_state(v) for v in found.values()]
    if not states:
        return {}
    k = len(states)
    return {
        "sampled_states": k,
        "sample_mean_bytes": sum(len(v) for v in found.values()) / k,
        "sample_mean_events": sum(s.n_events for s in states) / k,
        "sample_mean_categories": sum(len(s.categories) for s in states) / k,
        "sample_mean_engaged_categories": sum(len(s.engagement) for s in states) / k,
        "sample_mean_alerts": sum(len(s.alerts) for s in states) / k,
        "sample_mean_alert_bytes": sum(sum(len(a.payload) + 10 for a in s.alerts) for s in states)
        / k,
        "sample_with_deadline": sum(1 for s in states if s.deadline_ms) / k,
    }


# ------------------------------------------------------------------------ the traffic


def synthetic_events(
    users: int, per_user: int, span_hours: float, seed: int
) -> tuple[Iterator[tuple[bytes, bytes]], int, int]:
    """(key, value) messages of ``users`` users with ``per_user`` events each, event times
    uniform over the span, in time order; also the count and the last event time (ms)."""
    import numpy as np

    from decay_cli.replay import encode
    from training.simulate import CATEGORY_NAMES

    rng = np.random.default_rng(seed)
    n = users * per_user
    span_ms = int(span_hours * 3_600_000)
    user_of = np.repeat(rng.permutation(users), per_user)
    ts = T0_MS + rng.integers(0, span_ms, n)
    order = np.argsort(ts, kind="stable")
    kinds = rng.choice(len(TYPES), n, p=np.array(TYPE_WEIGHTS) / sum(TYPE_WEIGHTS))
    cats = rng.integers(0, len(CATEGORY_NAMES), n)
    items = rng.integers(0, 500, n)
    cents = rng.integers(100, 20_000, n)

    def messages() -> Iterator[tuple[bytes, bytes]]:
        for seq, i in enumerate(order.tolist()):
            kind = TYPES[kinds[i]]
            rec: dict[str, Any] = {
                "event_id": f"s{seq}",
                "user_id": f"u{int(user_of[i]):07d}",
                "ts": int(ts[i]),
                "type": kind,
            }
            if kind != "other":
                rec["category"] = CATEGORY_NAMES[cats[i]]
            if kind not in ("other", "search"):
                rec["item_id"] = f"i{int(cats[i]):02d}-{int(items[i]):05d}"
                rec["price"] = int(cents[i]) / 100.0 - 0.01
            if kind in ("cart", "purchase"):
                rec["quantity"] = 1
            yield encode(rec)

    return messages(), n, int(ts.max()) if n else T0_MS


def probe_events(tag: str, partitions: int, ts_ms: int) -> list[tuple[bytes, bytes]]:
    """One valid event per partition, of new users (keys picked by Kafka's partitioner)."""
    from decay_cli.replay import encode
    from stream_app.queries import partition_for

    chosen: dict[int, bytes] = {}
    i = 0
    while len(chosen) < partitions and i < 100_000:
        key = f"probe-{tag}-{i}".encode()
        chosen.setdefault(partition_for(key, partitions), key)
        i += 1
    return [
        encode(
            {
                "event_id": f"probe-{tag}-{p}",
                "user_id": key.decode(),
                "ts": ts_ms,
                "type": "view",
                "item_id": "i00-00000",
                "category": "electronics",
                "price": 9.99,
            }
        )
        for p, key in sorted(chosen.items())
    ]


def produce_topic(
    bootstrap: str, topic: str, partitions: int, messages: Iterable[tuple[bytes, bytes]]
) -> tuple[int, float]:
    from decay_cli.replay import produce

    asyncio.run(create_topic(bootstrap, topic, partitions))
    t = time.monotonic()
    sent = asyncio.run(produce(messages, bootstrap, topic))
    return sent, time.monotonic() - t


# ------------------------------------------------------------------------ the phases


def worker_spec(common: dict[str, Any], data_dir: Path, web_port: int = 0) -> dict[str, Any]:
    return {**common, "data_dir": str(data_dir), "web_port": web_port or free_port()}


def rss_mb(pid: int | None) -> tuple[float | None, float | None]:
    st = proc_status_kb(pid) if pid is not None else {}
    rss, hwm = st.get("VmRSS"), st.get("VmHWM")
    return (rss / 1024 if rss else None, hwm / 1024 if hwm else None)


def phase_process(
    args: argparse.Namespace, common: dict[str, Any], run_dir: Path, data_dir: Path
) -> dict[str, Any]:
    """(a): one worker through the whole topic; RSS, disk, metrics; graceful stop."""
    ends = asyncio.run(end_offsets(common["bootstrap"], common["topic"]))
    w = WorkerProc("a-process", worker_spec(common, data_dir), run_dir)
    sampler = Sampler(broker_pid(Path(common.get("broker_dir", BROKER_DIR))))
    progress = Progress(ends)
    w.start()
    try:
        waited = wait_for([w], progress, sampler, args.timeout, "a")
        t_end = time.time()
        rss, hwm = rss_mb(w.pid)
        metrics = w.metrics() or {}
        disk_running = dir_usage(data_dir)
    finally:
        stopped = w.stop()
    if not waited["ok"]:
        return {"error": waited["error"], "log": str(w.log_path), "log_tail": w.log_tail()}
    t0, t1 = progress.t_first or t_end, progress.t_done or t_end
    cpu = sampler.between(f"{w.label}_cpu_s", t0, t1)
    rss_key = f"{w.label}_rss_kb"
    rss_first = (sampler.at(rss_key, t0) or 0) / 1024
    return {
        "events": progress.events,
        "batches": progress.batches,
        "seconds": t1 - t0,
        "events_per_s": progress.events / max(t1 - t0, 1e-9),
        "wall_incl_startup_s": t1 - w.spec["t_launch"],
        "worker_cpu_s": cpu,
        "events_per_cpu_s": progress.events / cpu if cpu else None,
        "worker_cores": cpu / (t1 - t0) if cpu else None,
        "broker_cpu_s": sampler.between("broker_cpu_s", t0, t1),
        "machine_busy_share": share(sampler, t0, t1),
        "rss_end_mb": rss,
        "peak_rss_mb": hwm,
        "rss_first_event_mb": rss_first,
        "rss_samples_peak_mb": (sampler.peak(rss_key) or 0) / 1024,
        "rss_series_mb": sampler.series(rss_key, t0, step_s=15.0, scale=1 / 1024),
        "metrics": metrics,
        "disk_running": disk_running,
        "disk_stopped": dir_usage(data_dir),
        "table_dirs": [str(p.relative_to(data_dir)) for p in table_dirs(data_dir)],
        "stop": stopped,
        "log": str(w.log_path),
    }


def share(sampler: Sampler, t0: float, t1: float) -> float | None:
    busy = sampler.between("machine_busy_s", t0, t1)
    total = sampler.between("machine_total_s", t0, t1)
    return busy / total if busy is not None and total else None


def phase_restart(
    label: str,
    args: argparse.Namespace,
    common: dict[str, Any],
    run_dir: Path,
    data_dir: Path,
    probe_ts: int,
    kill_after: bool = False,
    web_port: int = 0,
) -> dict[str, Any]:
    """(b)/(c): produce one probe event per partition, start the worker on ``data_dir``
    (kept, or deleted by the caller), time it to assignment, recovery, /metrics, probes;
    then stop it gracefully, or with SIGKILL when ``kill_after`` (for the next restart).
    ``web_port``: the previous worker's, as a restarted worker has it (Faust's assignor
    checks it against the assignment a static member, DECAY_GROUP_INSTANCE_ID, gets back)."""
    probes = probe_events(label, common["partitions"], probe_ts)
    produce_topic_existing(common["bootstrap"], common["topic"], probes)
    ends = asyncio.run(end_offsets(common["bootstrap"], common["topic"]))
    w = WorkerProc(label, worker_spec(common, data_dir, web_port), run_dir)
    sampler = Sampler(broker_pid(Path(common.get("broker_dir", BROKER_DIR))))
    progress = Progress(ends)
    w.start()
    try:
        waited = wait_for([w], progress, sampler, args.recovery_timeout, label, poll_metrics=0.25)
        rss_ready, _ = rss_mb(w.pid)
        metrics = w.metrics() or {}
        wait_schedules_read(w, args.recovery_timeout)
        time.sleep(args.settle)  # RSS once the worker has settled; its commit is done by then
        rss_settled, hwm = rss_mb(w.pid)
    finally:
        stopped = w.stop(kill=kill_after)
    if not waited["ok"]:
        return {"error": waited["error"], "log": str(w.log_path), "log_tail": w.log_tail()}
    launch = w.spec["t_launch"]
    t_done = progress.t_done
    return {
        "probe_events": len(probes),
        **restart_phases(w, progress, waited["t_web"].get(w.label)),
        "worker_cpu_to_ready_s": sampler.between(f"{w.label}_cpu_s", launch, t_done or launch),
        "machine_busy_share": share(sampler, launch, t_done or launch),
        "rss_before_activation_mb": rss_before(sampler, w),
        "rss_ready_mb": rss_ready,
        "rss_settled_mb": rss_settled,
        "peak_rss_mb": hwm,
        "recovery_remaining_series": waited["recovery_remaining"][:: max(1, args.series_every)],
        "metrics": metrics,
        "disk_stopped": dir_usage(data_dir),
        "stop": stopped,
        "web_port": w.spec["web_port"],
        "log": str(w.log_path),
    }


def wait_schedules_read(w: WorkerProc, timeout: float) -> None:
    """Until every schedule read apart (see stream_app.partitions.activate) is read."""
    deadline = time.monotonic() + timeout
    while w.alive() and time.monotonic() < deadline:
        w.read_journal()
        apart = sum(1 for e in w.entries if e["ev"] == "activated" and e.get("apart"))
        if sum(1 for e in w.entries if e["ev"] == "schedule_read") >= apart:
            return
        time.sleep(0.2)  # the child's journal file: no event to wait on


def restart_phases(w: WorkerProc, progress: Progress, t_web: float | None) -> dict[str, Any]:
    """Seconds from the launch of the process to each step of its start, from its journal;
    and what the RocksDB opens and the partitions' activations took."""
    launch = w.spec["t_launch"]

    def since(t: float | None) -> float | None:
        return None if t is None else t - launch

    state_opens = [e for e in w.entries if e["ev"] == "db_open" and e["table"] == TABLE]
    activations = [e for e in w.entries if e["ev"] == "activated"]
    reads = [e for e in w.entries if e["ev"] == "schedule_read"]
    # Faust's recovery also applies its empty buffers at the end: not a restore.
    restored = [e for e in w.entries if e["ev"] == "restored" and e["n"]]
    batches = [e for e in w.entries if e["ev"] == "batch"]
    return {
        "to_main_s": since(w.first("main")),
        "to_imported_s": since(w.first("imported")),
        "to_built_s": since(w.first("built")),
        "to_assigned_s": since(w.first("assigned")),
        "rocksdb_opens": len(state_opens),
        "rocksdb_open_s": sum(e["t"] - e["t0"] for e in state_opens),
        "to_rocksdb_opened_s": since(max((e["t"] for e in state_opens), default=None)),
        "to_recovered_s": since(w.first("recovered")),
        "to_metrics_s": since(t_web),
        "activations": len(activations),
        "activated_users": sum(e["users"] for e in activations),
        "activation_s": sum(e["t"] - e["t0"] for e in activations),
        "schedules_read": len(reads),
        "schedule_read_users": sum(e["users"] for e in reads),
        "to_schedule_read_s": since(max((e["t"] for e in reads), default=None)),
        "to_first_batch_s": since(progress.t_first),
        "first_batch_s": batches[0]["t"] - batches[0]["t0"] if batches else None,
        "to_ready_s": since(progress.t_done),
        "restored_records": sum(e["n"] for e in restored),
        "restore_s": restored[-1]["t"] - restored[0]["t"] if len(restored) > 1 else 0.0,
        "assignments": sum(1 for e in w.entries if e["ev"] == "assigned"),
    }


def rss_before(sampler: Sampler, w: WorkerProc) -> float | None:
    """The worker's RSS (MB) as its first activation began: the process before any user."""
    t0 = next((e["t0"] for e in w.entries if e["ev"] == "activated"), None)
    rss = sampler.at(f"{w.label}_rss_kb", t0) if t0 is not None else None
    return rss / 1024 if rss else None


def produce_topic_existing(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from decay_cli.replay import produce

    asyncio.run(produce(messages, bootstrap, topic))


# ----------------------------------------------------------------------- the report


def fmt(value: Any, spec: str = ",.0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def process_table(topic: dict[str, Any], a: dict[str, Any], cl: dict[str, Any]) -> str:
    users = topic["users"]
    disk_run, disk_stop = a["disk_running"], a["disk_stopped"]
    m = a["metrics"]
    rows = [
        ("users / events in the topic", f"{users:,} / {topic['events']:,}"),
        ("events processed (batches)", f"{a['events']:,} ({a['batches']:,})"),
        ("seconds, first event to last", fmt(a["seconds"], ",.1f")),
        ("events/s", fmt(a["events_per_s"])),
        ("wall incl. startup (s)", fmt(a["wall_incl_startup_s"], ",.1f")),
        (
            "worker CPU-s (cores used) / events per CPU-s",
            f"{fmt(a['worker_cpu_s'], ',.0f')} ({fmt(a['worker_cores'], '.2f')}) / "
            f"{fmt(a['events_per_cpu_s'])}",
        ),
        ("broker CPU-s in that interval", fmt(a["broker_cpu_s"], ",.0f")),
        ("machine busy in that interval", fmt(a["machine_busy_share"], ".0%")),
        ("worker RSS at the end (MB)", fmt(a["rss_end_mb"])),
        ("worker peak RSS, VmHWM (MB)", fmt(a["peak_rss_mb"])),
        ("worker RSS at its first event (MB)", fmt(a["rss_first_event_mb"])),
        (
            "RSS growth per user (bytes, (end − first event) / users)",
            fmt(((a["rss_end_mb"] or 0) - a["rss_first_event_mb"]) * MB / users),
        ),
        (
            "decay_users_tracked / decay_pending_deadlines",
            f"{fmt(m.get('decay_users_tracked'))} / {fmt(m.get('decay_pending_deadlines'))}",
        ),
        ("alerts emitted", fmt(m.get("decay_alerts_total", 0.0))),
        (
            "RocksDB on disk, running: du (SST + WAL)",
            f"{disk_run['allocated'] / MB:,.1f} MB ({disk_run['sst'] / MB:,.1f} + "
            f"{disk_run['wal'] / MB:,.1f})",
        ),
        (
            "RocksDB on disk, after stop: du (SST + WAL)",
            f"{disk_stop['allocated'] / MB:,.1f} MB ({disk_stop['sst'] / MB:,.1f} + "
            f"{disk_stop['wal'] / MB:,.1f})",
        ),
        ("RocksDB bytes per user (after stop, du / users)", fmt(disk_stop["allocated"] / users)),
        (
            "changelog: records / distinct users",
            f"{cl.get('records', 0):,} / {cl.get('distinct_users', 0):,}",
        ),
        (
            "changelog: key + value bytes; on broker disk",
            f"{(cl.get('key_bytes', 0) + cl.get('value_bytes', 0)) / MB:,.1f} MB; "
            f"{cl.get('disk_bytes', 0) / MB:,.1f} MB",
        ),
        (
            "state record per user: mean (p50 / p99 / max) bytes",
            f"{fmt(cl.get('mean_state_bytes'), ',.1f')} ({fmt(cl.get('p50_state_bytes'))} / "
            f"{fmt(cl.get('p99_state_bytes'))} / {fmt(cl.get('max_state_bytes'))})",
        ),
        (
            "sampled states: events / categories / stored alerts per user",
            f"{fmt(cl.get('sample_mean_events'), '.2f')} / "
            f"{fmt(cl.get('sample_mean_categories'), '.2f')} / "
            f"{fmt(cl.get('sample_mean_alerts'), '.2f')}",
        ),
        ("graceful stop (s)", fmt(a["stop"].get("shutdown_s"), ".1f")),
    ]
    lines = ["| measure | value |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


RESTARTS = {
    "local": "(b) local RocksDB kept, after a graceful stop",
    "killed": "(b') local RocksDB kept, after a SIGKILL",
    "changelog": "(c) data dir deleted: from the changelog",
}


def recovery_table(phases: dict[str, dict[str, Any]], users: int) -> str:
    """One column per restart, one row per step: seconds after the launch of the process."""
    rows: list[tuple[str, str, str]] = [
        ("python and the benchmark's imports", "to_main_s", ".2f"),
        ("+ faust, onnxruntime, stream_app imported", "to_imported_s", ".2f"),
        ("+ topics checked, app built (create_app)", "to_built_s", ".2f"),
        ("+ Faust started, group joined: partitions assigned", "to_assigned_s", ".2f"),
        ("+ state RocksDBs opened (last one)", "to_rocksdb_opened_s", ".2f"),
        ("+ Faust's table recovery done", "to_recovered_s", ".2f"),
        ("+ first batch started", "to_first_batch_s", ".2f"),
        ("= ready: probe events processed and delivered", "to_ready_s", ".2f"),
        ("RocksDB opens: count / seconds in them", "", ""),
        ("changelog records restored (seconds)", "", ""),
        ("activation: partitions / users read first / seconds (in the first batch)", "", ""),
        ("schedule read in a thread: partitions / users / done (s after launch)", "", ""),
        ("first batch, seconds", "first_batch_s", ".2f"),
        ("worker CPU-s, launch to ready", "worker_cpu_to_ready_s", ".1f"),
        ("RSS before activation / at ready / settled (MB)", "", ""),
        ("RSS per user: settled / users (bytes)", "", ""),
        ("RSS per user: (settled − before activation) / users (bytes)", "", ""),
    ]
    keys = [k for k in RESTARTS if k in phases]
    lines = ["| seconds after launch | " + " | ".join(RESTARTS[k] for k in keys) + " |"]
    lines.append("|---|" + "---:|" * len(keys))
    for name, key, spec in rows:
        cells = [restart_cell(phases[k], name, key, spec, users) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def restart_cell(r: dict[str, Any], name: str, key: str, spec: str, users: int) -> str:
    if "error" in r:
        return f"failed: {r['error']}"
    if key:
        return fmt(r.get(key), spec)
    if name.startswith("RocksDB opens"):
        return f"{r['rocksdb_opens']} / {r['rocksdb_open_s']:.2f}"
    if name.startswith("changelog records"):
        return f"{r['restored_records']:,} ({r['restore_s']:.1f})"
    if name.startswith("activation"):
        return f"{r['activations']} / {r['activated_users']:,} / {r['activation_s']:.2f}"
    if name.startswith("schedule read"):
        done = fmt(r.get("to_schedule_read_s"), ".2f")
        return f"{r.get('schedules_read', 0)} / {r.get('schedule_read_users', 0):,} / {done}"
    before, settled = r.get("rss_before_activation_mb"), r.get("rss_settled_mb")
    if name.startswith("RSS before"):
        return f"{fmt(before)} / {fmt(r.get('rss_ready_mb'))} / {fmt(settled)}"
    if settled is None or not users:
        return "-"
    if "before activation" in name:
        return fmt((settled - before) * MB / users) if before is not None else "-"
    return fmt(settled * MB / users)


# ------------------------------------------------------------------------------ main


def start_broker(extra_props: tuple[str, ...] = ()) -> Any:
    """The broker of bench/workers.py (which shares this module's defaults)."""
    return start_own_broker(BROKER_DIR, PORT, CONTROLLER_PORT, extra_props)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="distinct users")
    parser.add_argument("--events-per-user", type=int, default=1)
    parser.add_argument("--span-hours", type=float, default=24.0, help="event-time span")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="phase (a), s (default 300 + events/300)"
    )
    parser.add_argument(
        "--restarts",
        default=",".join(RESTARTS),
        help=f"restarts after (a), in order, comma-separated, of {', '.join(RESTARTS)}",
    )
    parser.add_argument("--recovery-timeout", type=float, default=1200.0, help="(b), (c), s")
    parser.add_argument("--settle", type=float, default=5.0, help="s after ready, then RSS")
    parser.add_argument("--series-every", type=int, default=4, help="thin the gauge series")
    parser.add_argument("--faust-loglevel", default="info")
    parser.add_argument("--port", type=int, default=PORT, help="the broker's client port")
    parser.add_argument("--controller-port", type=int, default=CONTROLLER_PORT)
    parser.add_argument("--broker-dir", type=Path, default=BROKER_DIR)
    parser.add_argument(
        "--keep", action="store_true", help="keep the broker, the topic and the worker's data"
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="a run dir left by --keep: its topic and data dir, no (a); the broker of --port",
    )
    add_json_option(parser, "scale")
    args = parser.parse_args()
    args.timeout = args.timeout or 300.0 + args.users * args.events_per_user / 300.0
    args.restarts = [r.strip() for r in args.restarts.split(",") if r.strip()]
    unknown = sorted(set(args.restarts) - set(RESTARTS))
    if unknown:
        parser.error(f"unknown restarts {unknown}: pick from {', '.join(RESTARTS)}")
    return args


def build_topic(args: argparse.Namespace, broker: Any, run: str) -> dict[str, Any]:
    topic = f"{run}-events"
    messages, _, last_ts = synthetic_events(
        args.users, args.events_per_user, args.span_hours, args.seed
    )
    sent, produce_s = produce_topic(broker.bootstrap, topic, args.partitions, messages)
    print(f"topic {topic}: {sent:,} events of {args.users:,} users in {produce_s:.0f} s")
    return {
        "topic": topic,
        "users": args.users,
        "events": sent,
        "events_per_user": args.events_per_user,
        "span_hours": args.span_hours,
        "partitions": args.partitions,
        "produce_s": round(produce_s, 1),
        "disk_bytes": topic_disk_bytes(topic, args.broker_dir),
        "last_ts": last_ts,
    }


def process_all(
    args: argparse.Namespace, broker: Any, common: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    """(a), then the changelog read back."""
    print("(a) one worker through the topic ...", flush=True)
    a = phase_process(args, common, run_dir, run_dir / "worker-data")
    if "error" in a:
        print(f"(a) FAILED: {a['error']}\n{a['log_tail']}", flush=True)
        return {"process": a}
    print(
        f"(a) {a['events']:,} events in {a['seconds']:.1f} s = {a['events_per_s']:,.0f}/s; "
        f"RSS {a['rss_end_mb']:.0f} MB (peak {a['peak_rss_mb']:.0f})",
        flush=True,
    )
    changelog = f"{common['group']}-{TABLE}-changelog"
    cl = asyncio.run(changelog_stats(broker.bootstrap, changelog, 900.0))
    cl["disk_bytes"] = topic_disk_bytes(changelog, args.broker_dir)
    print(f"changelog: {json.dumps(cl)}", flush=True)
    return {"process": a, "changelog": cl}


def restarts(
    args: argparse.Namespace, common: dict[str, Any], run_dir: Path, last_ts: int
) -> dict[str, dict[str, Any]]:
    """The restarts asked for, in order, on the data dir of (a). Each but the last is
    stopped as the next one needs: killed before "killed", gracefully before the others."""
    data_dir = run_dir / "worker-data"
    phases: dict[str, dict[str, Any]] = {}
    port = free_port()  # one for every restart, as a restarted worker keeps its address
    for i, label in enumerate(args.restarts):
        if label == "changelog":
            shutil.rmtree(data_dir, ignore_errors=True)
        print(f"({label}) restart ...", flush=True)
        probe_ts = last_ts + (i + 1) * 60_000 + int(time.time()) % 1000 * 1000
        kill = i + 1 < len(args.restarts) and args.restarts[i + 1] == "killed"
        r = phases[label] = phase_restart(
            label, args, common, run_dir, data_dir, probe_ts, kill_after=kill, web_port=port
        )
        if "error" in r:
            print(f"({label}) FAILED: {r['error']}\n{r['log_tail']}", flush=True)
            break
        print(
            f"({label}) ready {r['to_ready_s']:.2f} s after launch (assigned "
            f"{fmt(r['to_assigned_s'], '.2f')}, recovered {fmt(r['to_recovered_s'], '.2f')}, "
            f"{r['restored_records']:,} changelog records restored, activation "
            f"{r['activation_s']:.2f} s), RSS {fmt(r['rss_settled_mb'])} MB",
            flush=True,
        )
    return phases


def run(args: argparse.Namespace, broker: Any, run: str, run_dir: Path) -> dict[str, Any]:
    setup = run_dir / "setup.json"
    if args.reuse:
        out: dict[str, Any] = json.loads(setup.read_text())
        print(f"reusing {run_dir}: topic {out['topic']['topic']}", flush=True)
    else:
        out = {"topic": build_topic(args, broker, run)}
    topic_info = out["topic"]
    common = {
        "bootstrap": broker.bootstrap,
        "group": topic_info["topic"].removesuffix("-events") + "-w",
        "topic": topic_info["topic"],
        "partitions": topic_info["partitions"],
        "loglevel": args.faust_loglevel,
        "settings": worker_settings_from_env(),
        "broker_dir": str(args.broker_dir),
    }
    if not args.reuse:
        out.update(process_all(args, broker, common, run_dir))
        if "error" in out["process"]:
            return out
        write_figures(setup, out)
    out["restarts"] = restarts(args, common, run_dir, topic_info["last_ts"])
    out["table_process"] = process_table(topic_info, out["process"], out["changelog"])
    out["table_recovery"] = recovery_table(out["restarts"], topic_info["users"])
    return out


def main() -> int:
    args = parse_args()
    if not MODEL.exists():
        raise SystemExit(f"no {MODEL}")
    if args.reuse:
        run_dir, run_name = args.reuse.resolve(), args.reuse.resolve().name
    else:
        run_name = time.strftime("scale-%Y%m%d-%H%M%S", time.gmtime())
        run_dir = new_run_dir(run_name)
    meta = {**machine_note(), "uptime_start": uptime(), "command": " ".join(sys.argv)}
    print(f"{meta['date_utc']}: {meta['uptime_start']}", flush=True)
    started = time.monotonic()
    broker = None
    out: dict[str, Any] = {}
    keep = args.keep or args.reuse is not None
    try:
        broker = start_own_broker(args.broker_dir, args.port, args.controller_port)
        out = run(args, broker, run_name, run_dir)
    finally:
        meta["uptime_end"] = uptime()
        meta["total_s"] = round(time.monotonic() - started, 1)
        if broker is not None and not keep:
            try:
                asyncio.run(delete_topics(broker.bootstrap, run_name))
            except Exception as exc:  # the broker may be down already
                print(f"could not delete the run's topics: {exc!r}")
            broker.stop()
        if not keep:
            shutil.rmtree(run_dir / "worker-data", ignore_errors=True)
    print(f"\n{meta['date_utc']}, load at start: {meta['uptime_start']}")
    if "table_process" in out:
        print(out["table_process"])
        print()
        print(out["table_recovery"])
    print(f"load at end: {meta['uptime_end']}; total {meta['total_s']:.0f} s; logs in {run_dir}")
    ok = "table_process" in out and all("error" not in r for r in out["restarts"].values())
    out = {"meta": meta, **out}
    for r in [out.get("process", {}), *out.get("restarts", {}).values()]:
        r.pop("log_tail", None)
    write_figures(figures_path(args.json, "scale"), out)
    return 0 if ok else 1


if __name__ == "__main__":
    if is_child_call(sys.argv):
        child_main(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
