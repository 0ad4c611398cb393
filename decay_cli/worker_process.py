"""A stream worker (``python -m decay worker``) as a child process, configured by a Settings
object: what the demo and the integration tests start and watch.

Its settings reach it as ``DECAY_*`` environment variables built from the same Settings
object (none of the caller's own ``DECAY_*`` variables leak in), so the caller's view of the
worker's configuration and the worker's cannot disagree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from decay.errors import DecayError
from decay.settings import Settings


class WorkerProcessError(DecayError, RuntimeError):
    """The worker exited, or did not reach what was waited for in time."""


def free_port() -> int:
    """A free loopback port (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without its ``DECAY_*`` variables, plus
    every setting of ``settings`` that is not None as ``DECAY_<NAME>``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    env = {k: v for k, v in env.items() if not k.upper().startswith("DECAY_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"DECAY_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """One worker with its log in ``log_path``; its HTTP port is ``settings.web_port``."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        command: Sequence[str] = ("-m", "decay", "worker"),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.port = settings.web_port
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            env={**worker_env(settings), **(extra_env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> dict[str, float]:
        """Prometheus samples as {'name{labels}': value}; empty while the server is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def user(self, user_id: str) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/users/{user_id}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def events_seen(self) -> float:
        """Records handled so far, whatever their result."""
        return sum(v for k, v in self.metrics().items() if k.startswith("decay_events_total"))

    def check(self) -> None:
        """Raise when the worker has exited."""
        if self.proc.poll() is not None:
            raise WorkerProcessError(
                f"worker exited with {self.proc.returncode}; see {self.log_path}"
            )

    def wait_for(self, what: Callable[[], bool], timeout: float, label: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkerProcessError(
                    f"worker exited ({self.proc.returncode}) waiting for {label}; "
                    f"see {self.log_path}"
                )
            if what():
                return
            time.sleep(0.2)  # polling a metrics endpoint: there is no event to wait on
        raise WorkerProcessError(
            f"timed out after {timeout}s waiting for {label}; see {self.log_path}"
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 60 s; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode
