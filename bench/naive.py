"""Reference Faust apps for bench/throughput.py: a counting agent, two counting bypasses of
Faust's stream, and a naive per-event design.

Not production code. Both use exactly the Faust app settings of ``stream_app.app.create_app``
(``stream_app.app.faust_app``), so the only difference from the worker is
what the agent does with each event.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import faust
from faust.types import Message

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


BATCH = 2000  # events per counted batch, as the worker's default batch_max


class RawBuffer:
    """Stands in for a topic channel's queue in the conductor's per-partition handler (the
    Cython ``ConductorHandler._put``; conductor.py's ``on_message`` does the same), which calls
    only ``full()`` and ``put_nowait_enhanced()``. It keeps Faust's fetch back-pressure: past
    ``high`` buffered items the handler's ``on_pressure_high`` takes the partition out of the
    fetch (``Consumer.on_buffer_full``), and ``take`` puts it back (``on_buffer_drop``)."""

    def __init__(self, high: int) -> None:
        self.items: list[Any] = []
        self.high = high
        self.ready = asyncio.Event()
        self._drops: set[Callable[[], None]] = set()

    def full(self) -> bool:
        return False  # never make the handler await a put

    def put_nowait_enhanced(
        self,
        value: Any,
        *,
        on_pressure_high: Callable[[], None],
        on_pressure_drop: Callable[[], None],
    ) -> bool:
        self.items.append(value)
        self.ready.set()
        if len(self.items) >= self.high and on_pressure_drop not in self._drops:
            self._drops.add(on_pressure_drop)
            on_pressure_high()
            return True
        return False

    async def take(self) -> list[Any]:
        """Everything buffered (waits for at least one item)."""
        await self.ready.wait()
        items, self.items = self.items, []
        self.ready.clear()
        drops, self._drops = self._drops, set()
        for drop in drops:
            drop()
        return items


class RawTopic(faust.Topic):
    """A subscriber of the events topic that the conductor indexes, subscribes and delivers
    to like an agent's topic, but whose ``decode`` hands over the ``Message`` itself (no
    schema, no ``Event``) into a ``RawBuffer`` instead of a stream's queue."""

    def _compile_decode(self) -> None:
        pass  # Topic.__init__ would shadow ``decode`` below with the schema's decoder

    async def decode(self, message: Message, *, propagate: bool = False) -> Any:
        return message


def count_batches(app: faust.App, buffer: RawBuffer, probe: Any, stop: Callable[[], None]) -> None:
    """An app task counting the buffer's messages in lists of up to ``BATCH``."""

    @app.task
    async def count() -> None:
        n = 0
        while not probe.done:
            items = await buffer.take()
            # All of the first take is in hand at once (as the raw consumer's first fetch).
            probe.first(len(items))
            for start in range(0, len(items), BATCH):
                batch = items[start : start + BATCH]
                n += len(batch)
            if n >= probe.n and not probe.done:
                probe.finish(n)
                stop()


def build_batch_count_app(settings: Settings, probe: Any, stop: Callable[[], None]) -> faust.App:
    """(b') Counts the events topic's messages as the conductor hands them over: no Stream,
    no Event, no ack. Faust still joins the group, assigns, fetches, and runs every message
    through ``Consumer._drain_messages`` (one ``wait_first`` per message) and the conductor's
    handler (flow-control acquire, producer-buffer wait, refcount).

    ``acks=False``: messages are never tracked nor acked (no stream does it), so Faust never
    commits this topic, never waits for these messages in ``wait_empty`` (rebalance, stop),
    records no offset gaps for it, and its livelock detector does not expect acks from it."""
    app = faust_app(settings)
    buffer = RawBuffer(high=app.conf.stream_buffer_maxsize)
    topic = RawTopic(
        app,
        topics=[settings.events_topic],
        partitions=settings.partitions,
        acks=False,
        is_iterator=True,
        queue=buffer,  # type: ignore[arg-type]
    )
    app.topics.add(topic)  # what Topic.__aiter__ does for an agent's channel
    count_batches(app, buffer, probe, stop)
    return app


def build_drain_count_app(settings: Settings, probe: Any, stop: Callable[[], None]) -> faust.App:
    """(b'') One level lower, with the worker's own intake (``stream_app.runtime.intake.Intake``):
    Faust's drain loop replaced by one that takes each fetch of the events topic whole, with
    no ``Message`` objects, conductor or ``wait_first`` per record; an app task counts the
    fetches as the worker's consume task takes them (at most ``BATCH`` records at a time).
    Faust still owns the group, the assignment and the fetching; it never tracks, acks or
    commits these records."""
    from stream_app.runtime.intake import Intake

    app = faust_app(settings)
    intake = Intake(app, settings.events_topic, lambda partition: None, 4 * BATCH, lambda n: None)

    @app.task
    async def count() -> None:
        n = 0
        while not probe.done:
            fetched = await intake.take(BATCH, settings.batch_within_s)
            taken = sum(len(f.records) for f in fetched)
            probe.first(taken)
            n += taken
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
    threshold = settings.dormancy_threshold
    max_events = settings.window_events or 64

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
