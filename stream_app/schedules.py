"""Deadlines of a schedule read after a restart (stream_app.partitions.activate) fire as soon
as it is read, batch or no batch: a replay whose last batch came while the schedule was
being read has nothing else to fire them."""

from __future__ import annotations

from stream_app.worker import Worker

# The idle time given to the processor's tick: no partition's clock moves with the wall clock
# (live mode's timer does that); only the schedules read are taken in and fired.
NEVER_IDLE_MS = 2**62


async def fire_read(worker: Worker) -> None:
    """The worker's timer: take in the schedules read, fire what is due, deliver it; a
    failure stops the worker (Worker.fatal)."""

    async def fire_read_schedules() -> None:
        if not worker.processor.schedules_read():
            return
        async with worker.lock:
            out = worker.processor.tick(worker.clock_ms(), NEVER_IDLE_MS)
            await worker.delivery.settle(out)

    await worker.fatal(fire_read_schedules)()
