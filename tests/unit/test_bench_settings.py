"""The benchmarks' workers run with the caller's ``DECAY_*`` settings (bench/latency.py and
bench/throughput.py strip them from the child's environment and pass them in its spec), and
the benchmark's own topics, group and ports win over them."""

from __future__ import annotations

from pathlib import Path

from bench.common import worker_settings_from_env
from bench.throughput import child_settings


def test_the_callers_worker_settings_reach_the_benchmarks_worker(tmp_path: Path) -> None:
    given = worker_settings_from_env(
        {
            "DECAY_BATCH_MAX": "200",
            "DECAY_BATCH_WITHIN_S": "0.005",
            "DECAY_EVENTS_TOPIC": "theirs",
            "DECAY_NOT_A_SETTING": "x",
            "PATH": "/bin",
        }
    )
    assert given == {"batch_max": "200", "batch_within_s": "0.005", "events_topic": "theirs"}
    spec = {
        "settings": given,
        "bootstrap": "127.0.0.1:1",
        "group": "g",
        "topic": "bench-events",
        "partitions": 4,
        "data_dir": str(tmp_path),
        "web_port": 1,
        "loglevel": "info",
    }
    settings = child_settings(spec)
    assert (settings.batch_max, settings.batch_within_s) == (200, 0.005)
    assert (settings.events_topic, settings.app_id) == ("bench-events", "g")
