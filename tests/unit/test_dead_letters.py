"""Dead-letter records are cut to fit, and a dead letter that cannot be sent never stops the
batch (stream_app.dead_letters, stream_app.outbox)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_app import dead_letters, outbox
from stream_app.outbox import Outgoing
from stream_app.processor import Record


def test_a_record_that_fits_is_kept_whole() -> None:
    rec = Record(2, 17, b"alice", b'{"broken"')
    m = dead_letters.dead_letter("dlq", "events", rec, "invalid_json", "Expecting ':'", 10_000)
    assert (m.topic, m.key, m.value, m.best_effort) == ("dlq", b"alice", b'{"broken"', True)
    assert dict(m.headers)["decay-source-offset"] == b"17"
    assert dead_letters.TRUNCATED not in dict(m.headers)
    assert m.origin == "events[2]@17"


@pytest.mark.parametrize("limit", [2_000, 100_000, 1_048_588])
def test_a_large_value_is_cut_to_the_limit_and_says_so(limit: int) -> None:
    value = bytes(range(256)) * 8_000  # 2,048,000 bytes
    m = dead_letters.dead_letter("dlq", "events", Record(0, 5, b"u", value), "too_large", "", limit)
    size = dead_letters.record_size(m.key, m.value, m.headers)
    assert limit - 16 <= size <= limit
    assert value.startswith(m.value)
    h = dict(m.headers)
    assert h[dead_letters.TRUNCATED] == b"value"
    assert h[dead_letters.ORIGINAL_VALUE_BYTES] == str(len(value)).encode()


def test_a_long_key_is_cut_even_when_it_would_fit() -> None:
    m = dead_letters.dead_letter("dlq", "e", Record(0, 1, b"k" * 10_000, b"{}"), "x", "", 10**6)
    assert m.key == b"k" * dead_letters.MAX_KEY_BYTES
    h = dict(m.headers)
    assert h[dead_letters.TRUNCATED] == b"key"
    assert h[dead_letters.ORIGINAL_KEY_BYTES] == b"10000"
    assert m.value == b"{}"


def test_a_limit_too_small_for_the_headers_still_gives_a_record_never_an_error() -> None:
    """The outbox then counts it as not sent when the broker refuses it: never a stop."""
    m = dead_letters.dead_letter("dlq", "e", Record(0, 1, b"u", b"x" * 500), "x", "", 100)
    assert (m.key, m.value, m.best_effort) == (None, b"", True)
    assert dict(m.headers)[dead_letters.TRUNCATED] == b"key,value"


class FlakyProducer:
    """Fails the first ``failures`` sends; later ones return a delivery future that the test
    resolves (or fails) itself."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, m: Outgoing) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"send {self.calls} refused")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


def run_send(m: Outgoing, producer: FlakyProducer) -> tuple[Any, list[str]]:
    failed: list[str] = []

    async def go() -> Any:
        got = await outbox.send(
            producer.send, m, lambda m, exc: failed.append(str(exc)), backoff_s=0.0
        )
        for fut in producer.futures:
            fut.set_exception(RuntimeError("broker said no"))
        await asyncio.sleep(0)  # the futures' callbacks run on the next turn of the loop
        return got

    return asyncio.run(go()), failed


DEAD = Outgoing("dlq", b"u", b"x", (), "events[0]@3", best_effort=True)


def test_a_dead_letter_is_retried_then_handed_over() -> None:
    producer = FlakyProducer(failures=outbox.ATTEMPTS - 1)
    got, failed = run_send(DEAD, producer)
    assert got is not None and producer.calls == outbox.ATTEMPTS
    assert failed == ["broker said no"]  # its delivery failed later: reported, not raised


def test_a_dead_letter_that_cannot_be_sent_is_reported_not_raised() -> None:
    producer = FlakyProducer(failures=outbox.ATTEMPTS)
    got, failed = run_send(DEAD, producer)
    assert got is None and producer.calls == outbox.ATTEMPTS
    assert failed == [f"send {outbox.ATTEMPTS} refused"]


def test_an_alert_that_cannot_be_sent_raises() -> None:
    alert = Outgoing("alerts", b"u", b"{}")
    with pytest.raises(RuntimeError, match="send 1 refused"):
        run_send(alert, FlakyProducer(failures=1))
