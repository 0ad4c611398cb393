"""A real Prometheus server (the Debian binary) for the observability tests, and the dashboards.

The server runs the config of ``deploy/prometheus/prometheus.yml`` with its targets replaced by
the workers a test starts, on a free loopback port and a temporary storage directory.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULES_YML = DEPLOY / "prometheus" / "rules.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
JOB = "decay-worker"


def prometheus_binary() -> str:
    """The ``prometheus`` on PATH; skips the test without it, except under CI where it fails."""
    path = shutil.which("prometheus")
    if path is None:
        message = (
            "the prometheus binary is missing: run deploy/prometheus/install.sh "
            "(Debian package prometheus)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI is set: a missing binary is a failure)")
        pytest.skip(message)
    return path


def server_config(targets: Sequence[str], interval: str = "1s") -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with these targets, this interval and rules.yml."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(RULES_YML)]
    (job,) = (j for j in config["scrape_configs"] if j["job_name"] == JOB)
    job["static_configs"] = [{"targets": list(targets)}]
    return config


class PrometheusProcess:
    """``prometheus`` as a child process on a free loopback port, with its log in a file."""

    def __init__(self, binary: str, config: dict[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> Any:
        """``data`` of a Prometheus HTTP API answer; raises when its status is not success."""
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with the reason
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the samples of its vector (or the one sample of a scalar)."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "vector":
            return list(data["result"])
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise AssertionError(f"{expr}: unexpected result type {data['resultType']}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_for(self, what: Callable[[], bool], timeout: float, label: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited ({self.proc.returncode}) waiting for {label}; "
                    f"see {self.log_path}"
                )
            if what():
                return
            time.sleep(0.5)  # polling an HTTP API: there is no event to wait on
        raise AssertionError(f"timed out after {timeout}s waiting for {label}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}: {self.expr}"


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(dashboard["title"], panel["title"], target["refId"], target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


# Grafana's own variables, given the values Grafana would use for a short time range and a 1s
# scrape interval (a rate needs at least two samples in its window).
GRAFANA_VARIABLES = {"__rate_interval": "15s", "__interval": "5s", "__range": "10m"}


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """The expression as Grafana sends it with every template variable set to "All"."""
    values = dict(GRAFANA_VARIABLES)
    for var in dashboard.get("templating", {}).get("list", []):
        values[var["name"]] = var.get("allValue") or ".*"
    out = re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        expr,
    )
    if "$" in out:
        raise AssertionError(f"unknown variable left in {out!r}")
    return out


def has_data(samples: list[dict[str, Any]]) -> bool:
    """At least one sample with a finite value (NaN: a histogram with no observation)."""
    return any(math.isfinite(float(s["value"][1])) for s in samples)
