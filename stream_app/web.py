"""HTTP pages of a worker: /metrics, and /users/{id} routed to the worker that owns the user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CollectorRegistry, generate_latest

from decay.settings import Settings
from decay.state import decode_state
from stream_app.processor import Processor
from stream_app.queries import describe_user, partition_for
from stream_app.store import FaustTableStore


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

    @app.page("/users/{user_id}")
    @app.table_route(table=table, match_info="user_id")
    async def user_page(web: Any, request: Any, user_id: str) -> Any:
        # Producers key events by the id they know; its partition says where the state is,
        # under the pseudonym when pseudonymisation is on.
        partition = partition_for(user_id.encode(), settings.partitions)
        key = pseudonym(user_id) if pseudonym is not None else user_id
        raw = store.get(partition, key)
        if raw is None:
            return web.json({"error": "unknown user"}, status=404)
        return web.json(describe_user(key, decode_state(raw), processor.scorer, now_ms()))
