"""Ordinary mistakes end the CLI with one line and exit code 2, before any Kafka client starts.

The commands run as a user runs them (``python -m decay`` in a subprocess, logging configured
by the entry point); no broker is needed: "no broker" is a loopback port nobody listens on.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decay.settings import unknown_variables
from decay_cli import cli
from decay_kafka.kafka_broker import find_repo_root

ROOT = find_repo_root()
EVENT = {"event_id": "e1", "user_id": "u1", "ts": 1_709_287_200_000, "type": "view"}


@pytest.fixture
def closed_port() -> int:
    """A loopback port that refuses connections (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def decay(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``decay ARGS`` with only the given DECAY_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("DECAY_")}
    return subprocess.run(
        [sys.executable, "-m", "decay", *args],
        env={**base, **env},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a run that must end with exit code 2 and nothing else."""
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and " ERROR decay." in lines[0], proc.stderr
    return lines[0]


@pytest.fixture
def event_log(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(EVENT) + "\n")
    return path


@pytest.mark.parametrize("command", ["topics", "alerts", "replay", "worker"])
def test_no_broker_is_one_line(
    command: str, closed_port: int, event_log: Path, tmp_path: Path
) -> None:
    args = {"replay": [str(event_log)], "worker": ["--data-dir", str(tmp_path / "w")]}
    proc = decay(command, *args.get(command, []), "--bootstrap", f"127.0.0.1:{closed_port}")
    line = one_error(proc)
    assert f"no Kafka broker reachable at 127.0.0.1:{closed_port}: Connection refused" in line
    assert "DECAY_BOOTSTRAP" in line


def test_the_bootstrap_variable_is_the_address_tried(closed_port: int) -> None:
    line = one_error(decay("topics", DECAY_BOOTSTRAP=f"localhost:{closed_port}"))
    assert f"localhost:{closed_port}: Connection refused" in line


def test_a_missing_model_is_reported_before_kafka(closed_port: int, tmp_path: Path) -> None:
    missing = tmp_path / "none.onnx"
    bootstrap = f"127.0.0.1:{closed_port}"
    line = one_error(decay("worker", "--bootstrap", bootstrap, DECAY_MODEL_PATH=str(missing)))
    assert f"DECAY_MODEL_PATH: no model file {missing}" in line
    assert "Kafka" not in line  # no broker either: the model was checked first


def test_a_model_that_is_not_onnx_is_one_line(closed_port: int, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    bootstrap = f"127.0.0.1:{closed_port}"
    line = one_error(decay("worker", "--bootstrap", bootstrap, DECAY_MODEL_PATH=str(junk)))
    assert f"DECAY_MODEL_PATH: cannot load {junk}" in line


def test_a_bad_setting_names_its_environment_variable() -> None:
    line = one_error(decay("topics", DECAY_THRESHOLD="2", DECAY_PARTITIONS="many"))
    assert "invalid setting: " in line
    assert "DECAY_PARTITIONS: Input should be a valid integer" in line
    assert "DECAY_THRESHOLD: Input should be less than 1" in line


def test_a_bad_option_names_the_option() -> None:
    line = one_error(decay("topics", "--partitions", "0"))
    assert "--partitions: Input should be greater than or equal to 1" in line


def test_a_bad_local_kafka_setting_names_its_variable() -> None:
    line = one_error(decay("kafka", "status", DECAY_KAFKA_PORT="kafka"))
    assert "DECAY_KAFKA_PORT: Input should be a valid integer" in line


def test_an_unknown_variable_is_warned_about(closed_port: int) -> None:
    proc = decay("topics", "--bootstrap", f"127.0.0.1:{closed_port}", DECAY_TRESHOLD="0.3")
    warning, error = proc.stderr.splitlines()
    assert warning.endswith(
        "WARNING decay_cli.cli: unknown environment variable DECAY_TRESHOLD ignored "
        "(did you mean DECAY_THRESHOLD?)"
    )
    assert "no Kafka broker reachable" in error and proc.returncode == 2


def test_replay_of_a_missing_file_does_not_connect(closed_port: int, tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    line = one_error(decay("replay", str(missing), "--bootstrap", f"127.0.0.1:{closed_port}"))
    assert line.endswith(f"ERROR decay.replay: no event log {missing}; nothing sent")


def test_replay_of_an_unknown_format_is_one_line(tmp_path: Path) -> None:
    text = tmp_path / "events.txt"
    text.write_text("{}\n")
    line = one_error(decay("replay", str(text)))
    assert "unsupported event log suffix" in line


def test_variables_the_project_uses_are_known() -> None:
    """Every DECAY_* name written in the scripts, deploy files and docs is read by something
    (kafka.sh's own ones included), so none of them is warned about."""
    files = [
        ROOT / "deploy" / "kafka" / "kafka.sh",
        ROOT / "deploy" / "Dockerfile",
        ROOT / "docker-compose.yml",
        ROOT / "Makefile",
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "decay").glob("*.py"),
        *(ROOT / "decay_kafka").glob("*.py"),
        *(ROOT / "decay_cli").glob("*.py"),
        *(ROOT / "stream_app").glob("*.py"),
    ]
    names = {n for f in files for n in re.findall(r"\bDECAY_[A-Z][A-Z_]*[A-Z]\b", f.read_text())}
    assert {"DECAY_KAFKA_PORT", "DECAY_KAFKA_HEAP_OPTS", "DECAY_THRESHOLD"} <= names
    assert unknown_variables(dict.fromkeys(names, "")) == []


def test_unknown_variables() -> None:
    environ = {
        "DECAY_THRESHOLD": "0.3",
        "DECAY_KAFKA_DIR": "/tmp/k",
        "decay_web_port": "1",  # pydantic-settings reads names case-insensitively
        "DECAY_KAFKA_PROT": "1",
        "DECAY_NOTHING_LIKE_IT": "1",
        "HOME": "/root",
    }
    assert unknown_variables(environ) == [
        "unknown environment variable DECAY_KAFKA_PROT ignored (did you mean DECAY_KAFKA_PORT?)",
        "unknown environment variable DECAY_NOTHING_LIKE_IT ignored",
    ]


def test_decay_kafka_drives_the_broker_of_the_kafka_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DECAY_KAFKA_PORT", "29092")
    monkeypatch.setenv("DECAY_KAFKA_CONTROLLER_PORT", "29093")
    monkeypatch.setenv("DECAY_KAFKA_DIR", str(tmp_path))
    monkeypatch.setenv("DECAY_KAFKA_EXTRA_PROPS", "a=1\nb=2")
    broker = cli._broker()
    assert broker.bootstrap == "127.0.0.1:29092"
    env = broker.env()
    assert env["DECAY_KAFKA_PORT"] == "29092"
    assert env["DECAY_KAFKA_CONTROLLER_PORT"] == "29093"
    assert env["DECAY_KAFKA_DIR"] == str(tmp_path)
    assert env["DECAY_KAFKA_EXTRA_PROPS"] == "a=1\nb=2"


def test_decay_kafka_defaults_are_kafka_sh_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "CONTROLLER_PORT", "DIR", "EXTRA_PROPS", "FORMAT_ARGS"):
        monkeypatch.delenv(f"DECAY_KAFKA_{name}", raising=False)
    script = (ROOT / "deploy" / "kafka" / "kafka.sh").read_text()
    broker = cli._broker()
    assert f'PORT="${{DECAY_KAFKA_PORT:-{broker.port}}}"' in script
    assert f'CPORT="${{DECAY_KAFKA_CONTROLLER_PORT:-{broker.controller_port}}}"' in script
    assert broker.data_dir == ROOT / "var" / "kafka"
    assert "DECAY_KAFKA_EXTRA_PROPS" not in broker.env()


def test_worker_help_points_to_decay_settings() -> None:
    result = CliRunner().invoke(cli.app, ["worker", "--help"])
    assert result.exit_code == 0
    assert "`decay settings` lists them" in " ".join(result.output.split())


def test_the_settings_page_is_the_output_of_decay_settings() -> None:
    result = CliRunner().invoke(cli.app, ["settings"])
    assert result.exit_code == 0, result.output
    table = result.output.strip()
    assert table.count("\n") > 10
    assert table in (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
