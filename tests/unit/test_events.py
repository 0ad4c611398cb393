import json
from collections.abc import Callable
from typing import Any

import pytest

from decay import events as ev
from decay.events import Event, EventType, Invalid, Limits, parse_event

LIMITS = Limits(max_ts_ms=1_800_000_000_000)
GOOD = {"event_id": "e1", "user_id": "u1", "ts": "2024-03-01T10:00:00Z", "type": "view"}


def parse(obj: object, key: bytes | None = None) -> Event | Invalid:
    return parse_event(json.dumps(obj).encode(), key, LIMITS)


def test_valid_event_with_all_fields_and_unknown_ones_ignored() -> None:
    got = parse(
        {**GOOD, "item_id": "i9", "category": "books", "price": 12.5, "quantity": 2, "x": [1]},
        key=b"u1",
    )
    assert got == Event("e1", "u1", 1_709_287_200_000, EventType.VIEW, "i9", "books", 12.5, 2)


def test_item_title_and_query_are_optional_text() -> None:
    got = parse({**GOOD, "item_title": "Trail runner 2, waterproof", "query": "trail shoes"})
    assert isinstance(got, Event)
    assert (got.item_title, got.query) == ("Trail runner 2, waterproof", "trail shoes")
    bare = parse(GOOD)
    assert isinstance(bare, Event) and bare.item_title is None and bare.query is None
    empty = parse({**GOOD, "query": ""})  # an empty search is a search, as an empty item_id is
    assert isinstance(empty, Event) and empty.query == ""


@pytest.mark.parametrize(
    ("ts", "ms"),
    [
        (1_709_287_200_000, 1_709_287_200_000),
        (1_709_287_200_000.0, 1_709_287_200_000),
        ("2024-03-01T11:00:00+01:00", 1_709_287_200_000),
        ("2024-03-01T10:00:00.250Z", 1_709_287_200_250),
    ],
)
def test_timestamp_forms(ts: object, ms: int) -> None:
    got = parse({**GOOD, "ts": ts})
    assert isinstance(got, Event) and got.ts_ms == ms


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", ev.INVALID_JSON),
        (b"\xff\xfe", ev.NOT_UTF8),  # a UTF-16 byte-order mark
        (b'{"user_id": "\xe9"}', ev.NOT_UTF8),  # Latin-1
        (None, ev.INVALID_JSON),
        (b"[1, 2]", ev.NOT_AN_OBJECT),
        (b'"text"', ev.NOT_AN_OBJECT),
        (b"x" * 70_000, ev.TOO_LARGE),
    ],
)
def test_undecodable_messages(raw: bytes | None, reason: str) -> None:
    got = parse_event(raw, None, LIMITS)
    assert isinstance(got, Invalid) and got.reason == reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_id": None}, ev.MISSING_FIELD),
        ({"user_id": None}, ev.MISSING_FIELD),
        ({"type": None}, ev.MISSING_FIELD),
        ({"ts": None}, ev.MISSING_FIELD),
        ({"event_id": 5}, ev.WRONG_TYPE),
        ({"user_id": ["u"]}, ev.WRONG_TYPE),
        ({"type": 3}, ev.WRONG_TYPE),
        ({"category": 3}, ev.WRONG_TYPE),
        ({"price": "9.99"}, ev.WRONG_TYPE),
        ({"price": True}, ev.WRONG_TYPE),
        ({"quantity": 1.5}, ev.WRONG_TYPE),
        ({"ts": "yesterday"}, ev.BAD_TIMESTAMP),
        ({"ts": "2024-03-01T10:00:00"}, ev.BAD_TIMESTAMP),  # no zone: refuse to guess
        ({"ts": True}, ev.BAD_TIMESTAMP),
        ({"ts": 1.5}, ev.BAD_TIMESTAMP),
        ({"ts": 5}, ev.TIMESTAMP_OUT_OF_RANGE),
        ({"ts": 1_900_000_000_000}, ev.TIMESTAMP_OUT_OF_RANGE),
        ({"ts": "1970-01-01T00:00:00Z"}, ev.TIMESTAMP_OUT_OF_RANGE),
        ({"type": "teleport"}, ev.UNKNOWN_EVENT_TYPE),
        ({"user_id": "  "}, ev.INVALID_VALUE),
        ({"user_id": "a\x00b"}, ev.INVALID_VALUE),
        ({"event_id": "e" * 300}, ev.INVALID_VALUE),
        ({"price": -1}, ev.INVALID_VALUE),
        ({"quantity": -2}, ev.INVALID_VALUE),
        ({"item_title": 7}, ev.WRONG_TYPE),
        ({"query": {"q": "shoes"}}, ev.WRONG_TYPE),
        ({"item_title": "t" * 257}, ev.INVALID_VALUE),
        ({"query": "trail\nshoes"}, ev.INVALID_VALUE),
    ],
)
def test_each_reason(change: dict[str, object], reason: str) -> None:
    obj = {**GOOD, **change}
    obj = {k: v for k, v in obj.items() if v is not None}
    got = parse(obj)
    assert isinstance(got, Invalid), got
    assert got.reason == reason, got


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_are_refused(encoding: str) -> None:
    """json.loads would decode them; RFC 8259 requires UTF-8 between systems."""
    raw = json.dumps(GOOD).encode(encoding)
    assert json.loads(raw) == GOOD  # what the worker would have accepted
    got = parse_event(raw, None, LIMITS)
    assert isinstance(got, Invalid) and got.reason == ev.NOT_UTF8, got
    assert got.detail.startswith(encoding.upper()) and "UTF-8" in got.detail


def test_utf8_with_or_without_a_bom_is_accepted() -> None:
    body = json.dumps({**GOOD, "category": "caf\u00e9"}, ensure_ascii=False).encode()
    for raw in (body, b"\xef\xbb\xbf" + body):
        got = parse_event(raw, None, LIMITS)
        assert isinstance(got, Event) and got.category == "caf\u00e9", got


@pytest.mark.parametrize("ts", [1_709_287_200, 1_709_287_200.0])
def test_epoch_seconds_are_named_in_the_detail(ts: object) -> None:
    got = parse({**GOOD, "ts": ts})
    assert got == Invalid(
        ev.TIMESTAMP_OUT_OF_RANGE, "1709287200 looks like epoch seconds; ts is epoch milliseconds"
    )


@pytest.mark.parametrize("ts", [5, 1_900_000_000_000, "1970-01-20T18:48:07.200Z"])
def test_other_out_of_range_timestamps_carry_only_the_ms(ts: object) -> None:
    """Including a string whose ms, read as seconds, would be in range: strings carry units."""
    got = parse({**GOOD, "ts": ts})
    assert isinstance(got, Invalid) and got.reason == ev.TIMESTAMP_OUT_OF_RANGE
    assert "seconds" not in got.detail and got.detail.lstrip("-").isdigit(), got


def test_key_must_match_user() -> None:
    got = parse(GOOD, key=b"someone-else")
    assert isinstance(got, Invalid) and got.reason == ev.KEY_MISMATCH


def test_every_reason_is_exercised() -> None:
    # Keeps this file honest when a reason is added to the contract.
    assert set(ev.REASONS) == {
        ev.INVALID_JSON, ev.NOT_UTF8, ev.NOT_AN_OBJECT, ev.MISSING_FIELD, ev.WRONG_TYPE,
        ev.BAD_TIMESTAMP, ev.TIMESTAMP_OUT_OF_RANGE, ev.UNKNOWN_EVENT_TYPE, ev.INVALID_VALUE,
        ev.TOO_LARGE, ev.KEY_MISMATCH,
    }  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ts": 18446744073709551616, "q": -9223372036854775809, "u": 18446744073709551615}',
        b'{"price": 0.1, "x": 1e-320, "y": 12345678.901234567, "z": 9.2e18}',
        b'{"a": [18446744073709551616], "b": {"c": 1e400}}',
        b'{"a": 1, "a": 2}',
        b'{"a": NaN, "b": Infinity}',
        b'{"id": "\\ud800"}',
        b'{"id": "\xed\xa0\x80"}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": "\u00e9"}'.encode("utf-16"),
        b'{"a": "\x01"}',
        b'{"a": 1} x',
        b"[1, 18446744073709551616]",
        b"[" * 2000 + b"]" * 2000,
        b"",
    ],
)
def test_loads_is_json_loads(raw: bytes) -> None:
    """The fast loader gives what json.loads gives: the same values and types, or the same
    error (its message is the dead-letter detail)."""

    def outcome(load: Callable[[bytes], Any]) -> object:
        try:
            return repr(load(raw))
        except (ValueError, RecursionError) as exc:
            return type(exc), str(exc)

    assert outcome(ev.loads) == outcome(json.loads)


@pytest.mark.parametrize("price", [10**309, 10**4000])
def test_a_price_beyond_any_float_is_an_invalid_value_not_an_overflow(price: int) -> None:
    base = {"event_id": "e1", "user_id": "u1", "type": "view", "ts": 1_700_000_000_000}
    got = parse_event(b'{"price": %d, ' % price + json.dumps(base).encode()[1:], None, LIMITS)
    assert isinstance(got, Invalid) and got.reason == ev.INVALID_VALUE
    assert got.detail == f"price of {len(str(price))} digits"


@pytest.mark.parametrize("price", ["3.5e38", "1e300", str(2**200)])
def test_a_price_beyond_float32_is_an_invalid_value_not_an_infinite_row(price: str) -> None:
    # A state row keeps prices as float32 (decay.state): 3.5e38 would be stored as inf.
    base = {"event_id": "e1", "user_id": "u1", "type": "view", "ts": 1_700_000_000_000}
    got = parse_event(
        b'{"price": %s, ' % price.encode() + json.dumps(base).encode()[1:], None, LIMITS
    )
    assert isinstance(got, Invalid) and got.reason == ev.INVALID_VALUE
    assert got.detail.startswith("price ") and "above 3.403e+38" in got.detail


def test_the_largest_float32_price_is_valid() -> None:
    base = {"event_id": "e1", "user_id": "u1", "type": "view", "ts": 1_700_000_000_000}
    got = parse_event(json.dumps({**base, "price": ev.PRICE_MAX}).encode(), None, LIMITS)
    assert not isinstance(got, Invalid) and got.price == ev.PRICE_MAX
