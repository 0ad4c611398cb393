"""Training/serving parity: the worker's score after each event equals the training
package's offline score of the same log (decay.features' training path), within rtol 1e-5."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decay_cli.replay import encode
from stream_app.rollout import shipped_model
from tests.integration.harness import Setup, WorkerProcess, produce_messages, read_topic
from training.offline import score_log
from training.simulate import simulate

pytestmark = pytest.mark.kafka


def test_stream_scores_equal_offline_scores(bootstrap: str, tmp_path: Path) -> None:
    events = simulate(n_users=150, days=20, seed=21).events
    records = [
        {k: v for k, v in r.items() if v is not None and v is not pd.NA and v == v}
        for r in events.to_dict(orient="records")
    ]
    messages = [encode(r) for r in records]
    setup = Setup("parity", bootstrap, tmp_path / "state", overrides={
        "scores_topic": "parity-scores", "score_min_change": 0.0, "batch_max": 300,
    })  # fmt: skip
    setup.create_topics()
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: worker.events_seen() >= len(messages), 180, "all events")
    finally:
        assert worker.stop() == 0
    streamed = pd.DataFrame([json.loads(m.value) for m in read_topic(bootstrap, "parity-scores")])
    assert len(streamed) == len(messages)  # one score per event
    offline = score_log(pd.DataFrame(records), shipped_model(), threshold=s.dormancy_threshold)
    both = streamed.merge(offline, on="event_id", suffixes=("_stream", "_offline"))
    assert len(both) == len(messages)
    assert (both["user_id_stream"] == both["user_id_offline"]).all()
    np.testing.assert_allclose(both["score_stream"], both["score_offline"], rtol=1e-5)
    np.testing.assert_allclose(
        both["half_life_hours_stream"], both["half_life_hours_offline"], rtol=1e-5
    )
    ts = pd.DataFrame(records)[["event_id", "ts"]]
    both = both.merge(ts, on="event_id")
    finite = np.isfinite(both["deadline_hours"])
    assert both["deadline"].isna().equals(~finite)
    stream_deadline = [
        datetime.fromisoformat(d.replace("Z", "+00:00")).timestamp() * 1000
        for d in both.loc[finite, "deadline"]
    ]
    offline_deadline = both.loc[finite, "ts"] + both.loc[finite, "deadline_hours"] * 3_600_000
    np.testing.assert_allclose(stream_deadline, offline_deadline, atol=2.0)  # ms rounding
