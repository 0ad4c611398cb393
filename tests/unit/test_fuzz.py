"""Property-based fuzzing of the processor: whatever bytes arrive, nothing crashes, every record
is accounted for, and a user's state stays bounded and decodable. No broker."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from decay.events import REASONS
from decay.scoring import ExponentialDecayScorer
from decay.state import decode_state
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.store import MemoryStore

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01
NOW = T0 + 30 * DAY
CONFIG = ProcessorConfig(grace_ms=HOUR, threshold=0.25, max_events=16)
# A window of max_events events (22 bytes each), at most 254 category names of at most 255
# bytes, keep_alerts alerts of at most ~64 kB each would be the worst case; real alerts are
# well under 2 kB. The bound checks that nothing grows with the number of events.
STATE_BOUND = 128 + 16 * 22 + 255 * 256 + 4 * 4096

USERS = ["alice", "bob", "carol", "é", "用户", "\u200b", "a" * 256, "x\ud800"]

odd_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff", "e\u0301", "🙂" * 70, "é€" * 100]),
    st.text(min_size=250, max_size=300),
    st.characters(codec="utf-8").map(lambda c: c * 257),
)
timestamps = st.one_of(
    st.integers(min_value=T0 - 2 * DAY, max_value=T0 + 20 * DAY),  # mostly plausible
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**64, 12, NOW + 8 * DAY, 631_152_000_000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["2024-01-02T03:04:05Z", "2024-01-02T03:04:05", "2024-13-45T99:99:99Z"]),
    st.sampled_from(["9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00Z", "last tuesday"]),
    st.text(max_size=45),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    odd_text,
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def event_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Event-shaped objects: every field is right, wrong, odd or missing."""
    obj: dict[str, Any] = {}
    fields = {
        "event_id": st.one_of(st.integers(0, 50).map(lambda i: f"e{i}"), odd_text, json_value),
        "user_id": st.one_of(st.sampled_from(USERS), odd_text, json_value),
        "ts": timestamps,
        "type": st.one_of(
            st.sampled_from(["view", "click", "cart", "purchase", "VIEW", "levitate"]), json_value
        ),
        "item_id": st.one_of(st.none(), odd_text, json_value),
        "category": st.one_of(
            st.sampled_from(["books", "toys", "garden"]),
            st.integers(0, 400).map(lambda i: f"cat-{i}"),
            odd_text,
            json_value,
        ),
        "price": st.one_of(st.floats(), st.integers(-(2**70), 2**70), json_value),
        "quantity": st.one_of(st.integers(-5, 2_000_000), st.floats(), json_value),
    }
    for name, strategy in fields.items():
        if draw(st.integers(0, 9)) < 8:  # each field present most of the time
            obj[name] = draw(strategy)
    if draw(st.booleans()):
        obj["extra"] = draw(json_value)
    if draw(st.integers(0, 30)) == 0:
        obj["pad"] = "x" * draw(st.integers(60_000, 70_000))  # around the size limit
    return obj


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        value: bytes | None = draw(st.binary(max_size=300))
    elif kind == 1:
        depth = draw(st.integers(1, 200_000))
        value = b"[" * depth + b"]" * depth if draw(st.booleans()) else b'{"a":' * depth
    elif kind == 2:
        value = _dumps(draw(json_value))
    elif kind == 3:
        value = None
    else:
        value = _dumps(draw(event_dicts()))
    key_kind = draw(st.integers(0, 5))
    if key_kind == 0:
        key: bytes | None = None
    elif key_kind == 1:
        key = draw(st.binary(max_size=20))
    else:
        try:
            uid = json.loads(value or b"{}").get("user_id")
        except (ValueError, AttributeError, RecursionError):
            uid = None
        key = uid.encode("utf-8", "surrogatepass") if isinstance(uid, str) else b"alice"
    return key, value


def _check(batches: list[list[tuple[bytes | None, bytes | None]]], partitions: int) -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, ExponentialDecayScorer(half_life_s=86400.0), store, lambda: NOW)
    offsets = Counter[int]()
    total = Counter[str]()
    n = 0
    for batch in batches:
        records = []
        for key, value in batch:
            p = hash(key) % partitions
            records.append(Record(p, offsets[p], key, value))
            offsets[p] += 1
        out = proc.process(records)
        n += len(records)
        total.update(out.counts)
        assert out.counts["invalid"] == len(out.dead_letters)
        for dl in out.dead_letters:
            assert dl.reason in REASONS, dl
            assert isinstance(dl.detail, str)
        for alert in out.alerts:
            json.loads(alert.payload)
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
    assert sum(total[r] for r in ("ok", "late", "invalid", "duplicate")) == n, total
    assert total["redelivered"] == 0
    applied = 0
    for _p, users in store.data.items():
        for key, raw in users.items():
            if key.startswith("\x00"):  # the processor's own: watermark, written
                continue
            assert len(raw) <= STATE_BOUND, (key, len(raw))
            state = decode_state(raw)  # every stored state decodes
            assert state.n_events <= CONFIG.max_events
            applied += state.n_total
    assert applied == total["ok"] + total["late"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(messages(), min_size=1, max_size=25), min_size=1, max_size=6))
def test_arbitrary_messages_are_all_accounted_for(batches: list) -> None:
    _check(batches, partitions=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 40),
            st.integers(T0, T0 + 10 * DAY),
            st.one_of(
                st.none(),
                st.integers(0, 400).map(lambda i: f"c{i}"),
                odd_text,
                st.text(st.sampled_from("aé€🙂"), min_size=60, max_size=256),
            ),
        ),
        min_size=1,
        max_size=400,
    )
)
# Found by this test: a 70-emoji category (280 bytes) was cut to 255 bytes mid-character when
# the state was encoded, and the user's state no longer decoded (it was dropped as corrupt).
@example([(0, i, T0 + i * HOUR, "🙂" * 70) for i in range(3)])
@example([(0, i, T0 + i * HOUR, "a" * 256) for i in range(3)])
def test_valid_floods_keep_state_bounded(events: list) -> None:
    """Many valid events for few users, with many distinct (some long, multi-byte) categories
    and repeated event ids: windows, category tables and alerts stay bounded and decodable."""
    msgs = []
    for user, eid, ts, category in events:
        obj = {"event_id": f"e{eid}", "user_id": USERS[user], "ts": ts, "type": "view"}
        if category is not None:
            obj["category"] = category
        msgs.append((USERS[user].encode(), _dumps(obj)))
    _check([msgs[i : i + 50] for i in range(0, len(msgs), 50)], partitions=2)
