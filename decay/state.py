"""Per-user state: the last N events plus the alert state, and its compact binary encoding.

Pure logic. One record per user lives in a RocksDB table (and its changelog), so the record is
bytes in a fixed little-endian layout, not JSON: a 64-event window takes 1,408 bytes.

Layout (version 4; versions 1 to 3 are still read: version 1's category entries had only
peak and fired, versions 1 and 2 stored each alert's JSON as it is, version 3 deflated it with
a shorter dictionary)::

    header  <BBhqIqqqffBBHIqH version, flags, partition, last_offset, n_total, first_ts_ms,
                              deadline_ms, dormant_since_ms, peak_score, half_life_s,
                              n_categories, n_alerts, n_events, sessions,
                              max_cause_offset (of the alerts below; -1: none), model_len
    events  ts int64[n] | type uint8[n] | category uint8[n] | price float32[n] | id uint64[n]
    model   bytes[model_len]: the incremental scorer's state of this user, opaque here (the
            lapse step model's h, c and counters: decay.lapse_state; empty for window scorers)
    cats    per category of the window: name length uint8, utf-8 name
    engage  count uint8; per category: name length uint8, utf-8 name, activity float32,
            last_ts_ms int64, visits uint32, at_session uint32, fired uint8
            (decay.engagement.Engagement)
    alerts  per alert: cause_offset int64, length uint16, the alert JSON deflated (raw
            deflate) with the version's preset dictionary, decay.stored_alerts.DICTIONARIES
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decay.engagement import Engagement
from decay.events import Event
from decay.rows import (
    CAT_AT,
    EVENT_DTYPE,
    ID,
    ROW,
    ROW_KEYED,
    TS,
    event_id_hash,
    holds_id,
    holds_key,
    id_key,
    rows_of,
    window_of,
)
from decay.state_layout import ALERT_HEAD as _ALERT_HEAD
from decay.state_layout import CAT_TAIL as _CAT_TAIL
from decay.state_layout import CAT_TAIL_V1 as _CAT_TAIL_V1
from decay.state_layout import COLUMNS as _COLUMNS
from decay.state_layout import HEADER as _HEADER
from decay.state_layout import HEADER_V1 as _HEADER_V1
from decay.state_layout import VERSION as VERSION
from decay.state_layout import WIDTHS as _WIDTHS
from decay.state_layout import record, row_order
from decay.stored_alerts import StateError, StoredAlert
from decay.window import NO_CATEGORY as NO_CATEGORY_
from decay.window import Window

NO_CATEGORY: Final = NO_CATEGORY_
MAX_CATEGORIES: Final = 254
MAX_ALERTS: Final = 255  # a hard bound on the alerts one state record holds


@dataclass(slots=True)
class UserState:
    """One user's window (sorted by event time, oldest first) and alert state."""

    partition: int = 0
    last_offset: int = -1
    n_total: int = 0
    first_ts_ms: int = 0
    deadline_ms: int = 0  # 0: no pending dormancy deadline
    dormant_since_ms: int = 0  # 0: no open dormancy episode; else the deadline that fired
    peak_score: float = 0.0  # interest right after the last event
    half_life_s: float = 0.0  # of the interest curve computed at the last event
    # EVENT_DTYPE records, oldest first (``rows``); None: only in ``_raw`` as yet (a new
    # state's no rows: b"", cheaper than an empty array made for each).
    _rows: Any = field(default=None, repr=False)
    categories: list[str] = field(default_factory=list)
    # Category alert state by name: (peak interest, decay alert sent). Kept apart from the
    # window's category list, which event insertion prunes, so that only the alert logic
    # (run in event order) changes it.
    engagement: dict[str, Engagement] = field(default_factory=dict)
    sessions: int = 0  # the user's sessions so far (decay.engagement)
    alerts: list[StoredAlert] = field(default_factory=list)
    model_state: bytes = b""  # an incremental scorer's own record of this user (opaque)
    # The rows as bytes, as ``add`` keeps them (a numpy array per event costs more than all
    # the rest of it), made of ``_raw_of`` (None: of no array, ``_rows`` is made from it).
    _raw: bytes | None = field(default=b"", repr=False, compare=False)
    _raw_of: Any = field(default=None, repr=False, compare=False)

    @property
    def rows(self) -> Any:
        rows = self._rows
        if rows is None:
            rows = self._rows = self._raw_of = rows_of(self.packed())
        return rows

    @rows.setter
    def rows(self, rows: Any) -> None:
        self._rows = rows

    def packed(self) -> bytes:
        raw = self._raw
        if raw is None or self._raw_of is not self._rows:  # rows put in from elsewhere
            raw = self._raw = self._rows.tobytes()
            self._raw_of = self._rows
        return raw

    @property
    def ts(self) -> npt.NDArray[np.int64]:
        return self.rows["ts"]

    @property
    def types(self) -> npt.NDArray[np.uint8]:
        return self.rows["type"]

    @property
    def cats(self) -> npt.NDArray[np.uint8]:
        return self.rows["cat"]

    @property
    def prices(self) -> npt.NDArray[np.float32]:
        return self.rows["price"]

    @property
    def ids(self) -> npt.NDArray[np.uint64]:
        return self.rows["id"]

    @property
    def n_events(self) -> int:
        return len(self.packed()) // ROW.size

    @property
    def last_ts_ms(self) -> int:
        raw = self.packed()
        return int(TS.unpack_from(raw, len(raw) - ROW.size)[0]) if raw else 0

    def has_event(self, event_id: str, id_hash: int | None = None) -> bool:
        """Whether the window holds this event (``id_hash``: its event_id_hash, if known)."""
        return holds_id(self.packed(), event_id_hash(event_id) if id_hash is None else id_hash)

    def category_names(self) -> list[str | None]:
        """Category name of each event in the window (None where the event had none)."""
        names = self.categories
        return [None if c == NO_CATEGORY else names[c] for c in self.packed()[CAT_AT :: ROW.size]]

    def add(self, event: Event, offset: int, max_events: int, id_hash: int | None = None) -> bool:
        """Insert an event in time order, keeping the newest ``max_events`` (``id_hash``: the
        event's event_id_hash, if the caller has it already).

        Returns False when the event is older than every event of a full window (it would be
        evicted at once); the caller counts it as late.
        """
        key = id_key(event.event_id) if id_hash is None else ID.pack(id_hash)
        return self._put(event, offset, max_events, key, self.packed())

    def add_new(self, event: Event, offset: int, max_events: int) -> bool | None:
        """``add``, unless the window holds the event already (then None)."""
        key = id_key(event.event_id)
        raw = self.packed()
        if holds_key(raw, key):
            return None
        return self._put(event, offset, max_events, key, raw)

    def _put(self, event: Event, offset: int, max_events: int, key: bytes, raw: bytes) -> bool:
        """``add`` of an event whose id hash is ``key`` (ID.pack) to the rows ``raw``."""
        size = ROW.size
        n, ts = len(raw) // size, event.ts_ms
        if n >= max_events and ts < TS.unpack_from(raw, 0)[0]:
            return False
        name, names = event.category, self.categories
        if name is None:
            cat = NO_CATEGORY
        elif name in names:
            cat = names.index(name)
        else:
            cat = self._category_index(name)  # may renumber the rows' categories
            raw = self.packed()
        price = event.price if event.price is not None else 0.0
        try:
            record = ROW_KEYED.pack(ts, event.type, cat, price, key)
        except OverflowError:  # a price beyond float32: numpy stores inf, as it always did
            one = np.empty(1, dtype=EVENT_DTYPE)
            one[0] = (ts, int(event.type), cat, price, int.from_bytes(key, "little"))
            record = one.tobytes()
        # New bytes each time (never changed in place): snapshots hold the old ones.
        if n == 0 or ts >= TS.unpack_from(raw, len(raw) - size)[0]:  # newest: usual
            raw += record
        else:
            at = int(np.searchsorted(self.ts, ts, side="right")) * size
            raw = raw[:at] + record + raw[at:]
        evicted = n + 1 - max_events
        if evicted > 0:
            raw = raw[evicted * size :]
        self._raw, self._raw_of, self._rows = raw, None, None  # an array made when read
        if n == 0 or ts < self.first_ts_ms:
            self.first_ts_ms = ts
        self.n_total += 1
        if offset > self.last_offset:
            self.last_offset = offset
        if evicted > 0:
            self._prune_categories()
        return True

    def window(self) -> Window:
        """An immutable snapshot for scoring. Cheap: ``add`` replaces arrays, never mutates."""
        return window_of(self.rows, self.categories, self.n_total, self.first_ts_ms)

    def remember_alert(self, alert: StoredAlert, keep: int, unconfirmed_from: int) -> None:
        """Keep the last ``keep`` alerts, and every alert caused by a record at or after
        ``unconfirmed_from`` (the partition's committed offset): after a crash those are the
        ones that may never have reached the broker, and must be sent again."""
        self.alerts.append(alert)
        if len(self.alerts) > keep:
            older = [a for a in self.alerts[:-keep] if a.cause_offset >= unconfirmed_from]
            self.alerts = (older + self.alerts[-keep:])[-MAX_ALERTS:]

    def _category_index(self, name: str | None) -> int:
        if name is None:
            return NO_CATEGORY
        if name in self.categories:
            return self.categories.index(name)
        if len(self.categories) >= MAX_CATEGORIES:
            self._prune_categories()
            if len(self.categories) >= MAX_CATEGORIES:
                return NO_CATEGORY
        self.categories = [*self.categories, name]  # a new list: snapshots hold the old one
        return len(self.categories) - 1

    def _prune_categories(self) -> None:
        """Forget categories no event in the window refers to; renumber the rest."""
        raw = self.packed()
        in_use = set(raw[CAT_AT :: ROW.size])
        in_use.discard(NO_CATEGORY)
        if len(in_use) == len(self.categories):
            return
        used = sorted(in_use)
        remap = {old: new for new, old in enumerate(used)}
        renumbered = bytearray(raw)
        renumbered[CAT_AT :: ROW.size] = bytes(
            remap.get(c, NO_CATEGORY) for c in raw[CAT_AT :: ROW.size]
        )
        self._raw, self._raw_of, self._rows = bytes(renumbered), None, None
        self.categories = [self.categories[i] for i in used]


def encode_state(state: UserState) -> bytes:
    rows = state.rows
    columns = [rows[name].astype(dtype, copy=False).tobytes() for name, dtype in _COLUMNS]
    return record(state, len(rows), columns, {})


def encode_states(states: list[UserState]) -> list[bytes]:
    """``encode_state`` of each, the event columns of all cut from one array (a few numpy
    calls a batch instead of five a user), each category name encoded once."""
    raws: list[bytes | None] = []
    for st in states:
        rows = st._rows
        if rows is None:
            raws.append(st._raw or b"")
        elif rows.dtype == EVENT_DTYPE:
            raws.append(rows.tobytes())  # what encode_state reads: the rows as they are now
        else:  # rows put in from elsewhere, of another layout: converted one by one
            raws.append(None)
    rows = np.frombuffer(b"".join([r for r in raws if r is not None]), dtype=EVENT_DTYPE)
    columns = [rows[name].tobytes() for name, _ in _COLUMNS]
    out, at = [], 0
    names: dict[str, bytes] = {}
    for st, raw in zip(states, raws, strict=True):
        if raw is None:
            out.append(encode_state(st))
            continue
        n = len(raw) // ROW.size
        cut = [col[at * w : (at + n) * w] for col, w in zip(columns, _WIDTHS, strict=True)]
        out.append(record(st, n, cut, names))
        at += n
    return out


@dataclass(frozen=True, slots=True)
class Peek:
    """What a restart needs of a stored record, read from its header alone."""

    last_offset: int
    deadline_ms: int
    dormant_since_ms: int
    max_cause_offset: int  # of its stored alerts; -1 when none


def peek_state(raw: bytes) -> Peek:
    """The header fields a partition's activation reads, without decoding the record (a
    version 1 record, which lacks ``max_cause_offset``, is decoded whole)."""
    if raw[:1] not in (bytes([2]), bytes([3]), bytes([VERSION])):
        st = decode_state(raw)
        cause = max((a.cause_offset for a in st.alerts), default=-1)
        return Peek(st.last_offset, st.deadline_ms, st.dormant_since_ms, cause)
    try:
        fields = _HEADER.unpack_from(raw, 0)
    except struct.error as exc:
        raise StateError(f"cannot decode user state ({len(raw)} bytes): {exc}") from exc
    return Peek(fields[3], fields[6], fields[7], fields[14])


def decode_state(raw: bytes) -> UserState:
    try:
        return _decode(raw if type(raw) is bytes else bytes(raw))  # slices of bytes: cheap
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot decode user state ({len(raw)} bytes): {exc}") from exc


def _decode(buf: bytes) -> UserState:
    version = buf[0]
    if version not in (1, 2, 3, VERSION):
        raise StateError(f"unknown state version {version}")
    header = _HEADER_V1 if version == 1 else _HEADER
    (_, _flags, partition, last_offset, n_total, first_ts, deadline, dormant, peak,
     half_life, n_cats, n_alerts, n, *more) = header.unpack_from(buf, 0)  # fmt: skip
    pos = header.size

    # The event columns, in one array, put in row order (add's bytes; an array when read).
    columns = np.frombuffer(buf, dtype=np.uint8, count=n * ROW.size, offset=pos)
    pos += n * ROW.size
    st = UserState(
        _rows=None,
        _raw=columns[row_order(n)].tobytes(),
        partition=partition,
        last_offset=last_offset,
        n_total=n_total,
        first_ts_ms=first_ts,
        deadline_ms=deadline,
        dormant_since_ms=dormant,
        peak_score=peak,
        half_life_s=half_life,
        sessions=more[0] if more else 0,
    )
    if more:
        st.model_state = bytes(buf[pos : pos + more[2]])
        if len(st.model_state) != more[2]:
            raise StateError("model state cut short")
        pos += more[2]

    for _ in range(n_cats):
        length = buf[pos]
        st.categories.append(buf[pos + 1 : pos + 1 + length].decode())
        pos += 1 + length
    n_engaged = buf[pos]
    pos += 1
    for _ in range(n_engaged):
        length = buf[pos]
        name = buf[pos + 1 : pos + 1 + length].decode()
        pos += 1 + length
        if version == 1:  # no counts kept: they build up again from the next events
            _, fired = _CAT_TAIL_V1.unpack_from(buf, pos)
            pos += _CAT_TAIL_V1.size
            st.engagement[name] = Engagement(fired=bool(fired))
            continue
        activity, last_ts, visits, at, fired = _CAT_TAIL.unpack_from(buf, pos)
        pos += _CAT_TAIL.size
        st.engagement[name] = Engagement(activity, last_ts, visits, at, bool(fired))
    for _ in range(n_alerts):
        cause, length = _ALERT_HEAD.unpack_from(buf, pos)
        pos += _ALERT_HEAD.size
        body = bytes(buf[pos : pos + length])
        if len(body) != length:
            raise StateError("stored alert cut short")
        if version >= 3:  # deflated, with that version's dictionary
            st.alerts.append(StoredAlert(cause, packed=body, version=version))
        else:  # versions 1 and 2 kept the JSON as it is
            st.alerts.append(StoredAlert(cause, payload=body))
        pos += length
    if pos != len(buf):
        raise StateError(f"{len(buf) - pos} trailing bytes")
    return st
