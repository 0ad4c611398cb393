"""A user's window as rows of bytes, what ``decay.state.UserState`` keeps between events,
and snapshots of it that become ``decay.window.Window`` objects only when read.

One row per event, ``EVENT_DTYPE`` packed (22 bytes: time, type, category index, price, event
id hash). Bytes rather than a numpy array: an array made per event costs more than all the
Python work of an event, and bytes are never changed in place, so holding them is holding the
window as it was.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import numpy as np

from decay.window import NO_CATEGORY, Window

# The rows as numpy reads them (UserState.rows; a Window's arrays are views of its fields).
EVENT_DTYPE: Final = np.dtype(
    [("ts", "<i8"), ("type", "u1"), ("cat", "u1"), ("price", "<f4"), ("id", "<u8")]
)
ROW = struct.Struct("<qBBfQ")  # one EVENT_DTYPE record (packed: no padding either side)
ROW_KEYED = struct.Struct("<qBBf8s")  # the same, with the id hash as its 8 bytes (ID.pack)
TS = struct.Struct("<q")  # a row's time, at its start
CAT_AT: Final = 9  # of a category byte in its row
ID = struct.Struct("<Q")
ID_AT: Final = 14  # of an event id in its row
K = TypeVar("K", bound=Hashable)


# Never updated itself, only copied: a copy is cheaper than a new blake2b (its arguments).
_BLAKE2B_8: Final = hashlib.blake2b(digest_size=8)


def id_key(event_id: str) -> bytes:
    """The 8 bytes of ``event_id_hash`` (ID.pack), as a row keeps them."""
    h = _BLAKE2B_8.copy()
    h.update(event_id.encode())
    return h.digest()


def event_id_hash(event_id: str) -> int:
    """Stable 64-bit hash of an event id, kept in the window to drop duplicates."""
    return int.from_bytes(id_key(event_id), "little")


class Held(Protocol):
    """What a snapshot is taken of (``decay.state.UserState``)."""

    categories: list[str]
    n_total: int
    first_ts_ms: int

    def packed(self) -> bytes: ...


def no_events() -> Any:
    return np.zeros(0, dtype=EVENT_DTYPE)


def rows_of(raw: bytes) -> Any:
    return np.frombuffer(bytearray(raw), dtype=EVENT_DTYPE)  # writable, as decoded ones are


def holds_id(raw: bytes, h: int) -> bool:
    """Whether the rows ``raw`` hold event id hash ``h`` (a search of the bytes: the ids'
    positions only count)."""
    return holds_key(raw, ID.pack(h))


def holds_key(raw: bytes, key: bytes) -> bool:
    """``holds_id`` of the hash's 8 bytes (``ID.pack(h)``)."""
    at = raw.find(key, ID_AT)
    while at >= 0:
        if (at - ID_AT) % ROW.size == 0:
            return True
        at = raw.find(key, at + 1)
    return False


def window_of(rows: Any, categories: list[str], n_total: int, first_ts_ms: int) -> Window:
    return Window(
        ts=rows["ts"],
        types=rows["type"],
        cats=rows["cat"],
        prices=rows["price"],
        categories=tuple(categories),
        n_total=n_total,
        first_ts_ms=first_ts_ms,
    )


class Snapshot:
    """A user's window as of one moment, made a Window only when read (most events of a step
    model never need theirs). ``UserState`` replaces its rows' bytes and its category list
    rather than change them, so holding the two holds the moment."""

    __slots__ = (
        "_made", "categories", "first_ts_ms", "last_ts_ms", "n_total", "previous_ts_ms", "raw",
    )  # fmt: skip

    def __init__(self, st: Held) -> None:
        self.take(st)

    def take(self, st: Held) -> None:
        self.raw = raw = st.packed()
        self.categories, self.n_total, self.first_ts_ms = st.categories, st.n_total, st.first_ts_ms
        end = len(raw) - ROW.size  # the newest row's
        self.last_ts_ms: int = TS.unpack_from(raw, end)[0] if end >= 0 else 0
        # The second newest's (None without one)
        self.previous_ts_ms: int | None = (
            TS.unpack_from(raw, end - ROW.size)[0] if end >= ROW.size else None
        )
        self._made: Window | None = None

    @property
    def window(self) -> Window:
        """A new Window each time, not kept: most are read once (by a window scorer), and a
        batch's windows kept to its end would cost the garbage collector more than making
        the few read again (for an alert) anew. One made by ``prepare`` is handed out once."""
        made = self._made
        if made is not None:
            self._made = None
            return made
        return window_of(rows_of(self.raw), self.categories, self.n_total, self.first_ts_ms)

    @staticmethod
    def prepare(snapshots: Sequence[Snapshot]) -> None:
        """Make the windows of many snapshots at once, views of one array (an array each
        costs more than the rest of a window), for the next read of each."""
        rows = rows_of(b"".join([s.raw for s in snapshots]))
        ts, types, cats, prices = rows["ts"], rows["type"], rows["cat"], rows["price"]
        start = 0
        for s in snapshots:
            end = start + len(s.raw) // ROW.size
            cut = slice(start, end)
            s._made = Window(
                ts[cut], types[cut], cats[cut], prices[cut], tuple(s.categories), s.n_total,
                s.first_ts_ms,
            )  # fmt: skip
            start = end

    def recent_categories(self, k: int) -> list[str | None]:
        """The categories of the window's last ``k`` events (None where none), oldest first."""
        names, cats = self.categories, self.raw[CAT_AT :: ROW.size]
        return [None if c == NO_CATEGORY else names[c] for c in cats[-k:]]


class WindowsOf(Mapping[K, Window]):
    """Snapshots read as their windows, each built when looked up."""

    def __init__(self, snapshots: Mapping[K, Snapshot]) -> None:
        self._snapshots = snapshots

    def __getitem__(self, key: K) -> Window:
        return self._snapshots[key].window

    def __iter__(self) -> Iterator[K]:
        return iter(self._snapshots)

    def __len__(self) -> int:
        return len(self._snapshots)
