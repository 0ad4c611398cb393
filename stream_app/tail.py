"""Finding partitions the consumer stopped delivering short of their end (pure logic)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class TailWatch:
    """Finds the partitions Faust's consumer stopped delivering short of their end.

    A record Faust skips is noticed when a later one arrives (see the worker's TopicReader); but
    when it skips a partition's last records (its read offset moved to the end, seen in CI after
    a rebalance), no later record comes. A partition is stalled when it was behind its end at
    two checks in a row, with the same next offset, and Faust delivered none of its records in
    between; its next ``chunk`` records are then read by the worker itself. A false alarm (Faust
    only slow) costs a read: the records Faust delivers afterwards count as redelivered."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self._delivered: set[int] = set()
        self._behind: dict[int, int] = {}  # partition -> next offset at the last check

    def delivered(self, partitions: Iterable[int]) -> None:
        self._delivered.update(partitions)

    def stalled(
        self, next_offsets: Mapping[int, int], ends: Mapping[int, int]
    ) -> dict[int, tuple[int, int]]:
        """``next_offsets``: the next offset to apply per partition; ``ends``: log ends.
        Returns the offset range (start, end excluded) to read per stalled partition."""
        delivered, self._delivered = self._delivered, set()
        behind: dict[int, int] = {}
        stalled = {}
        for p, nxt in next_offsets.items():
            end = ends.get(p)
            if end is None or end <= nxt:
                continue
            if self._behind.get(p) == nxt and p not in delivered:
                stalled[p] = (nxt, min(end, nxt + self.chunk))
            behind[p] = nxt
        self._behind = behind
        return stalled
