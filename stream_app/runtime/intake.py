"""The events topic's records taken from Faust's consumer a whole fetch at a time.

Faust hands each record to an agent through its consumer's drain loop, its conductor and a
stream: about 250 µs of CPU per record here, more than the worker's own processing of it
(docs/performance.md, "Faust without its stream"). The worker commits the events topic itself
(stream_app/runtime/offsets.py) and needs no acks, so it takes that topic's records straight
from each fetch: ``Consumer._drain_messages`` (the loop Faust's Fetcher runs) is replaced by one
that puts the events topic's records of a fetch, per partition, on a bounded queue (a full queue
holds the loop, and with it the fetching), and hands every other topic's records (changelogs in
recovery, erase requests) to Faust's conductor one by one, as Faust's own loop does.

Faust still owns the group, the assignment, the fetching of its active partitions (pauses
during recovery included) and the seek to the committed offsets while its flow is stopped.
Each fetch is tagged with the consumer generation it was made in: the worker drops the ones
of an older generation (their partitions' owners read them again from the committed offset).
This replaces or uses Faust internals (``_drain_messages``, ``_wait_next_records``,
``_to_message``, ``_read_offset``, ``_add_gap``, ``_buffered_partitions``, ``flow_active``):
pinned by tests/unit/test_runtime_contract.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import faust

from stream_app.ports import Fetched

log = logging.getLogger(__name__)


class _Subscription(faust.Topic):
    """Registered with Faust's conductor so that its consumer subscribes to the topic; with
    ``acks=False`` Faust neither tracks nor commits its records, nor waits for them at a
    rebalance. Its records never reach it: the intake takes them first."""


class Fetches:
    """A bounded queue of fetches, taken in micro-batches of at most a number of records."""

    def __init__(self, max_fetches: int) -> None:
        self.queue: asyncio.Queue[Fetched] = asyncio.Queue(maxsize=max_fetches)
        self._pending: deque[Fetched] = deque()  # taken from the queue, not yet handed out

    def backlog(self) -> bool:
        """Whether fetched records wait to be taken."""
        return bool(self._pending) or not self.queue.empty()

    async def put(self, fetched: Fetched) -> None:
        """Waits while the queue is full: that holds the fetching too."""
        await self.queue.put(fetched)

    async def take(self, max_records: int, within_s: float) -> list[Fetched]:
        """At most ``max_records`` records, at least one: what is waiting, and more until
        ``max_records`` or ``within_s``. A fetch larger than that is handed out in parts."""
        if not self._pending:
            self._pending.append(await self.queue.get())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        taken: list[Fetched] = []
        n = 0
        while n < max_records:
            if not self._pending:
                try:
                    if self.queue.empty():
                        left = deadline - loop.time()
                        if left <= 0:
                            break
                        self._pending.append(await asyncio.wait_for(self.queue.get(), left))
                    else:
                        self._pending.append(self.queue.get_nowait())
                except TimeoutError:
                    break
            head = self._pending[0]
            room = max_records - n
            if len(head.records) <= room:
                taken.append(self._pending.popleft())
                n += len(head.records)
            else:
                taken.append(Fetched(head.generation, head.partition, head.records[:room]))
                self._pending[0] = Fetched(head.generation, head.partition, head.records[room:])
                n += room
        return taken


class Intake:
    def __init__(
        self,
        app: faust.App,
        topic: str,
        on_fetch: Callable[[int], None],
        max_fetches: int = 4,
    ) -> None:
        """``on_fetch(partition)``: called as each fetch of the topic comes, before it waits
        for room in the queue (the worker's tail check counts that as delivered)."""
        self.app = app
        self.topic = topic
        self.on_fetch = on_fetch
        self.fetches = Fetches(max_fetches)
        app.topics.add(_Subscription(app, topics=[topic], acks=False))
        app.consumer._drain_messages = self._drain  # type: ignore[attr-defined]

    async def take(self, max_records: int, within_s: float) -> list[Fetched]:
        return await self.fetches.take(max_records, within_s)

    def backlog(self) -> bool:
        return self.fetches.backlog()

    async def _drain(self, fetcher: Any) -> None:
        """Faust's ``Consumer._drain_messages`` with the events topic taken out whole."""
        app, topic = self.app, self.topic
        consumer: Any = app.consumer  # Faust's internals used here are not in its stubs
        on_message = consumer.callback
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = consumer._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await consumer._wait_next_records(1.0)
                generation = app.consumer_generation_id
                await asyncio.sleep(0)
                if not records or consumer.should_stop:
                    continue
                if not consumer.flow_active:  # as Consumer.getmany: rebalancing
                    try:
                        await consumer.perform_seek()
                    except Exception as exc:  # as Consumer.getmany: the next fetch tries again
                        log.warning("seek to the committed offsets failed: %r", exc)
                    continue
                buffered = consumer._buffered_partitions
                for tp, batch in records.items():
                    if active is not None and tp not in active and tp not in buffered:
                        continue
                    if app.consumer_generation_id != generation:
                        break
                    if tp.topic == topic:
                        if not batch:
                            continue
                        self.on_fetch(tp.partition)
                        await self.fetches.put(Fetched(generation, tp.partition, batch))
                        continue
                    acked = acks_enabled_for(tp.topic)
                    for record in batch:  # as Faust's loop, one message at a time
                        if not consumer.flow_active:
                            break
                        last = read_offset[tp]
                        if last is None or record.offset >= last:
                            if acked and last and record.offset - last > 1:
                                # Offsets with no record (markers, compaction): Faust's
                                # commits of that topic must be able to pass them.
                                await consumer._add_gap(tp, last + 1, record.offset)
                            message = consumer._to_message(tp, record)
                            await consumer.wait_first(
                                on_message(message),
                                consumer.suspend_flow.wait(),
                            )
                            read_offset[tp] = record.offset
        except consumer.consumer_stopped_errors:
            if app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if app.should_stop:
                return
            raise
