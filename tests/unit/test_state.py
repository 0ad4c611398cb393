import numpy as np
import pytest

from decay import stored_alerts
from decay.engagement import Engagement
from decay.events import Event, EventType
from decay.state import (
    StateError,
    StoredAlert,
    UserState,
    decode_state,
    encode_state,
    encode_states,
    peek_state,
)


def event(i: int, ts: int, cat: str | None = "books") -> Event:
    return Event(f"e{i}", "u1", ts, EventType(i % 4), f"i{i}", cat, float(i), 1)


def filled(n: int, max_events: int = 64) -> UserState:
    st = UserState(partition=3)
    for i in range(n):
        st.add(event(i, 1_000_000 + i * 60_000, cat=f"c{i % 5}" if i % 7 else None), i, max_events)
    return st


def test_round_trip_is_exact() -> None:
    st = filled(40)
    st.deadline_ms, st.dormant_since_ms, st.peak_score, st.half_life_s = 123, 0, 0.75, 3600.0
    st.remember_alert(StoredAlert(17, b'{"kind":"dormant"}'), keep=4, unconfirmed_from=0)
    back = decode_state(encode_state(st))
    assert encode_state(back) == encode_state(st)
    assert back.categories == st.categories and back.alerts == st.alerts
    np.testing.assert_array_equal(back.ts, st.ts)
    np.testing.assert_array_equal(back.ids, st.ids)
    assert back.category_names() == st.category_names()


def test_window_is_bounded_sorted_and_counts_everything() -> None:
    st = filled(100, max_events=64)
    assert st.n_events == 64 and st.n_total == 100
    assert np.all(np.diff(st.ts) >= 0)
    assert st.first_ts_ms == 1_000_000  # first ever, not first in window
    assert len(encode_state(st)) < 64 * 22 + 200  # compact: about 22 bytes an event


def test_out_of_order_insert_and_duplicates() -> None:
    st = UserState()
    assert st.add(event(1, 2000), 0, 4)
    assert st.add(event(2, 1000), 1, 4)  # late but within the window: inserted in order
    assert st.ts.tolist() == [1000, 2000]
    assert st.has_event("e1") and not st.has_event("e9")
    for i in range(3, 6):
        st.add(event(i, 3000 + i), i, 4)
    assert not st.add(event(9, 10), 9, 4)  # older than a full window


def test_categories_pruned_when_evicted() -> None:
    st = UserState()
    st.add(event(0, 1, cat="old"), 0, 2)
    st.add(event(1, 2, cat="new"), 1, 2)
    st.add(event(2, 3, cat="new"), 2, 2)
    assert st.categories == ["new"] and st.category_names() == ["new", "new"]


def test_corrupt_record_raises_state_error() -> None:
    raw = encode_state(filled(3))
    with pytest.raises(StateError):
        decode_state(raw[:-3])
    with pytest.raises(StateError):
        decode_state(b"\x09" + raw[1:])


def test_unconfirmed_alerts_are_kept_beyond_the_last_few() -> None:
    st = UserState()
    for offset in range(10):
        st.remember_alert(StoredAlert(offset, b"{}"), keep=4, unconfirmed_from=3)
    assert [a.cause_offset for a in st.alerts] == list(range(3, 10))
    for offset in range(10, 12):
        st.remember_alert(StoredAlert(offset, b"{}"), keep=4, unconfirmed_from=11)
    assert [a.cause_offset for a in st.alerts] == [8, 9, 10, 11]


def test_peek_reads_what_a_restart_needs_from_the_header_alone() -> None:
    from decay.state import StoredAlert, peek_state

    st = UserState(partition=3, last_offset=41, deadline_ms=1_704_067_200_000)
    st.alerts = [StoredAlert(17, b"{}"), StoredAlert(45, b"{}")]
    head = peek_state(encode_state(st))
    assert (head.last_offset, head.deadline_ms, head.dormant_since_ms) == (41, st.deadline_ms, 0)
    assert head.max_cause_offset == 45
    assert peek_state(encode_state(UserState())).max_cause_offset == -1


def test_the_model_state_round_trips_and_a_version_1_record_still_reads() -> None:
    import struct

    st = filled(5)
    st.model_state = bytes(range(176))
    back = decode_state(encode_state(st))
    assert back.model_state == st.model_state and back.n_total == 5
    with pytest.raises(StateError):
        decode_state(encode_state(st)[:-200])  # cut inside the model state
    # version 1: no sessions, no max_cause_offset, no model state
    v1 = struct.Struct("<BBhqIqqqffBBH").pack(1, 0, 3, 7, 1, 1000, 0, 0, 0.5, 60.0, 0, 0, 1)
    v1 += struct.pack("<q", 1000) + bytes([0, 255]) + struct.pack("<fQ", 0.0, 42) + bytes([0])
    old = decode_state(v1)
    assert (old.n_total, old.last_offset, old.ts.tolist(), old.model_state) == (1, 7, [1000], b"")


def test_alerts_are_stored_deflated_and_older_records_still_read() -> None:
    import struct

    from decay import alerts as al

    payload = al.Alert(
        alert_id="dormant:c1:1998-01-01T12:00:00.000Z",
        kind="dormant",
        user_id="c1",
        category=None,
        score=0.125,
        peak_score=0.31,
        half_life_hours=612.3,
        event_time="1998-01-01T12:00:00.000Z",
        emitted_at="2026-12-01T11:23:00.123Z",
        model_version="lstm-btyd-fs1-6f87449be60a",
        reasons=al.dormant_reasons(41 * 86_400_000, 30 * 86_400_000, 0.31, 0.125, 4),
        explanation=["the 3 cart events in running shoes on May 2 raised interest most (+0.21)"],
    ).to_json()
    st = filled(3)
    st.remember_alert(StoredAlert(17, payload), keep=4, unconfirmed_from=0)
    raw = encode_state(st)
    assert raw[0] == 4 and len(raw) < len(encode_state(filled(3))) + len(payload) // 3
    assert decode_state(raw).alerts == [StoredAlert(17, payload)]
    # version 2: the same header, the alert's JSON as it is
    v2 = bytearray(encode_state(filled(3)))
    v2[0] = 2
    struct.pack_into("<B", v2, struct.calcsize("<BBhqIqqqffB"), 1)  # n_alerts
    struct.pack_into("<q", v2, struct.calcsize("<BBhqIqqqffBBHI"), 17)  # max_cause_offset
    v2 += struct.pack("<qH", 17, len(payload)) + payload
    old = decode_state(bytes(v2))
    assert old.alerts == [StoredAlert(17, payload)] and old.n_total == 3
    assert encode_state(old) == raw  # rewritten as version 4
    # version 3: the alert deflated with version 3's dictionary, read with it, written anew
    v3 = bytearray(raw[: len(raw) - len(st.alerts[0].packed) - 10])
    v3[0] = 3
    packed3 = stored_alerts._deflate(payload, 3)
    assert len(packed3) > len(st.alerts[0].packed)  # the explanation's words cost more there
    v3 += struct.pack("<qH", 17, len(packed3)) + packed3
    three = decode_state(bytes(v3))
    assert (
        three.alerts == [StoredAlert(17, payload)] and peek_state(bytes(v3)).max_cause_offset == 17
    )
    assert encode_state(three) == raw


def test_the_window_kept_as_bytes_matches_a_plain_model_of_it() -> None:
    """Inserts in time order (ties after), evictions and category pruning, as a list of
    events kept sorted would have them: ``add`` keeps the rows as bytes, not as numpy."""
    import bisect
    import random

    from decay.rows import Snapshot

    rng = random.Random(5)
    for max_events in (1, 3, 10):
        st, model = UserState(), []  # model: (ts, id, category) sorted by ts, ties in order
        shots = []
        for i in range(300):
            ts = rng.randrange(0, 5000) if rng.random() < 0.3 else 5000 + i * 10
            cat = rng.choice([None, "a", "b", "c", "d", "e"])
            added = st.add(event(i, ts, cat), i, max_events)
            full = len(model) >= max_events
            assert added == (not full or ts >= model[0][0])
            if added:
                model.insert(bisect.bisect_right([m[0] for m in model], ts), (ts, f"e{i}", cat))
                model = model[-max_events:]
            assert st.ts.tolist() == [m[0] for m in model]
            assert st.category_names() == [m[2] for m in model]
            assert set(st.categories) == {m[2] for m in model} - {None}
            assert all(st.has_event(m[1]) for m in model) and not st.has_event(f"e{i + 1}")
            assert st.n_events == len(model) and st.last_ts_ms == model[-1][0]
            shots.append((Snapshot(st), list(model)))
        for shot, then in shots[::37]:  # a snapshot holds its moment, renumbering and all
            w = shot.window
            names = [None if c == 255 else w.categories[c] for c in w.cats.tolist()]
            assert w.ts.tolist() == [m[0] for m in then] and names == [m[2] for m in then]
        Snapshot.prepare([s for s, _ in shots])  # one array for all: the same windows
        for shot, then in shots:
            assert shot.window.ts.tolist() == [m[0] for m in then]


def test_an_id_is_found_only_where_ids_are() -> None:
    """The duplicate check searches the rows' bytes: the id's 8 bytes elsewhere in a row
    (in a time, across two fields) are not the id."""
    import struct

    from decay.rows import holds_id

    h = 0x0123456789ABCDEF
    key = struct.pack("<Q", h)

    def rows(*at: int) -> bytes:  # two 22-byte rows of zeros, the key at these offsets
        raw = bytearray(44)
        for i in at:
            raw[i : i + 8] = key
        return bytes(raw)

    assert not holds_id(rows(), h)
    assert not holds_id(rows(0), h) and not holds_id(rows(5), h) and not holds_id(rows(20), h)
    assert holds_id(rows(14), h) and holds_id(rows(36), h)
    assert holds_id(rows(5, 36), h)  # past a misplaced match to the real one
    st = filled(3)
    assert st.has_event("e1") and not st.has_event("e7")


def test_rows_put_in_from_elsewhere_are_what_add_goes_on_from() -> None:
    st = filled(5, max_events=8)
    other = filled(2, max_events=8).rows
    st.rows = other
    st.add(event(9, 2_000_000, cat="c1"), 9, 8)
    assert st.ts.tolist() == [*other["ts"].tolist(), 2_000_000]
    assert decode_state(encode_state(st)).ts.tolist() == st.ts.tolist()


def test_a_batch_of_states_encodes_as_each_one_alone() -> None:
    decoded = decode_state(encode_state(filled(12)))  # rows as an array, no bytes yet
    changed = filled(6)
    changed.rows = filled(3).rows.copy()
    changed.packed()
    changed.ts[0] = 5  # changed in place, after its bytes were made
    wide = filled(4)  # rows of another layout (unpacked, wider fields): converted
    wide.rows = wide.rows.astype([(n, "<i8") for n in ("ts", "type", "cat", "price", "id")])
    with_alert = filled(30)
    with_alert.remember_alert(StoredAlert(9, b'{"kind":"dormant"}'), keep=4, unconfirmed_from=0)
    with_alert.engagement["c1"] = Engagement(1.5, 7, 3, 2, True)  # a name the rows have
    with_alert.engagement["films"] = Engagement(0.5, 9, 1, 1, False)
    states = [filled(40), UserState(), decoded, changed, wide, with_alert, filled(1)]
    assert encode_states(states) == [encode_state(st) for st in states]
    assert encode_states([]) == []
