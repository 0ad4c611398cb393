"""An alert kept in a user's state record, stored deflated with a preset dictionary.

A record keeps its user's last alerts (and every one not yet confirmed delivered, to send
again after a crash); deflated, an alert takes about a quarter of its JSON. Part of the state
record's format (``decay.state``): version 3 deflates with ``ALERT_DICTIONARY``, version 4 with
``DICTIONARIES[4]``, which adds what alerts' ``related`` and ``explanation`` say.
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


# Version 4: the same, then what explanations and related suggestions say (zlib finds the
# dictionary's last bytes nearest, so the commonest text comes last). Never changes either.
EXPLAINED_TEXT: Final = (
    b',"related":[{"category":"","score":0.1,"share":0.25,"similarity":0.5,"rising":false},'
    b'{"category":"","score":0.05,"share":0.1,"similarity":0.4,"rising":true}],'
    b'"explanation":["none of the last 10 events moved interest by 0.01 or more",'
    b'"the view event on Jan 1 is the only event the score rests on",'
    b'"the purchase event on Dec 1, 1997 lowered interest most (-0.02)",'
    b'"the 2 click events in  on Jan 1 also raised it (+0.01)",'
    b'"the 3 cart events in  on Jan 10 lowered it most (-0.01)",'
    b'"the 10 view events in  on Jan 1 raised interest most (+0.12)"]}'
)
CURRENT: Final = 4
DICTIONARIES: Final = {3: ALERT_DICTIONARY, 4: ALERT_DICTIONARY + EXPLAINED_TEXT}
# the window holds the dictionary and an alert (4 KiB: version 4's dictionary is over 1.5)
_WINDOW_BITS: Final = {3: -11, 4: -12}


def _deflate(payload: bytes, version: int = CURRENT) -> bytes:
    dictionary = DICTIONARIES[version]
    # memory level 2: small state, quick to set up
    z = zlib.compressobj(
        6, zlib.DEFLATED, _WINDOW_BITS[version], 2, zlib.Z_DEFAULT_STRATEGY, dictionary
    )
    return z.compress(payload) + z.flush()


def _inflate(packed: bytes, version: int) -> bytes:
    try:
        z = zlib.decompressobj(-15, DICTIONARIES[version])
        out = z.decompress(packed) + z.flush()
    except zlib.error as exc:
        raise StateError(f"stored alert cannot be inflated: {exc}") from exc
    if not z.eof:
        raise StateError("stored alert cut short")
    return out


class StoredAlert:
    """An alert as sent, and the offset of the event whose processing emitted it. Stored
    deflated (``packed``, with the current version's dictionary); each form is computed once,
    when first asked for (a record's alerts are inflated only when they are re-sent or shown,
    which raises StateError for a corrupt one). ``version``: the record version whose
    dictionary ``packed`` was deflated with."""

    __slots__ = ("_packed", "_payload", "_version", "cause_offset")

    def __init__(
        self,
        cause_offset: int,
        payload: bytes | None = None,
        packed: bytes | None = None,
        version: int = CURRENT,
    ) -> None:
        if payload is None and packed is None:
            raise ValueError("a stored alert needs its payload or its packed form")
        self.cause_offset = cause_offset
        self._payload = payload
        self._packed = packed
        self._version = version

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            assert self._packed is not None
            self._payload = _inflate(self._packed, self._version)
        return self._payload

    @property
    def packed(self) -> bytes:
        """Deflated with the current dictionary (an alert read from an older record is
        deflated again)."""
        if self._packed is None or self._version != CURRENT:
            payload = self.payload
            self._packed, self._version = _deflate(payload), CURRENT
        return self._packed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredAlert):
            return NotImplemented
        return (self.cause_offset, self.payload) == (other.cause_offset, other.payload)

    def __hash__(self) -> int:
        return hash((self.cause_offset, self.payload))

    def __repr__(self) -> str:
        return f"StoredAlert({self.cause_offset!r}, {self.payload!r})"
