"""The byte layout of a user's state record (described in ``decay.state``) and the writing
of one from its parts, apart from ``UserState`` so that the state's module stays about the
state. ``decay.state`` reads records and puts the parts together (``encode_states``)."""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decay.stored_alerts import CURRENT

VERSION: Final = CURRENT  # the record's version is its alerts' dictionary's
HEADER_V1 = struct.Struct("<BBhqIqqqffBBH")
HEADER = struct.Struct("<BBhqIqqqffBBHIqH")  # v2+: + sessions, max_cause_offset, model_len
CAT_TAIL_V1 = struct.Struct("<fB")
CAT_TAIL = struct.Struct("<fqIIB")
ALERT_HEAD = struct.Struct("<qH")


# The rows' fields in the record's column order, and their widths in bytes.
COLUMNS: Final = (("ts", "<i8"), ("type", "u1"), ("cat", "u1"), ("price", "<f4"), ("id", "<u8"))
WIDTHS: Final = tuple(np.dtype(dtype).itemsize for _, dtype in COLUMNS)


def row_order(n: int) -> npt.NDArray[np.intp]:
    """Where each byte of ``n`` rows (EVENT_DTYPE, packed) is in the record's columns.
    Cached for the usual window lengths only: 22 * 8 bytes a row, 0.7 MB at 4,096 rows."""
    return _row_order(n) if n <= 256 else _row_order.__wrapped__(n)


@lru_cache(maxsize=257)
def _row_order(n: int) -> npt.NDArray[np.intp]:
    i = np.arange(n)[:, None]
    starts = np.cumsum([0, *WIDTHS[:-1]]) * n  # of each column in the record
    at = [starts[k] + i * w + np.arange(w) for k, w in enumerate(WIDTHS)]
    order = np.concatenate(at, axis=1).ravel()
    order.flags.writeable = False  # shared: cached
    return order


def record(state: Any, n: int, columns: list[bytes], names: dict[str, bytes]) -> bytes:
    """The record of ``state`` (a ``decay.state.UserState``: not imported, that module imports
    this one), of its rows' ``columns``; ``names``: each name's bytes (length, utf-8), as
    made so far (those missing are added)."""
    alerts = state.alerts
    parts = [
        HEADER.pack(
            VERSION,
            0,
            state.partition,
            state.last_offset,
            state.n_total,
            state.first_ts_ms,
            state.deadline_ms,
            state.dormant_since_ms,
            state.peak_score,
            state.half_life_s,
            len(state.categories),
            len(alerts),
            n,
            state.sessions,
            max([a.cause_offset for a in alerts]) if alerts else -1,
            len(state.model_state),
        ),
        *columns,
        state.model_state,
    ]
    for name in state.categories:
        got = names.get(name)
        parts.append(_name_bytes(name, names) if got is None else got)
    parts.append(bytes([len(state.engagement)]))
    for name, e in state.engagement.items():
        got = names.get(name)
        parts += [
            _name_bytes(name, names) if got is None else got,
            CAT_TAIL.pack(e.activity, e.last_ts_ms, e.visits, e.at_session, e.fired),
        ]
    for alert in alerts:
        packed = alert.packed
        parts += [ALERT_HEAD.pack(alert.cause_offset, len(packed)), packed]
    return b"".join(parts)


def _name_bytes(name: str, names: dict[str, bytes]) -> bytes:
    raw = name.encode()[:255]
    made = names[name] = bytes([len(raw)]) + raw
    return made
