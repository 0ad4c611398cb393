"""How a partition taken on is rebuilt from the state table: its clock, erasure markers,
category trends and deadline schedule, with what the last owner may not have delivered
re-sent (see ``activate``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future

from decay import alerts as al
from decay.state import StateError, decode_state, peek_state
from decay.trends import CategoryTrends, TrendRules, TrendStateError, is_trend_key
from stream_app.batch import BatchOutput, OutAlert, StateStore
from stream_app.partitions import (
    ERASED_PREFIX,
    TREND_PREFIX,
    WATERMARK_KEY,
    WRITTEN_KEY,
    Loaded,
    PartitionState,
    unpack_erased,
    unpack_watermark,
    unpack_written,
)

log = logging.getLogger(__name__)


def activate(
    store: StateStore,
    partition: int,
    first_offset: int,
    out: BatchOutput,
    trend_rules: TrendRules | None = None,
) -> PartitionState:
    """Rebuild a partition's state: its clock, erasure markers and deadline schedule.

    Records from ``first_offset`` on were not committed, so whatever processing them had
    produced may not have reached the broker before a crash: re-send the alerts they emitted
    (same ids) and re-write the states they touched (so the changelog has them); that needs
    every user read before the first record is applied. When the partition's WRITTEN_KEY
    says no user holds such an offset (the usual restart), the schedule is read in a thread
    instead, and the partition applies records meanwhile (see PartitionState.loading).
    The partition's category trends come back from their records.
    """
    max_ts, last_offset = unpack_watermark(store.get(partition, WATERMARK_KEY))
    part = PartitionState(max_ts=max_ts, last_offset=last_offset)
    for key, value in store.scan(partition, ERASED_PREFIX):
        part.erased[key[len(ERASED_PREFIX) :]] = unpack_erased(value)
    trend_records = {k: v for k, v in store.scan(partition, TREND_PREFIX) if is_trend_key(k)}
    part.trends = restore_trends(partition, trend_records, trend_rules or TrendRules())
    written = store.get(partition, WRITTEN_KEY)
    part.max_written = unpack_written(written)
    if written is not None and part.max_written < first_offset:
        part.loading = _read_schedule_in_thread(store, partition)
        log.info(
            "partition %d active from offset %d: reading its schedule", *(partition, first_offset)
        )
        return part
    current, users = _resend_and_schedule(store, partition, first_offset, out)
    part.current, part.users = current, users
    part.heap = _sorted_heap(current)
    part.max_written = max(part.max_written, last_offset)
    log.info(
        "partition %d active from offset %d: %d pending deadlines, %d alerts re-sent",
        *(partition, first_offset, len(part.current), out.resent),
    )
    return part


def _resend_and_schedule(
    store: StateStore, partition: int, first_offset: int, out: BatchOutput
) -> tuple[dict[str, int], int]:
    """Every stored user's pending deadline, and the count of users; what was stored from
    ``first_offset`` on re-written and its alerts re-sent. Only the header of each state is
    read, but for the few users touched since the commit."""
    current: dict[str, int] = {}
    users = 0
    for user_id, value in store.scan(partition):
        if user_id.startswith("\x00"):  # not a user: the watermark, erasure markers
            continue
        users += 1
        try:
            head = peek_state(value)
            if head.last_offset >= first_offset or head.max_cause_offset >= first_offset:
                alerts = decode_state(value).alerts
            else:
                alerts = []
        except StateError:
            log.exception("dropping undecodable state of a user in partition %d", partition)
            continue
        if head.deadline_ms and not head.dormant_since_ms:
            current[user_id] = head.deadline_ms
        if head.last_offset >= first_offset:
            out.writes[(partition, user_id)] = value
        for stored in alerts:
            if stored.cause_offset >= first_offset:
                kind = al.Alert.from_json(stored.payload).kind
                out.alerts.append(OutAlert(partition, user_id, kind, stored.payload))
                out.resent += 1
    return current, users


def _sorted_heap(current: dict[str, int]) -> list[tuple[int, str]]:
    return sorted((d, u) for u, d in current.items())


def _read_schedule(stored: Iterable[tuple[str, bytes]], partition: int) -> Loaded:
    """Every stored user's pending deadline, from the headers alone."""
    current: dict[str, int] = {}
    users = 0
    for user_id, value in stored:
        if user_id.startswith("\x00"):
            continue
        users += 1
        try:
            head = peek_state(value)
        except StateError:
            log.exception("dropping undecodable state of a user in partition %d", partition)
            continue
        if head.deadline_ms and not head.dormant_since_ms:
            current[user_id] = head.deadline_ms
    return current, _sorted_heap(current), users


def _read_schedule_in_thread(store: StateStore, partition: int) -> Future[Loaded]:
    """``_read_schedule`` in a daemon thread (a stopping worker does not wait for it), of
    the users as they are now: those the batches write meanwhile are counted by them."""
    done: Future[Loaded] = Future()
    stored = store.scan(partition)

    def read() -> None:
        try:
            done.set_result(_read_schedule(stored, partition))
        except BaseException as exc:  # handed to the batch that takes the result in
            done.set_exception(exc)

    threading.Thread(target=read, name=f"decay-schedule-{partition}", daemon=True).start()
    return done


def restore_trends(partition: int, records: dict[str, bytes], rules: TrendRules) -> CategoryTrends:
    try:
        return CategoryTrends.restore(records, rules)
    except TrendStateError:
        # Derived data: losing it costs the trend history, never a user's state or alert.
        log.exception("category trends of partition %d unreadable; starting anew", partition)
        return CategoryTrends(rules=rules)
