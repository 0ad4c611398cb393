"""Prometheus scraping a worker on the real broker: every dashboard query has data, every rule
evaluates.

A real Prometheus (deploy/prometheus/install.sh installs it) runs deploy/prometheus/prometheus.yml
and rules.yml, its target replaced by the worker this test starts, while a simulated log with some
malformed messages is produced at a steady rate, so that rates and histograms have recent
samples when the dashboards' expressions are evaluated.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from decay_cli.replay import encode, produce
from tests.integration.harness import Setup, WorkerProcess, produce_messages, worker_log_errors
from tests.integration.prometheus import (
    JOB,
    RULES_YML,
    PanelQuery,
    PrometheusProcess,
    dashboards,
    has_data,
    panel_queries,
    prometheus_binary,
    server_config,
    substitute,
)
from training.simulate import simulate

pytestmark = pytest.mark.kafka

Message = tuple[bytes | None, bytes]
BURST = 2000  # messages produced before the worker starts
RATE = 150.0  # then messages per second: about a minute of them, unless the test ends first


def load(users: int, days: float, seed: int) -> list[Message]:
    """A simulated log with a malformed message every 40 (three dead-letter reasons)."""
    frame = simulate(n_users=users, days=days, seed=seed).events
    good = [
        encode({k: v for k, v in r.items() if v is not None and v == v})
        for r in frame.to_dict(orient="records")
    ]
    event = {"event_id": "bad", "user_id": "mallory", "ts": 1_704_100_000_000, "type": "view"}
    bad: list[bytes] = [
        b"{not json",
        json.dumps({**event, "type": "levitate"}).encode(),
        json.dumps({k: v for k, v in event.items() if k != "ts"}).encode(),
    ]
    out: list[Message] = []
    for i, message in enumerate(good):
        out.append(message)
        if i % 40 == 0:
            out.append((b"mallory", bad[(i // 40) % len(bad)]))
    return out


class Load:
    """Produces messages at a steady rate in a thread, until they run out or ``stop()``."""

    def __init__(self, bootstrap: str, topic: str, messages: list[Message]) -> None:
        self._stop = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

        def messages_until_stopped() -> Iterator[Message]:
            for message in messages:
                if self._stop.is_set():
                    return
                yield message

        def run() -> None:
            try:
                self.sent = asyncio.run(produce(messages_until_stopped(), bootstrap, topic, RATE))
            except BaseException as exc:  # reported by stop()
                self.error = exc

        self._thread = threading.Thread(target=run, name="load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None:
            raise AssertionError(f"producing the load failed: {self.error!r}")


def rules_of(prom: PrometheusProcess) -> list[dict[str, Any]]:
    return [rule for group in prom.get("/api/v1/rules")["groups"] for rule in group["rules"]]


def test_dashboards_and_rules_on_a_live_worker(bootstrap: str, tmp_path: Path) -> None:
    binary = prometheus_binary()
    started = time.monotonic()
    setup = Setup("obs", bootstrap, tmp_path / "obs-state")
    setup.create_topics()
    s = setup.settings()
    messages = load(users=200, days=30, seed=11)
    produce_messages(bootstrap, s.events_topic, messages[:BURST])
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    target = f"127.0.0.1:{worker.port}"
    prom = PrometheusProcess(binary, server_config([target]), tmp_path / "prometheus")
    producer = Load(bootstrap, s.events_topic, messages[BURST:])
    try:
        prom.wait_for(prom.ready, 60, "prometheus ready")

        # 1. The worker is a healthy target of the job.
        def target_up() -> bool:
            targets = prom.get("/api/v1/targets", state="active")["activeTargets"]
            return any(
                t["labels"].get("job") == JOB
                and t["labels"].get("instance") == target
                and t["health"] == "up"
                for t in targets
            )

        prom.wait_for(target_up, 90, f"target {target} up")

        # 2. Every panel's expression, as Grafana sends it, returns a finite sample.
        boards = dashboards()
        assert set(boards) == {"operations", "model"}
        queries: list[tuple[PanelQuery, str]] = [
            (q, substitute(q.expr, board))
            for board in boards.values()
            for q in panel_queries(board)
        ]
        assert len(queries) >= 25
        waiting: dict[PanelQuery, str] = dict(queries)

        def all_have_data() -> bool:
            for q, expr in list(waiting.items()):
                if has_data(prom.query(expr)):  # a query Prometheus refuses raises here
                    del waiting[q]
            return not waiting

        try:
            prom.wait_for(all_have_data, 120, "data for every panel")
        except AssertionError as exc:
            missing = "\n".join(f"  {q} -> {prom.query(e)}" for q, e in waiting.items())
            raise AssertionError(f"{exc}; still without data:\n{missing}") from None

        # 3. The instance variable lists the worker.
        for board in boards.values():
            for var in board["templating"]["list"]:
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
                assert match, var["query"]["query"]
                selector, label = match.groups()
                series = prom.get("/api/v1/series", **{"match[]": selector})
                assert target in {s.get(label) for s in series}, var["name"]

        # 4. Every rule of rules.yml is loaded and evaluates; the recording rules have data.
        want = {
            rule.get("record") or rule["alert"]
            for group in yaml.safe_load(RULES_YML.read_text())["groups"]
            for rule in group["rules"]
        }

        def rules_ok() -> bool:
            rules = rules_of(prom)
            return {r["name"] for r in rules} == want and all(r["health"] == "ok" for r in rules)

        try:
            prom.wait_for(rules_ok, 30, "every rule evaluated with health ok")
        except AssertionError as exc:
            bad = [(r["name"], r["health"], r.get("lastError")) for r in rules_of(prom)]
            raise AssertionError(f"{exc}: {bad}") from None
        records = sorted(r["name"] for r in rules_of(prom) if r["type"] == "recording")
        assert records
        prom.wait_for(
            lambda: all(has_data(prom.query(name)) for name in records),
            30,
            f"data from the recording rules {records}",
        )
        # The worker is up and busy: none of the alerts may fire.
        firing = [a for r in rules_of(prom) if r["type"] == "alerting" for a in r["alerts"]]
        assert firing == []
    finally:
        producer.stop()
        prom.stop()
        code = worker.stop()
    assert producer.sent > 0
    assert code == 0, f"worker exit code {code}; see {worker.log_path}"
    assert worker_log_errors(worker.log_path) == []
    print(
        f"{len(queries)} panel queries and {len(want)} rules checked against a live worker "
        f"after {BURST + producer.sent} messages, in {time.monotonic() - started:.1f}s"
    )
