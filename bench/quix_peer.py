"""The Quix Streams contender of bench/throughput.py: what a user would write with Quix instead.

It does the worker's job as far as Quix's per-message model goes: per event, parse the JSON,
drop a record without a user or a time, keep the user's last ``window_events`` events (time,
type, category) in Quix's RocksDB state (changelogged, as the worker's table), score the
interest the user had left just before the event with the exponential decay of the baseline
scorer (I = 2^(-silence/h)) and a decayed activity over the window, and send an alert-like
message to an output topic when the event ends a dormancy (I below the threshold): the
worker's "reengaged". Not done (Quix has no per-key timers): dormancy deadlines that fire
without an event, event-id dedup, categories, the model.

Configured as the worker is: at-least-once, offsets committed every ``commit_interval_s``
(Quix's checkpoint: producer flushed, state flushed, then offsets), changelog topics on,
RocksDB block cache of ``rocksdb_cache_mb`` for the whole process, consumption from the
earliest offset of a fresh consumer group.
"""

from __future__ import annotations

import math
from typing import Any

# State keys of one user (Quix keeps them per message key, in the partition's store).
WINDOW = "w"


def decayed(silent_ms: float, half_life_ms: float) -> float:
    """2^(-silence / h), the baseline's interest after ``silent_ms`` of silence."""
    return float(2.0 ** (-max(silent_ms, 0.0) / half_life_ms))


def step(
    event: dict[str, Any], window: list[list[Any]], max_events: int, half_life_ms: float
) -> tuple[list[list[Any]], float | None, float]:
    """The user's window with ``event`` added (oldest dropped past ``max_events``), the
    interest left just before it (None: first event), and the decayed activity after it."""
    ts = int(event["ts"])
    before = decayed(ts - window[-1][0], half_life_ms) if window else None
    window.append([ts, event.get("type"), event.get("category")])
    if len(window) > max_events:
        del window[: len(window) - max_events]
    activity = sum(decayed(ts - t, half_life_ms) for t, _, _ in window)
    return window, before, activity


def build_quix_app(settings: Any, spec: dict[str, Any], on_processed: Any) -> Any:
    """The Quix application on the run's topic; ``on_processed(topic, partition, offset)``
    after each message (Quix's ``on_message_processed``)."""
    from quixstreams import Application
    from quixstreams.state.rocksdb import RocksDBOptions

    half_life_ms = settings.half_life_hours * 3_600_000.0
    # As the worker with the baseline scorer: its threshold and its 64-event window unless set.
    threshold = settings.dormancy_threshold
    max_events = settings.window_events or 64
    app = Application(
        broker_address=settings.bootstrap,
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        commit_interval=settings.commit_interval_s,
        processing_guarantee="at-least-once",
        state_dir=str(settings.data_dir),
        rocksdb_options=RocksDBOptions(block_cache_size=settings.rocksdb_cache_mb * 2**20),
        use_changelog_topics=True,
        on_message_processed=on_processed,
        loglevel=spec["loglevel"].upper(),
    )
    events = app.topic(settings.events_topic, key_deserializer="str", value_deserializer="json")
    alerts = app.topic(settings.alerts_topic, key_serializer="str", value_serializer="json")

    def score(event: Any, state: Any) -> dict[str, Any] | None:
        if not isinstance(event, dict) or not event.get("user_id") or "ts" not in event:
            return None  # the worker dead-letters these; here they are only dropped
        window, before, activity = step(event, state.get(WINDOW, []), max_events, half_life_ms)
        state.set(WINDOW, window)
        if before is None or before >= threshold:
            return None
        return {
            "user_id": event["user_id"],
            "kind": "reengaged",
            "ts": event["ts"],
            "interest_before": before,
            "activity": activity,
            "silent_h": -math.log2(max(before, 1e-300)) * half_life_ms / 3_600_000.0,
        }

    sdf = app.dataframe(events)
    sdf = sdf.apply(score, stateful=True).filter(lambda alert: alert is not None)
    sdf.to_topic(alerts)
    return app


def run_quix(spec: dict[str, Any], probe: Any, settings: Any) -> None:
    """Run until the probe has seen ``probe.n`` messages processed, then stop (Quix commits
    its last checkpoint on the way out)."""
    count = [0]
    app: Any = None

    def on_processed(topic: str, partition: int, offset: int) -> None:
        count[0] += 1
        if count[0] == 1:
            probe.first()
        if count[0] >= probe.n and not probe.done:
            probe.finish(count[0])
            app.stop()

    app = build_quix_app(settings, spec, on_processed)
    app.run()
