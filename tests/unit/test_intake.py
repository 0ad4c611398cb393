import asyncio
import time

from stream_app.ports import Fetched
from stream_app.runtime.intake import Fetches


def fetched(partition: int, first: int, n: int, generation: int = 1, at: float = 0.0) -> Fetched:
    return Fetched(generation, partition, list(range(first, first + n)), at or time.time())


def test_a_fetch_larger_than_a_batch_is_handed_out_in_parts_in_order() -> None:
    async def run() -> list[list[tuple[int, list[int]]]]:
        fetches = Fetches(max_records=100)
        await fetches.put(fetched(0, 0, 5))
        await fetches.put(fetched(1, 10, 3))
        batches = []
        for _ in range(3):
            got = await fetches.take(max_records=3, within_s=0.01)
            batches.append([(f.partition, list(f.records)) for f in got])
        return batches

    assert asyncio.run(run()) == [
        [(0, [0, 1, 2])],
        [(0, [3, 4]), (1, [10])],
        [(1, [11, 12])],
    ]


def test_a_batch_waits_for_its_first_fetch_then_for_more_until_it_is_within_s_old() -> None:
    async def run() -> tuple[list[tuple[int, int]], float]:
        fetches = Fetches(max_records=100)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, fetches._waiting.append, fetched(2, 0, 1, generation=3))
        loop.call_later(0.05, fetches._arrived.set)
        loop.call_later(0.08, lambda: asyncio.ensure_future(fetches.put(fetched(3, 0, 1))))
        got = await fetches.take(max_records=100, within_s=0.2)
        return [(f.generation, f.partition) for f in got], time.time() - got[0].fetched_at

    got, age = asyncio.run(run())
    assert got == [(3, 2), (1, 3)]  # the second fetch came before the first was 0.2 s old
    assert 0.2 <= age < 2.0


def test_records_that_waited_behind_a_long_batch_are_taken_at_once() -> None:
    """Cut by age: a fetch older than within_s goes without waiting for more."""

    async def run() -> tuple[int, float]:
        fetches = Fetches(max_records=100)
        await fetches.put(fetched(0, 0, 7, at=time.time() - 5.0))
        started = time.monotonic()
        got = await fetches.take(max_records=1000, within_s=1.0)
        return sum(len(f.records) for f in got), time.monotonic() - started

    n, waited = asyncio.run(run())
    assert n == 7 and waited < 0.5


def test_a_full_batch_goes_without_waiting_for_its_age() -> None:
    async def run() -> tuple[int, float]:
        fetches = Fetches(max_records=100)
        await fetches.put(fetched(0, 0, 10))
        started = time.monotonic()
        got = await fetches.take(max_records=10, within_s=30.0)
        return sum(len(f.records) for f in got), time.monotonic() - started

    n, waited = asyncio.run(run())
    assert n == 10 and waited < 5.0


def test_the_queue_holds_the_putter_while_max_records_wait() -> None:
    async def run() -> tuple[bool, bool]:
        fetches = Fetches(max_records=3)
        assert not fetches.backlog()
        await fetches.put(fetched(0, 0, 2))
        await fetches.put(fetched(0, 2, 4))  # below the bound when it came: let in whole
        assert fetches.backlog() and fetches.waiting() == 6
        blocked = asyncio.ensure_future(fetches.put(fetched(0, 6, 1)))
        await asyncio.sleep(0)
        held = not blocked.done()
        await fetches.take(max_records=2, within_s=0)
        await asyncio.sleep(0)
        still_held = not blocked.done()  # 4 wait, still at least 3
        await fetches.take(max_records=2, within_s=0)
        await asyncio.wait_for(blocked, 1.0)
        return held, still_held

    assert asyncio.run(run()) == (True, True)
