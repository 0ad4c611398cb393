"""An alert kept in a user's state record, stored deflated with a preset dictionary.

A record keeps its user's last alerts (and every one not yet confirmed delivered, to send
again after a crash); deflated, an alert takes about a quarter of its JSON. Part of the state
record's version 3 format (``decay.state``).
"""

from __future__ import annotations

import zlib
from typing import Final

from decay.errors import DecayError


class StateError(DecayError, ValueError):
    """A stored record cannot be decoded (corrupt, or written by an unknown version)."""


# What alerts say, in the order decay.alerts writes it: deflate finds most of a stored alert
# here, so each one takes about a third of its JSON. Part of the version 3 format: a record is
# inflated with the dictionary it was deflated with, so this text never changes (a new one
# needs a new version).
ALERT_DICTIONARY: Final = (
    b'","half_life_hours":0.0,"event_time":"2000-01-01T00:00:00.000Z","emitted_at":"'
    b'{"alert_id":"","kind":"category_decay","user_id":"","category":null,"score":0.2,'
    b'"peak_score":0.5,"model_version":"lstm-btyd-fs1-","reasons":["no activity for 0.0 days'
    b'; no repeat visit seen yet (1 events in all)","interest fell from 0.5 to 0.2"]}'
    b'; this user\'s typical gap is 10.0 days (1.0x)","back after 10.0 days of silence'
    b'","dormant since 2000-01-01; returned with a purchase event"]}'
    b'{"alert_id":"","kind":"dormant","user_id":"c1","category":null,"score":0.2,'
    b'"peak_score":0.5,"half_life_hours":100.0,"event_time":"2000-01-01T12:00:00.000Z",'
    b'"emitted_at":"2000-01-01T12:00:00.000Z","model_version":"lstm-btyd-fs1-0",'
    b'"reasons":["no activity for 10.0 days; this user\'s typical gap is 10.0 days (1.0x)",'
    b'"interest fell from 0.50 to 0.20"]}'
)


def _deflate(payload: bytes) -> bytes:
    # a 2 KiB window holds the dictionary and an alert; small state: quick to set up
    z = zlib.compressobj(6, zlib.DEFLATED, -11, 2, zlib.Z_DEFAULT_STRATEGY, ALERT_DICTIONARY)
    return z.compress(payload) + z.flush()


def _inflate(packed: bytes) -> bytes:
    try:
        z = zlib.decompressobj(-15, ALERT_DICTIONARY)
        out = z.decompress(packed) + z.flush()
    except zlib.error as exc:
        raise StateError(f"stored alert cannot be inflated: {exc}") from exc
    if not z.eof:
        raise StateError("stored alert cut short")
    return out


class StoredAlert:
    """An alert as sent, and the offset of the event whose processing emitted it. Stored
    deflated (``packed``); each form is computed once, when first asked for (a record's
    alerts are inflated only when they are re-sent or shown, which raises StateError for a
    corrupt one)."""

    __slots__ = ("_packed", "_payload", "cause_offset")

    def __init__(
        self, cause_offset: int, payload: bytes | None = None, packed: bytes | None = None
    ) -> None:
        if payload is None and packed is None:
            raise ValueError("a stored alert needs its payload or its packed form")
        self.cause_offset = cause_offset
        self._payload = payload
        self._packed = packed

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            assert self._packed is not None
            self._payload = _inflate(self._packed)
        return self._payload

    @property
    def packed(self) -> bytes:
        if self._packed is None:
            self._packed = _deflate(self.payload)
        return self._packed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredAlert):
            return NotImplemented
        return (self.cause_offset, self.payload) == (other.cause_offset, other.payload)

    def __hash__(self) -> int:
        return hash((self.cause_offset, self.payload))

    def __repr__(self) -> str:
        return f"StoredAlert({self.cause_offset!r}, {self.payload!r})"
