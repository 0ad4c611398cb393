"""A worker whose changelog recovery in bulk (stream_app/runtime/changelog_bulk.py) meets the
faults a busy machine brings by chance: run as a script by the integration tests. ``FAULT``:

- ``fetched-while-stopped``: the first time Faust's recovery has sought its changelog
  partitions, before it resumes the flow (stopped, as after a rebalance), the intake gets a
  fetch holding their records, as aiokafka hands it when a fetch under way meets a rebalance
  (every partition's records); the recovery waits until the intake has dropped it (the CI
  stall);
- ``lost``: the records the bulk path hands on to Faust's recovery loop, up to the
  highwater, are never delivered; the recovery must end without them;
- ``rebalance``: the first time, just before that handing, the worker asks the group for a
  rebalance and waits until Faust has stopped the flow for it; Faust restarts the recovery.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from faust import Worker
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer

from decay.settings import Settings
from stream_app.app import create_app
from stream_app.runtime.intake import Intake

log = logging.getLogger(__name__)


def request_rebalance(consumer: Any) -> None:
    """Ask the group coordinator for a rejoin (from aiokafka's own thread and loop)."""
    aio = consumer._thread._consumer
    consumer._thread.thread_loop.call_soon_threadsafe(aio._coordinator.request_rejoin)


def handing_faults(fault: str) -> None:
    to_conductor = Intake._to_conductor
    rebalances = [1]

    async def faulty(self: Intake, consumer: Any, tp: Any, batch: Any) -> None:
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]
        if recovery.in_recovery and tp in recovery.active_tps:
            highwater = recovery.active_highwaters.get(tp, -1)
            if fault == "lost":
                lost = [r.offset for r in batch if r.offset <= highwater]
                batch = [r for r in batch if r.offset > highwater]
                log.warning("changelog offsets %s of %s not handed to Faust", lost, tp)
            elif fault == "rebalance" and rebalances[0] > 0:
                rebalances[0] -= 1
                request_rebalance(consumer)
                await asyncio.wait_for(consumer.suspend_flow.wait(), 60)
                offsets = [r.offset for r in batch]
                log.warning("rebalance under way as offsets %s of %s go to Faust", offsets, tp)
        await to_conductor(self, consumer, tp, batch)

    Intake._to_conductor = faulty  # type: ignore[method-assign]


async def fetch_everything(consumer: Any, wanted: set[Any]) -> dict[Any, list[Any]]:
    """What aiokafka returns when asked for no partition in particular: every partition's
    records it holds, until those of ``wanted`` are among them (bounded)."""
    fetcher = consumer._thread._consumer._fetcher
    got: dict[Any, list[Any]] = {}
    for _ in range(100):
        for tp, records in (
            await consumer._thread.call_thread(fetcher.fetched_records, (), 0.5)
        ).items():
            got.setdefault(tp, []).extend(records)
        if wanted <= set(got):
            break
    return got


def fetch_while_stopped() -> None:
    seek_offsets = Recovery._seek_offsets
    wait_next_records = Consumer._wait_next_records
    perform_seek = Consumer.perform_seek
    armed, dropped = asyncio.Event(), asyncio.Event()
    delivered = [False]

    async def seek_then_deliver(self: Recovery, consumer: Any, tps: Any, *args: Any) -> None:
        await seek_offsets(self, consumer, tps, *args)
        if args[-1] == "active" and not armed.is_set() and self.need_recovery():
            # As in any recovery but a worker's first: the flow stopped since the rebalance,
            # and Faust's fetching (the intake's drain loop) running.
            consumer.stop_flow()
            await self.app._fetcher.maybe_start()  # type: ignore[attr-defined]
            armed.set()
            await asyncio.wait_for(dropped.wait(), 60)  # then the recovery resumes the flow

    async def deliver(self: Any, timeout: float) -> Any:
        if not self.flow_active:
            await self.wait_first(self.can_resume_flow, armed)
        if armed.is_set() and not delivered[0]:
            delivered[0] = True
            recovery = self.app.tables.recovery
            wanted = {tp for tp, n in recovery.active_remaining().items() if n > 0}
            records = await fetch_everything(self, wanted)
            log.warning(
                "fetched with the flow stopped: %s", {tp: len(r) for tp, r in records.items()}
            )
            return records, self._get_active_partitions()
        return await wait_next_records(self, timeout)

    async def seek_and_tell(self: Any) -> None:
        await perform_seek(self)
        if delivered[0]:
            dropped.set()

    Recovery._seek_offsets = seek_then_deliver  # type: ignore[method-assign]
    Consumer._wait_next_records = deliver  # type: ignore[method-assign]
    Consumer.perform_seek = seek_and_tell  # type: ignore[method-assign]


def main() -> None:
    settings = Settings()
    fault = os.environ["FAULT"]
    if fault == "fetched-while-stopped":
        fetch_while_stopped()
    else:
        handing_faults(fault)
    built = create_app(settings)
    Worker(built.app, loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
