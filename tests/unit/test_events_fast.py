"""parse_event's fast path (``usual_event``) against its general path (``parse_any_event``):
the same Event or the same Invalid (reason and detail) for every message of a seeded corpus of
simulated events and systematic mutations of them, and for the fuzzer's messages."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from decay.eventlog import frame_to_records
from decay.events import (
    MAX_CATEGORY_BYTES,
    Event,
    EventType,
    Invalid,
    Limits,
    parse_any_event,
    parse_event,
    usual_event,
    with_user_id,
)
from decay_cli.replay import encode
from tests.unit.test_fuzz import messages
from training.simulate import simulate

LIMITS = Limits(max_ts_ms=1_800_000_000_000)
FIELDS = ("event_id", "user_id", "ts", "type", "item_id", "category", "price", "quantity")
FIELDS += ("item_title", "query", "extra")

# Values put in each field in turn: wrong types, empty and blank strings, control and other
# unprintable characters, non-ASCII, lengths around the limits, bools, floats for ints, huge
# and non-finite numbers, nested values, timestamps in every form.
ODD: list[Any] = [
    *(None, True, False, 0, 1, -1, 7, 1_000_000, 1_000_001, -0.0, 0.0, 1.0, 1.5, 19.99),
    *(2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)),
    *(1e300, 9.2e18, 9.3e18, 1e-320, float("nan"), float("inf"), float("-inf")),
    *("", " ", "  ", " x", "x ", "\t", "\x00", "a\x00", "\x1f", "\x7f", "a\nb", "\x85"),
    *("\xa0", "\u2028", "\u3000", "\u200b", "\ufeff", "\u202e", "e\u0301", "\ud800", "x\udfff"),
    *("é", "用户", "🙂", "🙂" * 63, "🙂" * 64, "é" * 127, "é" * 128, "a" * 255, "a" * 256),
    *("a" * 257, "view", "VIEW", "View", "purchase", "remove_from_cart", "teleport", "u1"),
    *("2024-03-01T10:00:00Z", "2024-03-01T10:00:00z", "2024-03-01T10:00:00+01:00"),
    *("2024-03-01T10:00:00", "2024-13-45T99:99:99Z", "1704067207167", "0001-01-01T00:00:00Z"),
    *(1_704_067_207, 1_704_067_207.0, 1_704_067_207_167, 1_704_067_207_167.0, 1.7e12 + 0.5),
    *(631_152_000_000, 631_151_999_999, 1_800_000_000_000, 1_800_000_000_001),
    *([], [1], ["x"], {}, {"a": 1}, [[[]]], {"a": [2**64]}),
]


def _shape(got: Event | Invalid) -> tuple[object, ...]:
    """Type and repr of every field: ``==`` alone would take 1 for 1.0."""
    values = (getattr(got, f.name) for f in dataclasses.fields(got))
    return (type(got), *((type(v), repr(v)) for v in values))


def _same(raw: bytes | None, key: bytes | None) -> bool:
    """Whether parse_event and the general path agree; True when the fast path decided."""
    got, want = parse_event(raw, key, LIMITS), parse_any_event(raw, key, LIMITS)
    assert _shape(got) == _shape(want), (raw, key, got, want)
    if raw is None or not raw.startswith(b'{"') or len(raw) > LIMITS.max_bytes:
        return False
    fast = usual_event(raw, key, LIMITS)
    assert fast is None or _shape(fast) == _shape(want), (raw, key, fast, want)
    return fast is not None


def _dumps(obj: Any, ascii_only: bool) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def _field_mutations(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for name in FIELDS:
        for value in ODD:
            yield {**record, name: value}
        yield {k: v for k, v in record.items() if k != name}
    yield {**record, "type": record["type"].upper()}
    yield {**record, "user_id": record["user_id"] + "é"}
    yield {"extra": 1, **record}
    yield dict(reversed(record.items()))


def _raw_mutations(raw: bytes) -> Iterator[bytes | None]:
    body = raw[1:-1]
    yield from (None, b"", b"{", b'{"', b'{"}', b"{}", b"[]", b"null", raw + b" ", b" " + raw)
    yield from (b"\xef\xbb\xbf" + raw, raw + b"x", raw[:-1], raw[: len(raw) // 2])
    yield from (raw.decode().encode(enc) for enc in ("utf-16", "utf-16-le", "utf-16-be"))
    yield from (raw.decode().encode(enc) for enc in ("utf-32", "utf-32-le", "utf-32-be"))
    yield from (b"{" + body + b',"user_id":"someone"}', b'{"user_id":"someone",' + body + b"}")
    yield from (b"{" + body + b',"event_id":null}', b"{" + body + b',"EVENT_ID":"x"}')
    yield from (raw.replace(b'"u', b'"\xff'), raw.replace(b'"u', b'"\xc3'), raw + b"\x00")
    yield raw.replace(b'"u', b'"\xed\xa0\x80')  # an encoded lone surrogate
    yield raw.replace(b'"u', b'"\\ud800')  # an escaped one
    yield raw.replace(b'"u', b'"\\u00e9')
    yield raw.replace(b'"u', b'"\\t')
    yield b"{" + body + b',"n":1' + b"0" * 5000 + b"}"  # beyond int's 4300 digits
    for depth in (10, sys.getrecursionlimit() - 40, sys.getrecursionlimit(), 1030, 5000):
        yield b"{" + body + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    pad = LIMITS.max_bytes - len(raw) - len(b',"pad":""')
    for extra in (-1, 0, 1):
        yield b"{" + body + b',"pad":"' + b"x" * (pad + extra) + b'"}'


def _keys(record: dict[str, Any]) -> tuple[bytes | None, ...]:
    uid = record.get("user_id")
    own = uid.encode("utf-8", "surrogatepass") if isinstance(uid, str) else b"u1"
    return own, None, b"", b"someone-else", own + b" "


@pytest.fixture(scope="module")
def simulated() -> list[dict[str, Any]]:
    return frame_to_records(simulate(n_users=1000, days=30.0, seed=11).events)


def test_every_simulated_event_takes_the_fast_path(simulated: list[dict[str, Any]]) -> None:
    assert len(simulated) > 30_000
    for record in simulated:
        key, raw = encode(record)
        assert _same(raw, key), raw
        assert _same(raw, None), raw


def _bases(records: list[dict[str, Any]], each: int) -> list[dict[str, Any]]:
    """The first ``each`` records of every event type and of every set of fields."""
    taken = Counter[object]()
    out = []
    for record in records:
        kinds = (record["type"], tuple(record))
        if any(taken[k] < each for k in kinds):
            out.append(record)
            taken.update(kinds)
    return out


def test_mutated_events_parse_the_same(simulated: list[dict[str, Any]]) -> None:
    """Every mutation of simulated events of every kind and set of fields, as ASCII-only and
    as raw UTF-8 JSON, with matching, missing and wrong keys."""
    bases = _bases(simulated, each=6)
    assert {r["type"] for r in bases} == {t.name.lower() for t in EventType} - {
        "remove_from_cart"  # not simulated; the fields ODD puts in "type" name it
    }
    paths = Counter[bool]()
    for base in bases:
        for record in _field_mutations(base):
            keys = _keys(record)
            for ascii_only in (True, False):
                raw = _dumps(record, ascii_only)
                for key in keys:
                    paths[_same(raw, key)] += 1
        _, raw = encode(base)
        for mutated in _raw_mutations(raw):
            for key in _keys(base):
                paths[_same(mutated, key)] += 1
    # Both paths ran many times: the mutations are not all refused before the fast path.
    assert paths[True] > 10_000 and paths[False] > 50_000, paths


def test_no_printable_character_but_space_is_whitespace() -> None:
    """What the fast path's blank check relies on: a printable string is blank (strip() is
    empty) only when it starts with a space; and NUL is not printable."""
    both = [c for c in range(sys.maxunicode + 1) if chr(c).isspace() and chr(c).isprintable()]
    assert both == [ord(" ")]
    assert not "\x00".isprintable()


def test_category_byte_limit_on_the_fast_path() -> None:
    base = {"event_id": "e1", "user_id": "u1", "ts": 1_709_287_200_000, "type": "view"}
    for category in ("🙂" * 63, "é" * 127, "é" * 128, "a" * 255, "€" * 85, "€" * 86):
        raw = _dumps({**base, "category": category}, ascii_only=False)
        assert _same(raw, b"u1") is (len(category.encode()) <= MAX_CATEGORY_BYTES)


def test_the_fast_constructor_makes_the_dataclass_event() -> None:
    got = usual_event(
        b'{"event_id":"e","user_id":"u","ts":1709287200000,"type":"cart"}', None, LIMITS
    )
    want = Event("e", "u", 1_709_287_200_000, EventType.CART)
    assert got == want and hash(got) == hash(want) and repr(got) == repr(want)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.user_id = "v"  # type: ignore[misc]


@pytest.mark.parametrize(
    "event",
    [
        Event("e", "u", 1, EventType.VIEW),
        Event("e", "u", 1, EventType.SEARCH, "i", "c", 2.5, 3, "title", "query"),
    ],
)
def test_with_user_id_is_replace(event: Event) -> None:
    got = with_user_id(event, "p123")
    assert _shape(got) == _shape(dataclasses.replace(event, user_id="p123"))
    assert event.user_id == "u"


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_fuzzed_messages_parse_the_same(message: tuple[bytes | None, bytes | None]) -> None:
    key, value = message
    _same(value, key)
