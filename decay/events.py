"""The event contract: parse and validate one message from the events topic.

Pure logic (no I/O). A message either becomes an :class:`Event` or an :class:`Invalid`
carrying a stable reason code; the stream app sends the latter to the dead-letter topic.
Unknown JSON fields are ignored, as the contract says.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import numpy as np
import orjson

from decay.event_json import is_plain, loads, parse_timestamp


class EventType(IntEnum):
    """Known event kinds; the integer is the code stored in state and fed to the model."""

    VIEW = 0
    CLICK = 1
    CART = 2
    PURCHASE = 3
    WISHLIST = 4
    SEARCH = 5
    REMOVE_FROM_CART = 6
    OTHER = 7


EVENT_TYPES: Final[dict[str, EventType]] = {t.name.lower(): t for t in EventType}

# Dead-letter reason codes. Stable strings: they are metric labels and part of the DLQ record.
INVALID_JSON: Final = "invalid_json"
NOT_UTF8: Final = "not_utf8"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
BAD_TIMESTAMP: Final = "bad_timestamp"
TIMESTAMP_OUT_OF_RANGE: Final = "timestamp_out_of_range"
UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
INVALID_VALUE: Final = "invalid_value"
TOO_LARGE: Final = "too_large"
KEY_MISMATCH: Final = "key_mismatch"
REASONS: Final = (
    INVALID_JSON,
    NOT_UTF8,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    BAD_TIMESTAMP,
    TIMESTAMP_OUT_OF_RANGE,
    UNKNOWN_EVENT_TYPE,
    INVALID_VALUE,
    TOO_LARGE,
    KEY_MISMATCH,
)

MIN_TS_MS: Final = 631_152_000_000  # 1990-01-01T00:00:00Z: nothing older is e-commerce data
MAX_ID_LEN: Final = 256
MAX_TEXT_LEN: Final = 256
# A category name is kept in the user's state with a one-byte length (decay.state): a longer
# one would be cut there, mid-character or not, and no longer match its events' category.
MAX_CATEGORY_BYTES: Final = 255


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    user_id: str
    ts_ms: int
    type: EventType
    item_id: str | None = None
    category: str | None = None
    price: float | None = None
    quantity: int | None = None
    # Free text the sentence encoder reads (decay.embeddings): the viewed item's title and the
    # search query; at most MAX_TEXT_LEN characters, printable, like the other strings.
    item_title: str | None = None
    query: str | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of a sane message. ``max_ts_ms`` is wall clock plus allowed skew, set by the caller
    so that this module never reads the clock itself."""

    max_ts_ms: int
    min_ts_ms: int = MIN_TS_MS
    max_bytes: int = 64 * 1024


_SET: Final = tuple(getattr(Event, f.name).__set__ for f in dataclasses.fields(Event))


def _new_event(
    event_id: str,
    user_id: str,
    ts_ms: int,
    kind: EventType,
    item_id: str | None,
    category: str | None,
    price: float | None,
    quantity: int | None,
    item_title: str | None,
    query: str | None,
) -> Event:
    """``Event(...)`` in half the time: sets the slots (in the order of Event's fields) directly,
    not by name through ``object.__setattr__`` as the frozen dataclass does. Event has no
    ``__post_init__``."""
    e = object.__new__(Event)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = _SET
    s0(e, event_id)
    s1(e, user_id)
    s2(e, ts_ms)
    s3(e, kind)
    s4(e, item_id)
    s5(e, category)
    s6(e, price)
    s7(e, quantity)
    s8(e, item_title)
    s9(e, query)
    return e


def with_user_id(event: Event, user_id: str) -> Event:
    """``dataclasses.replace(event, user_id=user_id)``, four times faster."""
    return _new_event(
        event.event_id,
        user_id,
        event.ts_ms,
        event.type,
        event.item_id,
        event.category,
        event.price,
        event.quantity,
        event.item_title,
        event.query,
    )


_FLOAT_MAX: Final = int(sys.float_info.max)
# The largest price a state row holds (float32, decay.state): above it the row would keep inf.
PRICE_MAX: Final = float(np.finfo(np.float32).max)
# The contract's fields, as JSON keys: Event's, with ts for ts_ms.
_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Event)) - {"ts_ms"} | {"ts"}


def _text(obj: dict[str, Any], name: str, required: bool) -> str | Invalid | None:
    value = obj.get(name)
    if value is None:
        return Invalid(MISSING_FIELD, name) if required else None
    if not isinstance(value, str):
        return Invalid(WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    limit = MAX_ID_LEN if name.endswith("_id") else MAX_TEXT_LEN
    if required and not value.strip():
        return Invalid(INVALID_VALUE, f"{name} is empty")
    if len(value) > limit:
        return Invalid(INVALID_VALUE, f"{name} longer than {limit} characters")
    if value and (value[0] == "\x00" or not value.isprintable()):
        return Invalid(INVALID_VALUE, f"{name} holds control characters")
    if name == "category" and len(value.encode()) > MAX_CATEGORY_BYTES:
        return Invalid(INVALID_VALUE, f"{name} longer than {MAX_CATEGORY_BYTES} bytes in UTF-8")
    return value


def _out_of_range(value: Any, ts_ms: int, limits: Limits) -> str:
    """The detail of a timestamp out of range: the epoch ms, and a hint when a number in epoch
    seconds (a common producer mistake) would have been in range."""
    if not isinstance(value, str) and limits.min_ts_ms <= ts_ms * 1000 <= limits.max_ts_ms:
        return f"{ts_ms} looks like epoch seconds; ts is epoch milliseconds"
    return str(ts_ms)


def parse_event(raw: bytes | None, key: bytes | None, limits: Limits) -> Event | Invalid:
    """Parse one message value (and its key, which must equal ``user_id`` when present)."""
    # json.detect_encoding says UTF-8 for anything starting '{"': no BOM, no zero byte.
    if raw is not None and len(raw) <= limits.max_bytes and raw.startswith(b'{"'):
        event = usual_event(raw, key, limits)
        if event is not None:
            return event
    return parse_any_event(raw, key, limits)


def usual_event(raw: bytes, key: bytes | None, limits: Limits) -> Event | None:
    """The event of a usual valid message (``raw`` starts with '{"', within max_bytes) as
    :func:`parse_any_event` gives it, or None for anything else, valid or not, left to that
    general path. Its checks, inline, on exact types (orjson makes no subclasses)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    get = obj.get
    event_id = get("event_id")
    user_id = get("user_id")
    kind = get("type")
    ts = get("ts")
    if (
        type(event_id) is not str
        or type(user_id) is not str
        or type(kind) is not str
        or not (0 < len(event_id) <= MAX_ID_LEN and 0 < len(user_id) <= MAX_ID_LEN)
        # Printable and not starting with a space: not blank, as no other whitespace is
        # printable (str.isspace, str.isprintable; a test checks every code point).
        or event_id[0] == " "
        or user_id[0] == " "
        or not event_id.isprintable()
        or not user_id.isprintable()
    ):
        return None
    event_type = EVENT_TYPES.get(kind)  # lower case already: else the general path
    ts = ts if type(ts) is int else parse_timestamp(ts)
    if event_type is None or ts is None or not limits.min_ts_ms <= ts <= limits.max_ts_ms:
        return None
    item_id = get("item_id")
    category = get("category")
    item_title = get("item_title")
    query = get("query")
    if not _usual_texts(item_id, category, item_title, query):
        return None
    price = get("price")
    if type(price) is int and price >= 0:
        price = float(price)
    elif price is not None and not (type(price) is float and 0.0 <= price < 2.0**63):
        return None  # beyond 2**63, json might have read an integer: the general path
    quantity = get("quantity")
    if quantity is not None and (type(quantity) is not int or not 0 <= quantity <= 1_000_000):
        return None
    if key is not None and key != user_id.encode():
        return None
    # An unknown field that is not plain sends loads to json, which may refuse the message.
    if not _FIELDS.issuperset(obj) and not is_plain(obj):
        return None
    return _new_event(
        event_id, user_id, ts, event_type, item_id, category, price, quantity, item_title, query
    )


def _usual_texts(item_id: Any, category: Any, item_title: Any, query: Any) -> bool:
    """Whether the optional text fields are valid (:func:`_text`), each absent or a string."""
    if item_id is not None and (
        type(item_id) is not str or len(item_id) > MAX_ID_LEN or not item_id.isprintable()
    ):
        return False
    if category is not None and (
        type(category) is not str
        or len(category) > MAX_TEXT_LEN
        or not category.isprintable()
        # At most 4 bytes a character: 63 characters are at most 252 bytes.
        or (len(category) > 63 and len(category.encode()) > MAX_CATEGORY_BYTES)
    ):
        return False
    if item_title is None and query is None:
        return True
    return all(
        text is None or (type(text) is str and len(text) <= MAX_TEXT_LEN and text.isprintable())
        for text in (item_title, query)
    )


def parse_any_event(raw: bytes | None, key: bytes | None, limits: Limits) -> Event | Invalid:
    """:func:`parse_event` without its fast path: any message, valid or not."""
    if raw is None:
        return Invalid(INVALID_JSON, "empty message")
    if len(raw) > limits.max_bytes:
        return Invalid(TOO_LARGE, f"{len(raw)} bytes > {limits.max_bytes}")
    # RFC 8259 (8.1): JSON exchanged between systems is UTF-8. json.loads would detect and
    # decode UTF-16 and UTF-32 (by BOM or by the zero bytes of the first characters).
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        return Invalid(NOT_UTF8, f"{encoding.upper()}; JSON must be UTF-8 (RFC 8259)")
    try:
        obj = loads(raw)
    except UnicodeDecodeError as exc:
        return Invalid(NOT_UTF8, str(exc)[:200])
    except (ValueError, RecursionError) as exc:
        return Invalid(INVALID_JSON, str(exc)[:200])
    if not isinstance(obj, dict):
        return Invalid(NOT_AN_OBJECT, f"top level is {type(obj).__name__}")

    fields: dict[str, str | None] = {}
    for name, required in (
        ("event_id", True),
        ("user_id", True),
        ("item_id", False),
        ("category", False),
        ("item_title", False),
        ("query", False),
    ):
        got = _text(obj, name, required)
        if isinstance(got, Invalid):
            return got
        fields[name] = got

    kind = obj.get("type")
    if kind is None:
        return Invalid(MISSING_FIELD, "type")
    if not isinstance(kind, str):
        return Invalid(WRONG_TYPE, f"type must be a string, got {type(kind).__name__}")
    event_type = EVENT_TYPES.get(kind.lower())
    if event_type is None:
        return Invalid(UNKNOWN_EVENT_TYPE, kind[:64])

    if "ts" not in obj or obj["ts"] is None:
        return Invalid(MISSING_FIELD, "ts")
    ts_ms = parse_timestamp(obj["ts"])
    if ts_ms is None:
        return Invalid(BAD_TIMESTAMP, repr(obj["ts"])[:64])
    if not limits.min_ts_ms <= ts_ms <= limits.max_ts_ms:
        return Invalid(TIMESTAMP_OUT_OF_RANGE, _out_of_range(obj["ts"], ts_ms, limits))

    price = obj.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, int | float):
            return Invalid(WRONG_TYPE, f"price must be a number, got {type(price).__name__}")
        if type(price) is int and abs(price) > _FLOAT_MAX:  # float(price) would overflow
            return Invalid(INVALID_VALUE, f"price of {len(str(abs(price)))} digits")
        if not math.isfinite(price) or price < 0:
            return Invalid(INVALID_VALUE, f"price {price!r}")
        if price > PRICE_MAX:
            return Invalid(INVALID_VALUE, f"price {price!r} above {PRICE_MAX:.4g}")
        price = float(price)
    quantity = obj.get("quantity")
    if quantity is not None:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            return Invalid(
                WRONG_TYPE, f"quantity must be an integer, got {type(quantity).__name__}"
            )
        if not 0 <= quantity <= 1_000_000:
            return Invalid(INVALID_VALUE, f"quantity {quantity}")

    user_id = fields["user_id"]
    event_id = fields["event_id"]
    assert user_id is not None and event_id is not None
    if key is not None and key != user_id.encode():
        return Invalid(KEY_MISMATCH, "message key differs from user_id")
    return Event(
        event_id=event_id,
        user_id=user_id,
        ts_ms=ts_ms,
        type=event_type,
        item_id=fields["item_id"],
        category=fields["category"],
        price=price,
        quantity=quantity,
        item_title=fields["item_title"],
        query=fields["query"],
    )


def parse_erase_request(raw: bytes | None, key: bytes | None) -> str | Invalid:
    """The user id of an erase request: its key, else its value (UTF-8), valid as an event's
    ``user_id`` is."""
    data = key or raw
    if not data:
        return Invalid(MISSING_FIELD, "erase request without a user id (key or value)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(INVALID_VALUE, f"erase request's user id is not UTF-8: {exc}"[:200])
    got = _text({"user_id": text}, "user_id", True)
    assert got is not None  # required: None only for an absent optional field
    return got
