"""The model's view of one user: an immutable snapshot of the event window.

Both the stream app (from its RocksDB state) and training (from an event log) build these, and
one encoder turns them into model inputs, so the two sides cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NO_CATEGORY = 255
# Events closer than this belong to one visit; "gap" in reasons means the gap between visits.
SESSION_GAP_MS = 30 * 60 * 1000


@dataclass(slots=True)  # not frozen, which makes one 3x slower: nothing assigns to one
class Window:
    """Events sorted by time, oldest first. ``cats`` index ``categories`` (255: none)."""

    ts: npt.NDArray[np.int64]
    types: npt.NDArray[np.uint8]
    cats: npt.NDArray[np.uint8]
    prices: npt.NDArray[np.float32]
    categories: tuple[str, ...]
    n_total: int  # events ever seen for this user, the window's included
    first_ts_ms: int  # first event ever seen

    @property
    def last_ts_ms(self) -> int:
        return int(self.ts[-1])

    def typical_gap_ms(self, session_gap_ms: int = SESSION_GAP_MS) -> float | None:
        """Median gap between visits (gaps longer than a session break); None without one."""
        gaps = np.diff(self.ts)
        gaps = gaps[gaps >= session_gap_ms]
        return float(np.median(gaps)) if gaps.shape[0] else None
