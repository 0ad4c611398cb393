"""Control the local single-node Kafka broker (deploy/kafka/kafka.sh) from Python.

A thin wrapper: every call shells out to ``kafka.sh`` with the ``DECAY_KAFKA_*`` environment
variables for this broker's data dir and ports, so the script stays the one source of truth
for how the broker is configured, started and stopped. Used by the integration tests and the
demo. Nothing happens on import.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from decay.errors import DecayError

KAFKA_SH: Final = Path("deploy") / "kafka" / "kafka.sh"
HOST: Final = "127.0.0.1"


class KafkaBrokerError(DecayError, RuntimeError):
    """kafka.sh failed; the message carries its output (including the server log tail)."""


def find_repo_root(start: Path | None = None) -> Path:
    """The repo: the nearest directory above ``start`` (default: this file) with kafka.sh.

    Falls back to the current directory's ancestors, for a non-editable install.
    """
    candidates = [start] if start is not None else [Path(__file__), Path.cwd()]
    for candidate in candidates:
        path = candidate.resolve()
        for directory in (path, *path.parents):
            if (directory / KAFKA_SH).is_file():
                return directory
    raise FileNotFoundError(f"no directory containing {KAFKA_SH} above {candidates}")


class KafkaBroker:
    """One broker: a data dir and a pair of loopback ports, driven through kafka.sh."""

    def __init__(
        self,
        repo_root: Path,
        data_dir: Path | None = None,
        port: int = 19092,
        controller_port: int = 19093,
        *,
        extra_props: Sequence[str] = (),
        format_args: Sequence[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        self.repo_root = repo_root
        self.script = repo_root / KAFKA_SH
        self.data_dir = data_dir if data_dir is not None else repo_root / "var" / "kafka"
        self.port = port
        self.controller_port = controller_port
        self.extra_props = tuple(extra_props)
        self.format_args = tuple(format_args)
        self.start_timeout = start_timeout

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` string for clients."""
        return f"{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment kafka.sh runs with (the caller's plus this broker's settings)."""
        env = dict(os.environ)
        env["DECAY_KAFKA_DIR"] = str(self.data_dir)
        env["DECAY_KAFKA_PORT"] = str(self.port)
        env["DECAY_KAFKA_CONTROLLER_PORT"] = str(self.controller_port)
        env["DECAY_KAFKA_START_TIMEOUT"] = str(int(self.start_timeout))
        if self.extra_props:
            env["DECAY_KAFKA_EXTRA_PROPS"] = "\n".join(self.extra_props)
        else:
            env.pop("DECAY_KAFKA_EXTRA_PROPS", None)
        # Split on whitespace by kafka.sh: an argument must not contain spaces.
        if self.format_args:
            env["DECAY_KAFKA_FORMAT_ARGS"] = " ".join(self.format_args)
        else:
            env.pop("DECAY_KAFKA_FORMAT_ARGS", None)
        return env

    def _script(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.script), *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _checked(self, *args: str, timeout: float) -> None:
        proc = self._script(*args, timeout=timeout)
        if proc.returncode != 0:
            raise KafkaBrokerError(
                f"kafka.sh {' '.join(args)} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )

    def start(self) -> None:
        """Start the broker (fetch jars / format storage if needed); returns once it serves.

        Idempotent. Raises :class:`KafkaBrokerError` with the server log tail on failure.
        """
        # Allow for the one-off Maven fetch and storage format on top of the broker start.
        self._checked("start", timeout=self.start_timeout + 300)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s). A no-op when not running."""
        self._checked("stop", timeout=60)

    def reset(self) -> None:
        """Stop the broker and delete its data dir."""
        self._checked("reset", timeout=60)

    def is_running(self) -> bool:
        """True when a broker serves clients on :attr:`bootstrap`."""
        return self._script("status", timeout=30).returncode == 0

    def run_tool(
        self,
        alias_or_class: str,
        *args: str,
        input: str | None = None,
        timeout: float = 120.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Kafka CLI tool (``kafka.sh tool``), e.g. ``run_tool("topics", "--list",
        "--bootstrap-server", broker.bootstrap)``. Aliases: topics, console-consumer,
        console-producer, producer-perf-test, consumer-perf-test, consumer-groups, configs, ...
        or a fully qualified main class. Output is captured as text; with ``check=True`` a
        non-zero exit raises :class:`subprocess.CalledProcessError`.
        """
        return subprocess.run(
            ["bash", str(self.script), "tool", alias_or_class, *args],
            env=self.env(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def __repr__(self) -> str:
        return f"KafkaBroker(bootstrap={self.bootstrap!r}, data_dir={str(self.data_dir)!r})"
