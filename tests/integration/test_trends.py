"""/categories on a live worker after a replay: the same trends as the processor alone."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from decay import trends
from stream_app.trends import describe
from tests.integration.harness import (
    Setup,
    WorkerProcess,
    oracle,
    produce_messages,
    run_to_end,
    topic_records,
    worker_log_errors,
)
from tests.integration.test_stream import simulated_messages

pytestmark = pytest.mark.kafka


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_categories_answer_after_a_replay(bootstrap: str, tmp_path: Path) -> None:
    setup = Setup("trends", bootstrap, tmp_path / "trends-state")
    setup.create_topics()
    s = setup.settings()
    messages = simulated_messages(users=150, days=20, seed=7)
    produce_messages(bootstrap, s.events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        run_to_end(worker, setup, len(messages), 180)
        status, got = get(worker.port, "/categories?n=5&by=week")
        assert status == 200, got
        # What the processor alone makes of the same records, read the same way.
        _, store = oracle(topic_records(bootstrap, s.events_topic), s, int(time.time() * 1000))
        rules = trends.TrendRules(half_life_ms=int(s.trend_half_life_days * trends.DAY_MS))
        tables = {p: trends.CategoryTrends.restore(dict(store.data[p]), rules) for p in store.data}
        newest = max(t.clock_ms for t in tables.values())
        want = describe(tables, newest, 5, "week", rules.half_life_ms)
        assert got == want
        assert got["partitions"] == [0, 1, 2] and got["changes_known"]
        assert len(got["top"]) == 5 and got["rising"] + got["falling"]
        assert got["categories_tracked"] >= 10 and got["untracked_events"] == 0

        # The top categories' gauge, refreshed every 5 s.
        def gauge() -> dict[str, float]:
            return {
                k: v for k, v in worker.metrics().items() if k.startswith("decay_category_interest")
            }

        worker.wait_for(lambda: len(gauge()) == s.trend_metric_top, 30, "the top-N gauge")
        top = {t["category"]: t["interest"] for t in want["top"]}
        for category, value in top.items():
            assert gauge()[f'decay_category_interest{{category="{category}"}}'] == pytest.approx(
                value
            )
        assert get(worker.port, "/categories?n=0")[0] == 400
        assert worker_log_errors(tmp_path / "worker.log") == []
    finally:
        worker.stop()
