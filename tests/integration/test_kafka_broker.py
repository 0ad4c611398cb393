"""The real broker works end to end: topic creation via the Kafka CLI, produce and consume;
the ``decay`` commands and the README's console consumer against it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from decay_kafka.kafka_broker import KafkaBroker

N_MESSAGES = 100
PARTITIONS = 3
DEADLINE_S = 30.0


async def _produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(N_MESSAGES):
            await producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str) -> dict[bytes, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        got: dict[bytes, int] = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < N_MESSAGES and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    assert record.value is not None
                    got[record.value] = tp.partition
        return got
    finally:
        await consumer.stop()


@pytest.mark.kafka
def test_create_topic_produce_consume(kafka_broker: KafkaBroker, bootstrap: str) -> None:
    topic = "it-broker-smoke"
    created = kafka_broker.run_tool(
        "topics",
        "--bootstrap-server", bootstrap,
        "--create", "--topic", topic,
        "--partitions", str(PARTITIONS), "--replication-factor", "1",
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr

    asyncio.run(_produce(bootstrap, topic))
    got = asyncio.run(_consume(bootstrap, topic))

    assert sorted(got) == sorted(f"v{i}".encode() for i in range(N_MESSAGES))
    assert set(got.values()) == set(range(PARTITIONS))  # the keys spread over all partitions


def _decay(broker: KafkaBroker, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``decay ARGS`` as a user runs it, with only the given DECAY_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DECAY_")}
    return subprocess.run(
        [sys.executable, "-m", "decay", *args],
        env={**base, **env},
        cwd=broker.repo_root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.kafka
def test_decay_kafka_uses_the_kafka_sh_variables(kafka_broker: KafkaBroker) -> None:
    """The session broker runs on its own ports and dir: ``decay kafka`` finds it there."""
    env = {
        "DECAY_KAFKA_PORT": str(kafka_broker.port),
        "DECAY_KAFKA_CONTROLLER_PORT": str(kafka_broker.controller_port),
        "DECAY_KAFKA_DIR": str(kafka_broker.data_dir),
    }
    for command in ("status", "start"):  # start: idempotent, the broker is already up
        proc = _decay(kafka_broker, "kafka", command, **env)
        assert (proc.returncode, proc.stdout) == (0, f"kafka running on {kafka_broker.bootstrap}\n")
        assert proc.stderr == ""


@pytest.mark.kafka
def test_replay_names_the_bad_line_of_the_file(
    kafka_broker: KafkaBroker, bootstrap: str, tmp_path: Path
) -> None:
    good = {"event_id": "e1", "user_id": "u1", "ts": 1_709_287_200_000, "type": "view"}
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(good) + "\n{bad\n")
    proc = _decay(kafka_broker, "replay", str(path), "--bootstrap", bootstrap)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(
        f"ERROR decay.replay: {path} line 2, column 2: Expecting property name enclosed in "
        "double quotes; replay stopped, 0 events sent"
    )


@pytest.mark.kafka
def test_the_readme_console_consumer_prints_only_the_records(
    kafka_broker: KafkaBroker, bootstrap: str
) -> None:
    """The README's kafka-console-consumer command (Kafka prints its deprecation warnings into
    stdout, among the records)."""
    readme = (kafka_broker.repo_root / "README.md").read_text()
    found = re.search(r"kafka\.sh tool console-consumer (.*?[^\\])\n", readme, re.S)
    assert found is not None
    args = shlex.split(found.group(1).replace("\\\n", " "))
    topic = "it-readme-alerts"
    args[args.index("--bootstrap-server") + 1] = bootstrap
    args[args.index("--topic") + 1] = topic

    async def one_alert() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=b"u1", value=b'{"kind": "dormant"}')
        finally:
            await producer.stop()

    asyncio.run(one_alert())
    proc = kafka_broker.run_tool(
        "console-consumer", *args, "--max-messages", "1", "--timeout-ms", "60000"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'u1\t{"kind": "dormant"}\n'
