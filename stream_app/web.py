"""HTTP pages of a worker: /metrics, /users/{id} routed to the worker that owns the user, and
/categories (this worker's partitions)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from decay.settings import Settings
from decay.state import UserState, decode_state
from decay.trends import DAY_MS
from stream_app import trends, ui
from stream_app.processor import Processor
from stream_app.queries import Clock, describe_user, partition_for, user_clock
from stream_app.runtime.table_store import FaustTableStore


def register_pages(
    app: faust.App,
    table: Any,
    store: FaustTableStore,
    processor: Processor,
    registry: CollectorRegistry,
    settings: Settings,
    pseudonym: Callable[[str], str] | None,
    now_ms: Callable[[], int],
) -> None:
    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus reads plain text as v0.0.4.
        return web.bytes(generate_latest(registry), content_type="text/plain")

    def lookup(user_id: str) -> tuple[str, UserState, Clock] | None:
        # Producers key events by the id they know; its partition says where the state is,
        # under the pseudonym when pseudonymisation is on.
        partition = partition_for(user_id.encode(), settings.partitions)
        key = pseudonym(user_id) if pseudonym is not None else user_id
        raw = store.get(partition, key)
        if raw is None:
            return None
        # "Now" is the partition's event time (replayed history is years behind the wall
        # clock; in live mode it moves with the wall clock while the partition is idle).
        clock = user_clock(partition, processor.newest_event_ms(partition), now_ms())
        return key, decode_state(raw), clock

    @app.page("/users/{user_id}")
    @app.table_route(table=table, match_info="user_id")
    async def user_json(web: Any, request: Any, user_id: str) -> Any:
        found = lookup(user_id)
        if found is None:
            return web.json({"error": "unknown user"}, status=404)
        key, st, now = found
        related = processor.vectors.fading(st, now.now_ms, now.partition, store)
        # In a thread: its explanation runs the model.
        body = await asyncio.to_thread(describe_user, key, st, processor.scorer, now, related)
        return web.json(body)

    @app.page("/ui/users/{user_id}")
    @app.table_route(table=table, match_info="user_id")
    async def user_html(web: Any, request: Any, user_id: str) -> Any:
        found = lookup(user_id)
        if found is None:
            return web.html("<!doctype html><p>Unknown user.</p>", status=404)
        key, st, now = found
        related = processor.vectors.fading(st, now.now_ms, now.partition, store)
        page = await asyncio.to_thread(
            ui.user_page, key, st, processor.scorer, processor.threshold, now, related
        )
        return web.html(page)


def register_trend_pages(
    app: faust.App,
    processor: Processor,
    top_gauge: Gauge,
    settings: Settings,
) -> None:
    """/categories: the category trends of this worker's partitions (stream_app.trends),
    and the top-N gauge, refreshed every few seconds (labels only for the top N)."""
    half_life_ms = int(settings.trend_half_life_days * DAY_MS)

    @app.page("/categories")
    async def categories_json(web: Any, request: Any) -> Any:
        args = trends.query_args(request.query)
        if isinstance(args, str):
            return web.json({"error": args}, status=400)
        tables, now_ms = processor.category_trends()
        return web.json(trends.describe(tables, now_ms, *args, half_life_ms))

    if settings.trend_metric_top:

        @app.timer(interval=5.0)
        async def refresh_category_gauge() -> None:
            tables, now_ms = processor.category_trends()
            trends.set_top_gauge(top_gauge, tables, now_ms, settings.trend_metric_top)
