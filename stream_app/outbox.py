"""What the worker sends (alerts, scores, dead letters), and how a send that fails is handled.

An alert or a score that cannot be sent fails its batch: nothing of it is committed, and the
records are applied again (by this worker after a restart, or by the partition's next owner).
A dead letter is best effort instead: the record it stands for is itself the cause, so failing
its batch would fail again at the same record after every restart. It is retried, then
logged with its origin and counted, and the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    # Where the message came from ("events[3]@1234"), for the log when it cannot be sent.
    origin: str = ""
    best_effort: bool = False  # a dead letter (see the module's docstring)
    partition: int | None = None  # None: the producer's partitioner picks it from the key
    timestamp_ms: int | None = None  # None: now


OnFailed = Callable[[Outgoing, BaseException], None]
# A producer's send of one message -> a future of its delivery.
Send = Callable[[Outgoing], Awaitable[Any]]

ATTEMPTS = 3
BACKOFF_S = 0.2


async def send(
    producer_send: Send,
    m: Outgoing,
    on_failed: OnFailed,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> Any | None:
    """Hand ``m`` to the producer; returns the delivery future, or None for a best-effort
    message that could not be handed over (``on_failed`` was called). A best-effort message
    whose delivery fails later calls ``on_failed`` too."""
    if not m.best_effort:
        return await producer_send(m)
    error: BaseException | None = None
    for attempt in range(attempts):
        try:
            delivery = await producer_send(m)
        except Exception as exc:  # too large, buffer full, metadata missing...: all alike
            error = exc
            log.warning("could not send %s to %s (%s), attempt %d", m.origin, m.topic, exc, attempt)
            await asyncio.sleep(backoff_s * 2**attempt)
            continue
        if isinstance(delivery, asyncio.Future):
            delivery.add_done_callback(lambda fut: _delivered(fut, m, on_failed))
        return delivery
    assert error is not None
    on_failed(m, error)
    return None


def _delivered(fut: asyncio.Future[Any], m: Outgoing, on_failed: OnFailed) -> None:
    if fut.cancelled():
        on_failed(m, asyncio.CancelledError())
    elif fut.exception() is not None:
        on_failed(m, fut.exception())  # type: ignore[arg-type]
