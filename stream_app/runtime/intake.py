"""The events topic's records taken from Faust's consumer a whole fetch at a time.

Faust hands each record to an agent through its consumer's drain loop, its conductor and a
stream: about 250 µs of CPU per record here, more than the worker's own processing of it
(docs/performance.md, "Faust without its stream"). The worker commits the events topic itself
(stream_app/runtime/offsets.py) and needs no acks, so it takes that topic's records straight
from each fetch: ``Consumer._drain_messages`` (the loop Faust's Fetcher runs) is replaced by one
that puts the events topic's records of a fetch, per partition, on a queue bounded by records
(a full queue holds the loop, and with it the fetching), and hands every other topic's records
(erase requests, a changelog's records past its highwater in recovery) to Faust's conductor one
by one, as Faust's own loop does; a changelog in recovery is written to RocksDB a fetch at a
time (stream_app/runtime/changelog_bulk.py).

Faust still owns the group, the assignment, the fetching of its active partitions (pauses
during recovery included) and the seek to the committed offsets while its flow is stopped.
Each fetch is tagged with the consumer generation it was made in: the worker drops the ones
of an older generation (their partitions' owners read them again from the committed offset);
a changelog partition whose records are dropped is sought back to them.
This replaces or uses Faust internals (``_drain_messages``, ``_wait_next_records``,
``_to_message``, ``_read_offset``, ``_add_gap``, ``_buffered_partitions``, ``flow_active``,
``seek_wait``)
and sets one of aiokafka's (``_fetch_max_wait_ms`` of the consumer's ``_fetcher``, see
``limit_fetch_wait``): pinned by tests/unit/test_runtime_contract.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import faust

from stream_app.ports import Fetched
from stream_app.runtime.changelog_bulk import ChangelogBulk

log = logging.getLogger(__name__)

# The broker's wait for data of a fetch (see limit_fetch_wait): the longest delay a record
# can take from a partition with traffic while a fetch of idle partitions is out.
FETCH_WAIT_MS = 50


class _Subscription(faust.Topic):
    """Registered with Faust's conductor so that its consumer subscribes to the topic; with
    ``acks=False`` Faust neither tracks nor commits its records, nor waits for them at a
    rebalance. Its records never reach it: the intake takes them first."""


class Fetches:
    """Fetches waiting for the worker, bounded by records: a put waits while ``max_records``
    or more wait (that holds the fetching too; one fetch is let in whatever its size). Taken
    in micro-batches cut by size or by age: a batch is handed out once it has ``max_records``
    records or once its oldest record has waited ``within_s`` since it was fetched, so a
    light load gets short batches and records that waited behind a long batch go at once."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._waiting: deque[Fetched] = deque()
        self._records = 0  # in _waiting
        self._arrived = asyncio.Event()  # set by a put
        self._room = asyncio.Event()  # set while fewer than max_records wait
        self._room.set()

    def backlog(self) -> bool:
        """Whether fetched records wait to be taken."""
        return bool(self._waiting)

    def waiting(self) -> int:
        """Records waiting to be taken."""
        return self._records

    async def put(self, fetched: Fetched) -> None:
        while self._records >= self.max_records:
            self._room.clear()
            await self._room.wait()
        self._waiting.append(fetched)
        self._records += len(fetched.records)
        self._arrived.set()

    async def take(self, max_records: int, within_s: float) -> list[Fetched]:
        """At most ``max_records`` records, at least one (waits for the first fetch). A fetch
        larger than that is handed out in parts, in order."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        cut_at = (self._waiting[0].fetched_at or time.time()) + within_s
        while self._records < max_records and (left := cut_at - time.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        taken: list[Fetched] = []
        n = 0
        while self._waiting and n < max_records:
            head = self._waiting[0]
            room = max_records - n
            if len(head.records) <= room:
                taken.append(self._waiting.popleft())
                n += len(head.records)
            else:
                taken.append(replace(head, records=head.records[:room]))
                self._waiting[0] = replace(head, records=head.records[room:])
                n += room
        self._records -= n
        if self._records < self.max_records:
            self._room.set()
        return taken


def limit_fetch_wait(consumer: Any, wait_ms: int) -> bool:
    """Make the fetches of Faust's aiokafka consumer wait at most ``wait_ms`` at the broker
    for data (Faust builds it with ``fetch_max_wait_ms=1500``); False until that consumer
    and its fetcher exist.

    Why: aiokafka sends one fetch at a time to a broker, and leaves out the partitions whose
    records wait in its buffer. When the intake was slow to take the events partitions' last
    fetch, the next fetch holds only partitions without traffic (erase, repartition), and the
    broker keeps it for the whole wait: the events partitions, taken meanwhile, are fetched
    again only after that. At 1.5 s that was a standing delay of about a second."""
    aio = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(aio, "_fetcher", None)
    if fetcher is None:
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    return True


class Intake:
    def __init__(
        self,
        app: faust.App,
        topic: str,
        on_fetch: Callable[[int], None],
        max_records: int,
        on_changelog: Callable[[int], None],
        fetch_wait_ms: int = FETCH_WAIT_MS,
    ) -> None:
        """``on_fetch(partition)``: called as each fetch of the topic comes, before it waits
        for room in the queue (the worker's tail check counts that as delivered).
        ``max_records``: the records the queue holds before it holds the fetching.
        ``on_changelog(n)``: called with the changelog records of a fetch written to RocksDB
        at once in recovery."""
        self.app = app
        self.topic = topic
        self.on_fetch = on_fetch
        self.fetch_wait_ms = fetch_wait_ms
        self.fetches = Fetches(max_records)
        self.changelog = ChangelogBulk(app, on_changelog)
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
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        wait_limited = False
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                if not wait_limited:  # its aiokafka consumer is made as Faust's starts
                    wait_limited = limit_fetch_wait(consumer, self.fetch_wait_ms)
                records, active = await consumer._wait_next_records(1.0)
                generation = app.consumer_generation_id
                await asyncio.sleep(0)
                if not records or consumer.should_stop:
                    continue
                if not consumer.flow_active:  # as Consumer.getmany: rebalancing
                    await self._put_back_changelogs(consumer, records)
                    try:
                        await consumer.perform_seek()
                    except Exception as exc:  # as Consumer.getmany: the next fetch tries again
                        log.warning("seek to the committed offsets failed: %r", exc)
                    continue
                buffered = consumer._buffered_partitions
                for tp, batch in records.items():
                    if active is not None and tp not in active and tp not in buffered:
                        await self._put_back_changelogs(consumer, {tp: batch})
                        continue
                    if app.consumer_generation_id != generation:
                        break
                    if tp.topic == topic:
                        if not batch:
                            continue
                        self.on_fetch(tp.partition)
                        fetched = Fetched(generation, tp.partition, batch, time.time())
                        await self.fetches.put(fetched)
                        continue
                    # A changelog in recovery goes to RocksDB whole (changelog_bulk.py).
                    rest = self.changelog.apply(consumer, tp, batch)
                    if rest:
                        await self._to_conductor(consumer, tp, rest)
        except consumer.consumer_stopped_errors:
            if app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if app.should_stop:
                return
            raise

    async def _put_back_changelogs(self, consumer: Any, records: Any) -> None:
        """Seek the changelog partitions of a fetch dropped here back to its first records.

        ``perform_seek`` puts back only partitions with a committed offset, and Faust's
        recovery seeks its changelog partitions once, before it resumes the flow. A fetch
        under way when a rebalance stops the flow comes back with the records fetched after
        that seek (aiokafka returns every partition's records when Faust's set of active
        ones is empty, as it is then): dropped without this, they never came again and the
        recovery waited for them until the worker was stopped (seen in CI: "No event
        received for active tp ... since recovery start" every 5 s). Seeking a partition
        back re-reads at most what it has applied, which recovery skips as seen."""
        changelogs = self.app.tables.changelog_topics
        assigned = consumer.assignment()
        back = {
            tp: batch[0].offset
            for tp, batch in records.items()
            if batch and tp.topic in changelogs and tp in assigned
        }
        if not back:
            return
        try:
            await consumer.seek_wait(back)
        except Exception as exc:  # revoked meanwhile: its next owner's recovery reads it
            log.warning("seek of changelog partitions %s back failed: %r", back, exc)

    async def _to_conductor(self, consumer: Any, tp: Any, batch: Any) -> None:
        """Another topic's records of a fetch, to Faust's conductor one message at a time, as
        Faust's own loop hands them."""
        read_offset = consumer._read_offset
        acked = self.app.topics.acks_enabled_for(tp.topic)
        for record in batch:
            if not consumer.flow_active:
                break
            last = read_offset[tp]
            if last is None or record.offset >= last:
                if acked and last and record.offset - last > 1:
                    # Offsets with no record (markers, compaction): Faust's commits of that
                    # topic must be able to pass them.
                    await consumer._add_gap(tp, last + 1, record.offset)
                message = consumer._to_message(tp, record)
                await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
                read_offset[tp] = record.offset
