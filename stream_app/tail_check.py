"""The worker's tail check (a timer): the records Faust's consumer will not deliver, read
and applied by the worker itself (see stream_app.tail for when a partition is stalled). The
log ends are asked of the broker without the worker's lock, so batches go on meanwhile."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError

from stream_app.worker import Worker, as_records

log = logging.getLogger(__name__)


def stalled_candidates(worker: Worker) -> dict[int, int]:
    """Per assigned, unpaused partition: the next offset this worker should see (where
    its unbroken run ends; else where Faust will start)."""
    group, processor, topic = worker.group, worker.processor, worker.settings.events_topic
    paused = group.paused(topic)  # recovering, not stalled
    assigned = group.assigned(topic) - paused
    committed = worker.delivery.committed_offsets()
    applied = processor.commit_offsets()
    return {
        p: applied[p] if p in applied else committed[p]
        for p in assigned
        if p in applied or p in committed
    }


async def read_stalled_partitions(worker: Worker) -> None:
    """Apply the records Faust's consumer will not deliver (see stream_app.tail). A
    read that fails (the broker away) is tried again at the next check; a failure once
    records are being applied stops the worker, as in a batch."""
    async with worker.lock:
        nexts = stalled_candidates(worker) if tail_check_due(worker) else {}
    if not nexts:
        return
    try:  # not under the lock: batches need not wait for the broker's answer
        ends = await worker.gaps.end_offsets(worker.settings.events_topic, nexts)
    except (KafkaError, TimeoutError, OSError) as exc:
        log.warning("tail check: no end offsets (%s); trying again later", exc)
        return
    async with worker.lock:
        if not tail_check_due(worker):
            return
        # Where each partition is now: the log ends read are lower bounds of its end.
        nexts = {p: o for p, o in stalled_candidates(worker).items() if p in ends}
        for p, (start, end) in worker.tail.stalled(nexts, ends).items():
            if not await read_stalled(worker, p, start, end):
                return


def tail_check_due(worker: Worker) -> bool:
    """Whether the tail check may look now (call under the lock)."""
    if worker.group.holding() or worker.processor.halted is not None:
        return False  # Faust holds partitions back during the first two, rightly
    return not worker.batches.backlog()  # else busy: fetches wait for their turn


async def read_stalled(worker: Worker, p: int, start: int, end: int) -> bool:
    """Read and apply partition ``p``'s offsets ``start`` to ``end``; False when applying
    them failed (the worker is stopping)."""
    try:
        found = await worker.gaps.read(worker.settings.events_topic, p, start, end)
    except (KafkaError, TimeoutError, OSError) as exc:
        log.warning("tail check: partition %d not read (%s); later", p, exc)
        return True
    worker.metrics.refetched.inc(len(found))
    if not found:  # only transaction markers there
        worker.processor.accept_gap(p, end)
        return True
    log.warning(
        "partition %d: no record delivered past offset %d of %d; read %d",
        *(p, start - 1, end, len(found)),
    )
    worker.processor.committed = worker.delivery.committed_offsets()
    try:
        outs, _ = await worker.run_batch(as_records(found))
    except Exception as exc:
        await worker.stop(exc, f"records read from partition {p} failed")
        return False
    for out in outs:
        worker.delivery.observe(out)
    return True
