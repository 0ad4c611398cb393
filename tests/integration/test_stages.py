"""A live worker's stage histograms (decay_record_stage_seconds{stage=...}, see
stream_app/metrics.py) and decay_event_to_score_seconds count every record it scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from decay.eventlog import frame_to_records
from decay_cli.replay import encode
from stream_app.metrics import STAGES
from tests.integration.harness import Setup, WorkerProcess, produce_messages, worker_log_errors
from training.simulate import simulate

pytestmark = pytest.mark.kafka

N = 600


def count(metrics: dict[str, float], name: str, stage: str | None = None) -> float:
    labels = f'{{stage="{stage}"}}' if stage else ""
    return metrics.get(f"{name}_count{labels}", 0.0)


def test_each_stage_histogram_counts_every_record(bootstrap: str, tmp_path: Path) -> None:
    # One score message per event: every batch has messages, so the send stage too.
    setup = Setup(
        "stages",
        bootstrap,
        tmp_path / "state",
        overrides={"scores_topic": "stages-scores", "score_min_change": 0.0, "scorer": "baseline"},
    )
    setup.create_topics()
    frame = simulate(n_users=40, days=10, seed=5).events.iloc[:N]
    assert len(frame) == N
    produce_messages(
        bootstrap, setup.settings().events_topic, [encode(r) for r in frame_to_records(frame)]
    )
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: worker.events_seen() >= N, 120, f"{N} events")

        def all_counted() -> bool:
            m = worker.metrics()
            return count(m, "decay_event_to_score_seconds") == N and all(
                count(m, "decay_record_stage_seconds", stage) == N for stage in STAGES
            )

        worker.wait_for(all_counted, 30, "every record in every stage")  # send: acks
        m = worker.metrics()
        for stage in STAGES:
            inf = m[f'decay_record_stage_seconds_bucket{{le="+Inf",stage="{stage}"}}']
            assert inf == N, stage
            assert m[f'decay_record_stage_seconds_sum{{stage="{stage}"}}'] >= 0.0
        # The events were produced before the worker started: each waited at least the
        # worker's start in the fetch stage, none of that is counted as processing.
        fetch_s = m['decay_record_stage_seconds_sum{stage="fetch"}'] / N
        process_s = m['decay_record_stage_seconds_sum{stage="process"}'] / N
        assert fetch_s > process_s
    finally:
        code = worker.stop()
    assert code == 0, f"worker exit code {code}; see {worker.log_path}"
    assert worker_log_errors(worker.log_path) == []
