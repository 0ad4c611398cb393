"""The worker serving a lapse step model through real Kafka: the alerts and the users'
records are those of the processor alone with the same model, and the user page answers.

Needs the broker and the train extra (a tiny model is trained and exported for the test).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from decay.features import FeatureSpec
from decay.state import decode_state
from decay_cli.replay import encode
from tests.integration.harness import (
    Setup,
    WorkerProcess,
    oracle,
    produce_messages,
    read_alerts,
    run_to_end,
    topic_records,
    worker_log_errors,
)
from training.simulate import simulate

pytestmark = [pytest.mark.kafka, pytest.mark.train]


def test_the_worker_serves_a_lapse_step_model_as_the_processor_alone_does(
    bootstrap: str, tmp_path: Path
) -> None:
    from training.lapse import LapseConfig, fit
    from training.lapse_step import export

    frame = simulate(n_users=200, days=30, seed=5).events
    cfg = LapseConfig(units=8, epochs=2, unit_h=24.0, landmark_every_h=72.0, min_window_h=72.0)
    model = tmp_path / "step.onnx"
    export(fit(frame, int(frame["ts"].max()), FeatureSpec(horizon_h=72.0), cfg), model)
    messages = [
        encode({k: v for k, v in r.items() if v is not None and v == v})
        for r in frame.to_dict(orient="records")
    ]
    setup = Setup("lapse", bootstrap, tmp_path / "state", overrides={"model_path": model})
    setup.create_topics()
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        run_to_end(worker, setup, len(messages), 180)
        got = read_alerts(bootstrap, s.alerts_topic)
        outs, store = oracle(topic_records(bootstrap, s.events_topic), s, int(time.time() * 1000))
        want = [json.loads(a.payload) for out in outs for a in out.alerts]
        assert len(want) > 50
        assert {a["model_version"] for a in got} == {want[0]["model_version"]}
        assert "btyd" in want[0]["model_version"]

        def key(a: dict) -> tuple:
            return (a["alert_id"], a["kind"], a["score"], a["half_life_hours"])

        assert sorted(map(key, got)) == sorted(map(key, want))
        user = next(k for p in store.data.values() for k in p if not k.startswith("\x00"))
        status, body = worker.user(user)
        st = decode_state(next(p[user] for p in store.data.values() if user in p))
        assert status == 200 and body["events_seen"] == st.n_total
        assert len(st.model_state) == 48 + 8 * 8
    finally:
        assert worker.stop() == 0
    assert worker_log_errors(worker.log_path) == []
