"""Follow the alerts topic: for ``decay alerts`` and the demo."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from decay.settings import Settings
from decay_kafka.kafka_client import client_kwargs


def format_alert(alert: dict[str, Any]) -> str:
    what = alert["kind"] + (f"[{alert['category']}]" if alert.get("category") else "")
    reasons = "; ".join(alert.get("reasons", []))
    return (
        f"{alert['event_time'][:16]} {what:<10} user={alert['user_id']} "
        f"score={alert['score']:.2f} peak={alert['peak_score']:.2f} | {reasons}"
    )


async def follow_alerts(
    kafka: Settings | str,
    topic: str,
    on_alert: Callable[[dict[str, Any]], None],
    *,
    from_beginning: bool = True,
    max_alerts: int = 0,
    idle_timeout: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Call ``on_alert`` for each alert until ``max_alerts``, ``idle_timeout`` seconds without
    one, or ``stop()`` returns True (checked at each poll). Returns the number seen.
    ``kafka``: the settings to connect with, or a PLAINTEXT bootstrap list."""
    consumer = AIOKafkaConsumer(
        topic,
        **client_kwargs(kafka),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    idle = 0.0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            got = [m for msgs in batches.values() for m in msgs]
            idle = 0.0 if got else idle + 0.5
            for msg in got:
                try:
                    alert = json.loads(msg.value) if msg.value is not None else None
                except ValueError:
                    alert = None
                if not isinstance(alert, dict):
                    continue
                on_alert(alert)
                seen += 1
                if max_alerts and seen >= max_alerts:
                    return seen
            if (idle_timeout and idle >= idle_timeout) or (stop is not None and stop()):
                return seen
    finally:
        await consumer.stop()
