"""/categories latency with 100,000 users tracked.

    .venv/bin/python bench/trends.py                        # 100,000 users, 500 categories
    .venv/bin/python bench/trends.py --users 100000 --categories 5000 --requests 500

Synthetic traffic (seed ``--seed``): ``--users`` users, ``--events-per-user`` events each over
``--days`` days of event time, in time order, categories drawn from ``--categories`` names
with Zipf popularity, half of them gaining and half losing popularity over the period. The
events go through ``stream_app.processor.Processor`` (baseline scorer, in-memory store) in
batches of ``--batch`` on ``--partitions`` partitions, as the worker feeds it; the trend
tables are then the ones a worker holding all those partitions has. /categories is served
by aiohttp with the worker's own handler code (stream_app.trends.query_args and describe)
and asked ``--requests`` times in a row over HTTP (keep-alive), n=10 and n=100 alternately;
p50/p99 are of the client-side time per answer. The bar: p99 under 50 ms. Figures go to
var/bench/trends-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import numpy as np
from aiohttp import ClientSession, web

from bench.common import add_json_option, figures_path, free_port, machine_note, write_figures
from decay.scoring import ExponentialDecayScorer
from decay.settings import Settings
from stream_app.app import processor_config
from stream_app.processor import Processor, Record
from stream_app.queries import partition_for
from stream_app.store import MemoryStore
from stream_app.trends import describe, query_args

DAY_MS = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01


def traffic(args: argparse.Namespace) -> list[Record]:
    rng = np.random.default_rng(args.seed)
    n = args.users * args.events_per_user
    users = np.repeat(np.arange(args.users), args.events_per_user)
    ts = np.sort(rng.integers(T0, T0 + int(args.days * DAY_MS), n))
    rng.shuffle(users)
    # Zipf popularity, tilted over time: even categories gain, odd ones lose.
    ranks = np.arange(1, args.categories + 1)
    base = 1.0 / ranks
    tilt = np.where(ranks % 2 == 0, 1.0, -1.0)
    phase = (ts - T0) / (args.days * DAY_MS)  # 0 .. 1 over the period
    cats = np.empty(n, dtype=np.int64)
    for chunk in np.array_split(np.arange(n), 20):  # popularity as of each chunk's time
        p = base * np.exp(tilt * (phase[chunk].mean() - 0.5) * 2.0)
        cats[chunk] = rng.choice(args.categories, size=len(chunk), p=p / p.sum())
    offsets = [0] * args.partitions
    out = []
    for i, (u, t, c) in enumerate(zip(users.tolist(), ts.tolist(), cats.tolist(), strict=True)):
        key = f"user-{u}".encode()
        value = {"event_id": f"e{i}", "user_id": key.decode(), "ts": t, "type": "view"}
        value["category"] = f"category {c:05d}"
        p = partition_for(key, args.partitions)
        out.append(Record(p, offsets[p], key, json.dumps(value).encode(), t))
        offsets[p] += 1
    return out


def feed(records: list[Record], args: argparse.Namespace) -> tuple[Processor, dict[str, Any]]:
    settings = Settings(partitions=args.partitions, scorer="baseline")
    store = MemoryStore()
    proc = Processor(
        processor_config(settings),
        ExponentialDecayScorer(half_life_s=settings.half_life_hours * 3600),
        store,
        lambda: T0 + int(args.days * DAY_MS),
    )
    started = time.perf_counter()
    trend_bytes = []
    for i in range(0, len(records), args.batch):
        out = proc.process(records[i : i + args.batch])
        trend_bytes.append(sum(len(v) for (_, k), v in out.writes.items() if "trend" in k))
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
    return proc, {
        "feed_seconds": round(time.perf_counter() - started, 1),
        "users_tracked": proc.users_tracked(),
        "trend_bytes_written_per_batch_mean": round(float(np.mean(trend_bytes))),
    }


async def serve_and_ask(proc: Processor, args: argparse.Namespace) -> dict[str, Any]:
    half_life_ms = int(Settings().trend_half_life_days * DAY_MS)

    async def categories(request: web.Request) -> web.Response:  # as stream_app.web's page
        parsed = query_args(request.query)
        if isinstance(parsed, str):
            return web.json_response({"error": parsed}, status=400)
        tables, now_ms = proc.category_trends()
        return web.json_response(describe(tables, now_ms, *parsed, half_life_ms))

    app = web.Application()
    app.router.add_get("/categories", categories)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    times, sizes = [], []
    try:
        async with ClientSession() as session:
            for i in range(args.requests):
                n = 10 if i % 2 == 0 else 100
                started = time.perf_counter()
                async with session.get(f"http://127.0.0.1:{port}/categories?n={n}") as r:
                    body = await r.read()
                    assert r.status == 200, body[:200]
                times.append(time.perf_counter() - started)
                sizes.append(len(body))
        last = json.loads(body)
    finally:
        await runner.cleanup()
    ms = np.array(times) * 1000
    return {
        "requests": args.requests,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "response_bytes_n100": sizes[-1],
        "categories_tracked": last["categories_tracked"],
        "top_rising": [(t["category"], round(t["day_change"], 1)) for t in last["rising"][:3]],
        "top_falling": [(t["category"], round(t["day_change"], 1)) for t in last["falling"][:3]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events-per-user", type=int, default=3)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--categories", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    add_json_option(parser, "trends")
    args = parser.parse_args()
    if args.requests < 200:
        parser.error("--requests: at least 200 for a p99")
    random.seed(args.seed)
    records = traffic(args)
    proc, fed = feed(records, args)
    print(f"fed {len(records):,} events: {fed}")
    got = asyncio.run(serve_and_ask(proc, args))
    bar = got["p99_ms"] < 50.0
    print(
        f"/categories over {got['requests']} requests with {fed['users_tracked']:,} users "
        f"and {got['categories_tracked']} categories tracked: p50 {got['p50_ms']} ms, "
        f"p99 {got['p99_ms']} ms (bar p99 < 50 ms: {'met' if bar else 'NOT met'})"
    )
    print(f"rising {got['top_rising']}; falling {got['top_falling']}")
    path = figures_path(args.json, "trends")
    doc = {"args": vars(args) | {"json": None}, "feed": fed, "categories": got, "bar_met": bar}
    write_figures(path, doc | {"machine": machine_note()})
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
