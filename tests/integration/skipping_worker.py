"""A worker whose Faust consumer drops records of the events topic from its fetches, as
faust-streaming 0.15.3's per-message path did after some rebalances: run as a script by the
integration tests to check that the worker reads them itself. ``SKIP`` lists
``partition:first:end`` ranges (end excluded; empty: to the end of the log); each dropped
offset is dropped once."""

from __future__ import annotations

import os
from typing import Any

from faust import Worker
from faust.transport import consumer as faust_consumer

from decay.settings import Settings
from stream_app.app import create_app


def drop_ranges(spec: str) -> list[tuple[int, int, float]]:
    ranges = []
    for part in spec.split(","):
        partition, first, end = part.split(":")
        ranges.append((int(partition), int(first), float(end) if end else float("inf")))
    return ranges


def main() -> None:
    settings = Settings()
    ranges = drop_ranges(os.environ["SKIP"])
    dropped: set[tuple[int, int]] = set()
    wait_next_records = faust_consumer.Consumer._wait_next_records

    def kept(tp: Any, record: Any) -> bool:
        key = (tp.partition, record.offset)
        skip = tp.topic == settings.events_topic and any(
            p == tp.partition and first <= record.offset < end for p, first, end in ranges
        )
        if skip and key not in dropped:
            dropped.add(key)
            return False
        return True

    async def skipping(self: Any, timeout: float) -> tuple[Any, Any]:
        records, active = await wait_next_records(self, timeout)
        if records:
            records = {tp: [r for r in batch if kept(tp, r)] for tp, batch in records.items()}
        return records, active

    faust_consumer.Consumer._wait_next_records = skipping  # type: ignore[method-assign]
    built = create_app(settings)
    Worker(built.app, loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
