"""Which records of a batch are applied, and as what: offsets, validation, routing to the
user's own partition, redelivery and erasure (pass 1 of ``stream_app.processor``)."""

from __future__ import annotations

from collections.abc import Callable

from decay.events import Event, Invalid, Limits, parse_event, with_user_id
from stream_app.batch import BatchOutput, DeadLetter, Forward, Record
from stream_app.partitions import PartitionState
from stream_app.queries import partition_for


class Owners:
    """Each user's own partition, where Kafka's default (murmur2) partitioner puts the user id;
    a bounded cache: murmur2 in Python is ~2 us a call."""

    def __init__(self, partitions: int | None, size: int = 1 << 16) -> None:
        self.partitions = partitions
        self.size = size
        self._cache: dict[str, int] = {}

    def of(self, user_id: str) -> int:
        n = self.partitions
        if n is None:
            raise ValueError("no partition count configured: events are not routed")
        got = self._cache.get(user_id)
        if got is None:
            if len(self._cache) >= self.size:
                self._cache.clear()
            got = self._cache[user_id] = partition_for(user_id.encode(), n)
        return got


def admit(
    rec: Record,
    part: PartitionState,
    resend: bool | None,
    limits: Limits,
    out: BatchOutput,
    start: int,
    owner: Callable[[str], int] | None,
    pseudonymize: Callable[[str], str] | None,
) -> tuple[Event, int] | None:
    """The record's event and the offset its effects count as caused by, or None when it
    is not applied here (held, invalid, forwarded, redelivered, erased). ``start``: where
    the partition's offsets start (the committed offset); ``owner``: a user's own partition,
    when events are routed there."""
    if resend is None:
        again = part.next_offset(rec, start, out)
        if again is None:
            return None
        offset = rec.offset
    else:
        # A forwarded event's alerts and state count as caused by the partition's next
        # events offset: re-sent (same ids) after a crash until a commit passes it; or by
        # none (-1), when delivered before anything else.
        offset, again = (part.last_offset + 1 if resend else -1), False
    parsed = parse_event(rec.value, rec.key, limits)
    if isinstance(parsed, Invalid):
        # Sent again even when redelivered: its first copy may have died with the crash.
        out.dead_letters.append(DeadLetter(rec, parsed.reason, parsed.detail))
        out.counts["invalid"] += 1
        return None
    if resend is None and owner is not None:
        own = owner(parsed.user_id)
        if own != rec.partition:  # sent on even when redelivered, as dead letters are
            out.forwards.append(Forward(rec, own, parsed.user_id))
            out.counts["forwarded"] += 1
            return None
    if again:
        out.counts["redelivered"] += 1
        return None
    if pseudonymize is not None:
        parsed = with_user_id(parsed, pseudonymize(parsed.user_id))
    erased_at = part.erased.get(parsed.user_id) if part.erased else None
    if erased_at is not None and rec.timestamp <= erased_at:
        out.counts["dropped_erased"] += 1  # produced before its user's erase request
        return None
    return parsed, offset
