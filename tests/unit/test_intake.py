import asyncio

from stream_app.runtime.intake import Fetched, Fetches


def fetched(partition: int, first: int, n: int, generation: int = 1) -> Fetched:
    return Fetched(generation, partition, list(range(first, first + n)))


def test_a_fetch_larger_than_a_batch_is_handed_out_in_parts_in_order() -> None:
    async def run() -> list[list[tuple[int, list[int]]]]:
        fetches = Fetches(max_fetches=4)
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


def test_a_batch_waits_for_its_first_fetch_then_at_most_within_s() -> None:
    async def run() -> tuple[int, float]:
        fetches = Fetches(max_fetches=1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, fetches.queue.put_nowait, fetched(2, 0, 1, generation=3))
        started = loop.time()
        got = await fetches.take(max_records=100, within_s=0.05)
        assert [(f.generation, f.partition) for f in got] == [(3, 2)]
        return len(got), loop.time() - started

    n, waited = asyncio.run(run())
    assert n == 1 and 0.05 <= waited < 2.0


def test_a_full_queue_holds_the_putter_until_a_take() -> None:
    async def run() -> bool:
        fetches = Fetches(max_fetches=1)
        assert not fetches.backlog()
        await fetches.put(fetched(0, 0, 1))
        assert fetches.backlog()
        blocked = asyncio.ensure_future(fetches.put(fetched(0, 1, 1)))
        await asyncio.sleep(0)
        held = not blocked.done()
        await fetches.take(max_records=1, within_s=0)
        await asyncio.wait_for(blocked, 1.0)
        return held

    assert asyncio.run(run())
