"""The Prometheus config, rules and Grafana dashboards, checked without a running server.

promtool validates the config and rules and runs the rules' unit tests
(deploy/prometheus/rules_test.yml); every metric the dashboards and rules name must be one
that stream_app/metrics.py exports. tests/integration/test_observability.py then runs them all
against a live worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream_app.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is missing: run deploy/prometheus/install.sh"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI is set: a missing binary is a failure)")
        pytest.skip(message)
    return subprocess.run([path, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


def exported_series() -> set[str]:
    """Every series name the worker's metrics can have, as Prometheus sees them."""
    registry = CollectorRegistry()
    Metrics.create(registry)
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"]] + [
        inner for p in dashboard["panels"] for inner in p.get("panels", [])
    ]


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def recorded() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "rules.yml")):
        done = promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_when_they_should() -> None:
    done = promtool("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_test() -> None:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert alerts == tested


def test_dashboards_and_rules_name_only_exported_metrics() -> None:
    exported = exported_series()
    assert "decay_events_total" in exported and "decay_interest_score_bucket" in exported
    exprs = rule_exprs() + [
        t["expr"]
        for board in dashboards().values()
        for panel in panels(board)
        for t in panel.get("targets", [])
    ]
    assert len(exprs) > 30
    for expr in exprs:
        for name in re.findall(r"\bdecay_\w+", expr):
            assert name in exported, f"{name} in {expr!r}"
        for name in re.findall(r"\bdecay:[\w:]+", expr):
            assert name in recorded(), f"{name} in {expr!r}"


def test_dashboards_use_the_provisioned_datasource() -> None:
    (provisioned,) = [
        yaml.safe_load(p.read_text()) for p in (GRAFANA / "provisioning/datasources").glob("*.yml")
    ]
    uids = {d["uid"] for d in provisioned["datasources"]}
    boards = dashboards()
    assert set(boards) == {"operations.json", "model.json"}
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            assert panel["datasource"]["uid"] in uids, (name, panel["title"])
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, (name, panel["title"])
