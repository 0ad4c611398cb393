"""Events on a partition that is not their user's own are forwarded, and erasure covers the
user's events produced before the request, wherever they are (stream_app.processor)."""

from __future__ import annotations

import json

from decay import alerts as al
from decay.events import INVALID_VALUE, MISSING_FIELD, Invalid, parse_erase_request
from decay.scoring import ExponentialDecayScorer
from stream_app.processor import (
    ERASED_PREFIX,
    BatchOutput,
    Processor,
    ProcessorConfig,
    Record,
    erased_key,
)
from stream_app.queries import partition_for
from stream_app.store import MemoryStore

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000
NOW = T0 + 400 * DAY
PARTITIONS = 4
CONFIG = ProcessorConfig(grace_ms=HOUR, threshold=0.25, partitions=PARTITIONS, erase_hold_ms=DAY)
SCORER = ExponentialDecayScorer(half_life_s=24 * 3600.0)


def own(user: str) -> int:
    return partition_for(user.encode(), PARTITIONS)


def other(user: str) -> int:
    return (own(user) + 1) % PARTITIONS


def event(partition: int, offset: int, user: str, ts: int, record_ts: int = 0, key: bool = True):
    value = {"event_id": f"{user}-{ts}", "user_id": user, "ts": ts, "type": "view"}
    return Record(
        partition, offset, user.encode() if key else None, json.dumps(value).encode(), record_ts
    )


def apply(store: MemoryStore, out: BatchOutput) -> BatchOutput:
    for (p, k), v in out.writes.items():
        store.put(p, k, v)
    for p, k in out.deletes:
        store.delete(p, k)
    return out


def forwarded_copy(out: BatchOutput, offset: int) -> Record:
    """What the repartition topic hands back for a forward: keyed by the user, on its own
    partition, the record time kept."""
    (fw,) = out.forwards
    return Record(fw.partition, offset, fw.user_id.encode(), fw.record.value, fw.record.timestamp)


def test_an_event_on_another_partition_is_forwarded_then_applied_on_the_users_own() -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW)
    elsewhere = other("alice")
    out = apply(store, proc.process([event(elsewhere, 0, "alice", T0, key=False)]))
    assert out.counts["forwarded"] == 1 and out.counts["ok"] == 0
    assert [(f.partition, f.user_id) for f in out.forwards] == [(own("alice"), "alice")]
    assert proc.commit_offsets() == {elsewhere: 1}  # the forwarded record is done with here
    assert store.get(elsewhere, "alice") is None

    copy = forwarded_copy(out, 0)
    out = apply(store, proc.process_forwarded([copy]))
    assert out.counts["ok"] == 1
    assert store.get(own("alice"), "alice") is not None
    # The same copy delivered again is a duplicate, not a second event.
    again = apply(store, proc.process_forwarded([copy]))
    assert again.counts["duplicate"] == 1 and again.counts["ok"] == 0


def test_an_event_on_its_users_own_partition_is_applied_there() -> None:
    proc = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW)
    out = proc.process([event(own("bob"), 0, "bob", T0)])
    assert out.counts["ok"] == 1 and out.forwards == []


def test_a_redelivered_misplaced_event_is_forwarded_again() -> None:
    """Its first copy may have died with the crash; the user's partition drops a second one."""
    store = MemoryStore()
    first = Processor(CONFIG, SCORER, store, lambda: NOW)
    rec = event(other("carol"), 0, "carol", T0)
    apply(store, first.process([rec]))
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
    out = restarted.process([rec])
    assert out.counts["forwarded"] == 1 and len(out.forwards) == 1


def test_erase_drops_the_users_events_produced_before_it_that_arrive_later() -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW)
    p = own("dave")
    apply(store, proc.process([event(p, 0, "dave", T0, record_ts=T0)]))
    erased_at = T0 + 10 * HOUR
    out = apply(store, proc.erase(p, 0, "dave", erased_at))
    (confirmation,) = [json.loads(a.payload) for a in out.alerts]
    assert confirmation["kind"] == al.ERASED
    assert "1 events" in confirmation["reasons"][0]
    assert store.get(p, "dave") is None

    # A backlog of events produced before the erase request, then one produced after it.
    backlog = [event(p, 1 + i, "dave", T0 + i * HOUR, record_ts=T0 + i * HOUR) for i in range(5)]
    after = event(p, 6, "dave", T0 + 11 * HOUR, record_ts=erased_at + 1)
    out = apply(store, proc.process(backlog))
    assert out.counts["dropped_erased"] == 5 and store.get(p, "dave") is None

    # The marker survives a restart: a new processor reads it from the store.
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
    late = event(p, 7, "dave", T0 + 2 * HOUR + 1, record_ts=T0 + 2 * HOUR)
    out = apply(store, restarted.process([after, late]))
    assert out.counts["ok"] == 1 and out.counts["dropped_erased"] == 1
    assert restarted.users_tracked() == 1

    # Forwarded copies are covered too.
    copy = Record(p, 0, b"dave", late.value, late.timestamp)
    assert restarted.process_forwarded([copy]).counts["dropped_erased"] == 1


def test_the_erasure_marker_goes_once_the_partition_is_past_the_hold() -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW)
    p = own("erin")
    apply(store, proc.erase(p, 0, "erin", T0))
    assert store.get(p, erased_key("erin")) is not None
    other_user = next(u for u in (f"u{i}" for i in range(100)) if own(u) == p)
    apply(store, proc.process([event(p, 0, other_user, T0, record_ts=T0 + DAY // 2)]))
    assert store.get(p, erased_key("erin")) is not None  # within the hold
    apply(store, proc.process([event(p, 1, other_user, T0 + 1, record_ts=T0 + DAY + 1)]))
    assert store.get(p, erased_key("erin")) is None
    assert not any(k.startswith(ERASED_PREFIX) for k in store.data[p])


def test_erase_request_parsing() -> None:
    assert parse_erase_request(b"ignored", b"alice") == "alice"
    assert parse_erase_request(b"bob", None) == "bob"
    missing = parse_erase_request(None, None)
    assert isinstance(missing, Invalid) and missing.reason == MISSING_FIELD
    for bad in (b"x" * 10_000, b"\xff\xfe", b"\x00evil", b"   "):
        got = parse_erase_request(None, bad)
        assert isinstance(got, Invalid) and got.reason == INVALID_VALUE, bad[:10]


def two_users_of(partition: int) -> list[str]:
    return [u for u in (f"u{i}" for i in range(200)) if own(u) == partition][:2]


def dormant_by_forwarded_copies(proc: Processor, store: MemoryStore, resend: bool) -> int:
    """Forwarded copies only: the first user goes dormant when the second one's event moves
    the watermark 50 h on. Returns the partition."""
    p = own("u0")
    first, second = two_users_of(p)
    copies = [event(p, 0, first, T0), event(p, 1, second, T0 + 50 * HOUR + HOUR)]
    out = apply(store, proc.process_forwarded(copies, resend=resend))
    assert [json.loads(a.payload)["kind"] for a in out.alerts] == ["dormant"]
    return p


def test_a_forwarded_events_alerts_are_resent_after_a_crash_unless_delivered() -> None:
    for resend, resent in ((True, 1), (False, 0)):
        store = MemoryStore()
        p = dormant_by_forwarded_copies(
            Processor(CONFIG, SCORER, store, lambda: NOW), store, resend
        )
        # A crash: a new processor takes the partition over from its committed offset (0,
        # nothing of the events topic committed); its first record is one of the events topic.
        restarted = Processor(CONFIG, SCORER, store, lambda: NOW)
        restarted.committed = {p: 0}
        out = restarted.process([event(p, 0, two_users_of(p)[1], T0 + 51 * HOUR)])
        assert out.resent == resent, resend
