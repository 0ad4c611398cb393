"""What every benchmark of bench/ shares: where its outputs go, its private broker, topics,
worker child processes and the figures JSON.

Outputs (figures JSON, run logs, scratch state) go under ``var/bench/`` of the checkout, which
git ignores; a benchmark's ``--json`` names another file for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "stream_app" / "models" / "model.onnx"
OUT_DIR = REPO / "var" / "bench"


def free_port() -> int:
    """A free loopback port (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_run_dir(run: str) -> Path:
    """The run's directory under var/bench/runs: the children's logs and scratch state."""
    path = OUT_DIR / "runs" / run
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------ the figures


def add_json_option(parser: argparse.ArgumentParser, bench: str) -> None:
    parser.add_argument(
        "--json",
        type=Path,
        help=f"write the figures here (default: var/bench/{bench}-<UTC time>.json)",
    )


def figures_path(given: Path | None, bench: str) -> Path:
    if given is not None:
        return given
    return OUT_DIR / time.strftime(f"{bench}-%Y%m%d-%H%M%S.json", time.gmtime())


def write_figures(path: Path, doc: dict[str, Any], indent: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=indent, default=str))
    print(f"wrote {path}", flush=True)


def machine_note() -> dict[str, Any]:
    """When and on what a run was measured (goes into every figures JSON)."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiokafka
    import faust

    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "faust": faust.__version__,
        "aiokafka": aiokafka.__version__,
    }


# ------------------------------------------------------------------------ the broker


def add_broker_options(
    parser: argparse.ArgumentParser, port: int, controller_port: int, data_dir: Path
) -> None:
    """Where the benchmark's private broker listens and keeps its data (several benchmarks
    or checkouts on one machine each need their own)."""
    parser.add_argument("--port", type=int, default=port, help="broker client port")
    parser.add_argument(
        "--controller-port", type=int, default=controller_port, help="KRaft controller port"
    )
    parser.add_argument("--broker-dir", type=Path, default=data_dir, help="broker data dir")


def kafka_root() -> Path:
    """The checkout whose deploy/kafka/kafka.sh runs the broker: this one when its jars are
    fetched, else the main checkout of this git worktree (lib/ is git-ignored, so a fresh
    worktree has none), else this one (kafka.sh fetches them)."""
    candidates = [REPO]
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if common:
            candidates.append(Path(common).parent)
    except (OSError, subprocess.SubprocessError):
        pass
    for root in candidates:
        if (root / "deploy" / "kafka" / "lib" / ".complete").is_file():
            return root
    return REPO


def start_broker(
    data_dir: Path, port: int, controller_port: int, extra_props: tuple[str, ...] = ()
) -> Any:
    """The benchmark's own broker (other benchmarks and tests run on the same machine),
    started fresh and with its group coordinator warm."""
    from decay_kafka.kafka_broker import KafkaBroker

    broker = KafkaBroker(
        kafka_root(),
        data_dir=data_dir,
        port=port,
        controller_port=controller_port,
        extra_props=extra_props,
    )
    print(f"broker on {broker.bootstrap} (data {data_dir})", flush=True)
    if broker.is_running():  # a broker left by --keep-broker: restart it with our settings
        broker.stop()
    broker.start()
    asyncio.run(warm_coordinator(broker.bootstrap))
    return broker


async def warm_coordinator(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="bench-warm-up", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.commit({TopicPartition("__warm_up", 0): 0}), 60)
    except Exception:  # the join is what warms the coordinator
        pass
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------ topics


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def count_messages(bootstrap: str, topic: str) -> int:
    """Messages in a topic (sum of end minus beginning offsets); -1 when it does not exist."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            return -1
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        return int(sum(ends[tp] - begins[tp] for tp in tps))
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------ worker processes


def worker_settings_from_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's ``DECAY_*`` variables that are worker settings (``DECAY_BATCH_MAX=...``),
    as Settings field names: a benchmark passes them to its worker in the spec, since
    ``launch_child`` gives the child none of the caller's ``DECAY_*`` variables."""
    from decay.settings import Settings

    env = os.environ if environ is None else environ
    fields = set(Settings.model_fields)
    out = {}
    for name, value in env.items():
        field = name.upper().removeprefix("DECAY_").lower()
        if name.upper().startswith("DECAY_") and field in fields:
            out[field] = value
    return out


def launch_child(
    script: str | Path, spec: dict[str, Any], log_path: Path, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``python SCRIPT _child SPEC_JSON`` from the repo, its output appended to ``log_path``,
    with no DECAY_* variable of the caller's (a benchmark's settings are in the spec).

    ``new_session``: a Ctrl-C in the terminal reaches only the parent, which then stops the
    child gracefully.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECAY_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(Path(script).resolve()), "_child", json.dumps(spec)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def wait_child(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> None:
    """Wait (bounded) for a child's result file ``out``, then give it 90 s to shut down."""
    deadline = time.monotonic() + timeout
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # a file written by another process: there is no event to wait on
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def is_child_call(argv: list[str]) -> bool:
    """This script was started by ``launch_child``."""
    return len(argv) == 3 and argv[1] == "_child"
