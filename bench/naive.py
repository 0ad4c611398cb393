"""Reference Faust apps for bench/throughput.py: a counting agent and a naive per-event design.

Not production code. Both use exactly the Faust app settings of ``stream_app.app.create_app``
(``stream_app.app.faust_app``), so the only difference from the worker is
what the agent does with each event.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import faust

from decay.events import Invalid, Limits, parse_event
from decay.scoring import ExponentialDecayScorer, Scorer
from decay.settings import Settings
from decay.state import StateError, UserState, decode_state, encode_state
from stream_app.app import faust_app

MAX_FUTURE_MS = 7 * 86_400_000  # as ProcessorConfig.max_future_ms


def events_topic(app: faust.App, settings: Settings) -> Any:
    return app.topic(
        settings.events_topic,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def build_count_app(settings: Settings, probe: Any, stop: Callable[[], None]) -> faust.App:
    """(b) An agent that only counts: Faust's own ceiling on this topic."""
    app = faust_app(settings)
    topic = events_topic(app, settings)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        n = 0
        async for _value in stream:
            if n == 0:
                probe.first()
            n += 1
            if n >= probe.n and not probe.done:
                probe.finish(n)
                stop()

    return app


def build_naive_app(
    settings: Settings, probe: Any, stop: Callable[[], None], scorer: Scorer | None = None
) -> faust.App:
    """(c) The naive design: per event, parse, read the user's state from the RocksDB table,
    update the window, call the scorer for this one window, write the state back.

    ``scorer``: the exp-decay baseline by default (contender ``naive``); the ONNX LSTM for
    ``naive_onnx``, the issue's naive design (one table write and one ONNX call per event).

    Faust's own per-event stream: the table write goes to the partition of the current event
    (and its changelog), offsets are acked event by event. No alert state machine, no
    watermark, no dead-letter topic: it does less than the worker, not more.
    """
    app = faust_app(settings)
    topic = events_topic(app, settings)
    table = app.Table(
        "user-state", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    scorer = scorer or ExponentialDecayScorer(half_life_s=settings.half_life_hours * 3600.0)
    threshold = settings.threshold
    max_events = settings.window_events

    @app.agent(topic)
    async def naive(stream: Any) -> None:
        n = 0
        async for event in stream.events():
            if n == 0:
                probe.first()
            n += 1
            msg = event.message
            limits = Limits(max_ts_ms=int(time.time() * 1000) + MAX_FUTURE_MS)
            parsed = parse_event(msg.value, msg.key, limits)
            if not isinstance(parsed, Invalid):
                key = parsed.user_id.encode()
                raw = table.get(key)
                st = UserState(partition=msg.partition)
                if raw is not None:
                    with contextlib.suppress(StateError):
                        st = decode_state(bytes(raw))
                if not st.has_event(parsed.event_id) and st.add(parsed, msg.offset, max_events):
                    st.partition = msg.partition
                    scores = scorer.score([st.window()], threshold)
                    st.peak_score = float(scores.peak[0])
                    st.half_life_s = float(scores.half_life_s[0])
                    deadline_s = float(scores.deadline_s[0])
                    st.deadline_ms = (
                        st.last_ts_ms + int(deadline_s * 1000) if math.isfinite(deadline_s) else 0
                    )
                    table[key] = encode_state(st)
            if n >= probe.n and not probe.done:
                probe.finish(n)
                stop()

    return app
