"""Small factories for the integration tests: a worker process, topics, producing, reading.

Everything talks to the real broker started by ``deploy/kafka/kafka.sh`` (conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from decay.settings import Settings
from decay_cli import worker_process
from decay_cli.replay import produce
from decay_cli.worker_process import free_port
from decay_kafka.topics import ensure_topics
from stream_app.app import processor_config
from stream_app.processor import BatchOutput, Processor, Record
from stream_app.rollout import load_scorer, pseudonymizer
from stream_app.store import MemoryStore


@dataclass
class Setup:
    """One isolated deployment: its own topics, consumer group, state dir and HTTP port.

    ``overrides`` are Settings fields; the worker's environment is derived from the same
    Settings object, so a test's in-memory oracle and its worker cannot disagree.
    """

    name: str
    bootstrap: str
    data_dir: Path
    partitions: int = 3
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **more: Any) -> Settings:
        fields: dict[str, Any] = {
            "bootstrap": self.bootstrap,
            "app_id": f"{self.name}-app",
            "events_topic": f"{self.name}-events",
            "alerts_topic": f"{self.name}-alerts",
            "dead_letter_topic": f"{self.name}-dlq",
            "erase_topic": f"{self.name}-erase",
            "partitions": self.partitions,
            "data_dir": self.data_dir,
            "commit_interval_s": 0.5,
            "session_timeout_s": 6.0,
            "log_level": os.environ.get("TEST_WORKER_LOG_LEVEL", "warning"),
        }
        return Settings(**{**fields, **self.overrides, **more})

    def env(self, web_port: int, **more: Any) -> dict[str, str]:
        return worker_process.worker_env(self.settings(web_port=web_port, **more))

    def create_topics(self) -> None:
        asyncio.run(ensure_topics(self.settings()))


class WorkerProcess(worker_process.WorkerProcess):
    """``python -m decay worker`` for a test's Setup (``settings``: Settings fields that
    differ from it), on a free HTTP port."""

    def __init__(
        self,
        setup: Setup,
        log_path: Path,
        command: Sequence[str] = ("-m", "decay", "worker"),
        extra_env: dict[str, str] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(
            setup.settings(web_port=free_port(), **settings), log_path, command, extra_env
        )


def produce_messages(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> None:
    asyncio.run(produce(messages, bootstrap, topic))


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        raise AssertionError(f"topic {topic}: error {described['error_code']}")
    return sorted(p["partition"] for p in described["partitions"])


async def _read_all(bootstrap: str, topic: str, timeout: float, isolation_level: str) -> list[Any]:
    """Every message of a topic, up to its end offsets at the time of the call (for
    read_committed: up to the end of its committed transactions)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout}s")
            batches = await consumer.getmany(*tps, timeout_ms=500)
            for msgs in batches.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


def read_topic(
    bootstrap: str, topic: str, timeout: float = 60.0, isolation_level: str = "read_uncommitted"
) -> list[Any]:
    return asyncio.run(_read_all(bootstrap, topic, timeout, isolation_level))


def read_alerts(
    bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"
) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in read_topic(bootstrap, topic, 60.0, isolation_level)]


def commit_progress(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition: (the group's committed offset, the end offset)."""

    async def check() -> dict[int, tuple[int, int]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
            ends = await consumer.end_offsets(tps)
            return {tp.partition: (await consumer.committed(tp) or 0, ends[tp]) for tp in tps}
        finally:
            await consumer.stop()

    return asyncio.run(check())


def committed_everything(bootstrap: str, group: str, topic: str) -> bool:
    """True when the group's committed offsets reached the end of every partition."""
    return all(c >= end for c, end in commit_progress(bootstrap, group, topic).values())


def run_to_end(worker: WorkerProcess, setup: Setup, total: int, timeout: float = 180) -> None:
    """Wait until the worker saw ``total`` records, committed the whole log and read every
    stored schedule: after a restart or a takeover the stored deadlines are read in a thread,
    and the ones due fire once the schedule is in (stream_app.schedules), maybe after the last
    batch."""
    s = setup.settings()
    worker.wait_for(lambda: worker.events_seen() >= total, timeout, f"{total} records")
    worker.wait_for(
        lambda: committed_everything(s.bootstrap, s.app_id, s.events_topic), 60, "commits"
    )
    worker.wait_for(
        lambda: worker.metrics().get("decay_schedules_loading", 0.0) == 0.0, 60, "schedules read"
    )


def oracle(
    records: Sequence[Record], settings: Settings, now_ms: int, batch: int = 500
) -> tuple[list[BatchOutput], MemoryStore]:
    """The same records through the processor alone, in memory: what the worker must produce."""
    store = MemoryStore()
    proc = Processor(
        processor_config(settings),
        load_scorer(settings),
        store,
        lambda: now_ms,
        pseudonymizer(settings),
    )

    def apply(out: BatchOutput) -> BatchOutput:
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        for p, k in out.deletes:
            store.delete(p, k)
        outs.append(out)
        return out

    outs: list[BatchOutput] = []
    for i in range(0, len(records), batch):
        out = apply(proc.process(records[i : i + batch]))
        # Forwarded events come back through the repartition topic: here, right after.
        copies = [
            Record(f.partition, -1, f.user_id.encode(), f.record.value, f.record.timestamp)
            for f in out.forwards
        ]
        if copies:
            apply(proc.process_forwarded(copies))
    return outs, store


def topic_records(bootstrap: str, topic: str) -> list[Record]:
    """The events topic as the worker sees it: per partition, in offset order."""
    msgs = read_topic(bootstrap, topic)
    msgs.sort(key=lambda m: (m.partition, m.offset))
    return [Record(m.partition, m.offset, m.key, m.value, m.timestamp) for m in msgs]


# aiokafka logs this at ERROR while a fresh broker elects its group coordinator, and retries.
_BENIGN = ("GroupCoordinatorNotAvailableError",)


def worker_log_errors(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    lines = re.findall(r"^.*(?:Traceback|\[ERROR\]).*$", text, flags=re.M)
    return [line for line in lines if not any(b in line for b in _BENIGN)]
