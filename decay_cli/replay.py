"""Produce an event log to Kafka, in file order, keyed by user id, with a progress bar."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from decay.eventlog import EventLogError, event_format, frame_to_records, iter_event_records
from decay.settings import Settings
from decay_kafka.kafka_client import client_kwargs

CDNOW: Final = ("cdnow", "cdnow-sample")


def check_source(file: Path | str) -> None:
    """Raise before anything connects when ``file`` cannot be replayed: ``FileNotFoundError``
    (also for CDNOW without its package), ``ValueError`` for a suffix of no event log."""
    if str(file) in CDNOW:
        from decay.eventlog import cdnow_path

        cdnow_path(sample=str(file) == "cdnow-sample")
        return
    path = Path(file)
    event_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no event log {path}")


def _records(file: Path | str, chunk: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    if str(file) in CDNOW:
        from decay.eventlog import cdnow_events

        frame = cdnow_events(sample=str(file) == "cdnow-sample").sort_values("ts", kind="stable")
        records = frame_to_records(frame)
        for i in range(0, len(records), chunk):
            yield records[i : i + chunk]
    else:
        yield from iter_event_records(Path(file), chunk)


def encode(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """Kafka key (the user id) and value (the event as JSON) of one record."""
    return str(record["user_id"]).encode(), json.dumps(record, separators=(",", ":")).encode()


async def produce(
    messages: Iterable[tuple[bytes | None, bytes]],
    kafka: Settings | str,
    topic: str,
    rate: float = 0.0,
    progress: tqdm | None = None,
) -> int:
    """Send (key, value) pairs; at most ``rate`` per second when rate > 0. Returns the count.
    ``kafka``: the settings to connect with, or a PLAINTEXT bootstrap list."""
    producer = AIOKafkaProducer(
        **client_kwargs(kafka), acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if progress is not None:
                progress.update(1)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.005:  # pace to the wall clock: that is what a rate means
                    await asyncio.sleep(ahead)
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def replay_file(
    file: Path | str, kafka: Settings | str, topic: str, rate: float = 0.0
) -> int:
    """Produce ``file`` (see :func:`check_source`) to ``topic``; returns the count. A bad line
    raises :class:`EventLogError` naming it and how many events before it were sent."""

    def messages() -> Iterator[tuple[bytes | None, bytes]]:
        for chunk in _records(file):
            for record in chunk:
                yield encode(record)

    with tqdm(desc=f"replay -> {topic}", unit="ev", mininterval=0.5) as bar:
        try:
            return await produce(messages(), kafka, topic, rate, bar)
        except EventLogError as exc:
            raise EventLogError(f"{exc}; replay stopped, {bar.n} events sent") from None
