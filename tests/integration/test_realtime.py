"""Model rollout under load, erasure and pseudonymisation, on the real broker."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import onnx
import pytest

from decay.state import decode_state
from stream_app.rollout import shipped_model
from tests.integration.harness import (
    Setup,
    WorkerProcess,
    oracle,
    produce_messages,
    read_alerts,
    read_topic,
    run_to_end,
    topic_records,
)
from tests.integration.test_stream import simulated_messages

pytestmark = pytest.mark.kafka


def relabelled_model(target: Path, **card_fields: str) -> Path:
    """The shipped model with some card fields changed (e.g. another version)."""
    proto = onnx.load(str(shipped_model()))
    for prop in proto.metadata_props:
        name = prop.key.removeprefix("decay.")
        if name in card_fields:
            prop.value = json.dumps(card_fields[name])
    onnx.save(proto, str(target))
    return target


def test_model_rollout_under_load(bootstrap: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    first = shutil.copy(shipped_model(), models / "a-first.onnx")
    setup = Setup("roll", bootstrap, tmp_path / "state", overrides={
        "model_dir": models, "model_path": first, "model_poll_s": 0.5, "batch_max": 100,
    })  # fmt: skip
    setup.create_topics()
    s = setup.settings()
    messages = simulated_messages(users=300, days=30, seed=8)
    half = len(messages) // 2
    produce_messages(bootstrap, s.events_topic, messages[:half])
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: worker.events_seen() >= half, 180, "the first half")
        v1 = next(k for k in worker.metrics() if k.startswith("decay_model_info{"))
        # a model for another feature encoding: refused, the old one keeps serving
        bad = relabelled_model(tmp_path / "bad.onnx", feature_spec_version="other-spec")
        shutil.copy(bad, models / "b-bad.onnx")
        worker.wait_for(
            lambda: worker.metrics().get("decay_models_refused_total", 0) == 1, 60, "refusal"
        )
        assert worker.metrics()[v1] == 1
        # a good new model: rolled out without a restart, while events keep coming
        relabelled_model(models / "c-second.onnx", model_version="second-model")
        produce_messages(bootstrap, s.events_topic, messages[half:])
        worker.wait_for(
            lambda: worker.metrics().get('decay_model_info{version="second-model"}') == 1,
            60,
            "rollout",
        )
        run_to_end(worker, setup, len(messages), 180)
        assert worker.metrics()[v1] == 0
        alerts = read_topic(bootstrap, s.alerts_topic)
        versions = {json.loads(m.value)["model_version"] for m in alerts}
        assert "second-model" in versions and len(versions) == 2
        # per partition, once an alert carries the new version, none carries the old one
        for p in {m.partition for m in alerts}:
            seq = [json.loads(m.value)["model_version"] for m in alerts if m.partition == p]
            if "second-model" in seq:
                assert "second-model" not in seq[: seq.index("second-model")]
                assert set(seq[seq.index("second-model") :]) == {"second-model"}
        # no event lost or applied twice across the switch: per-user counts as in memory
        _, state = oracle(topic_records(bootstrap, s.events_topic), s, int(time.time() * 1000))
        for users in state.data.values():
            for user in [u for u in users if not u.startswith("\x00")][:40]:
                assert worker.user(user)[1]["events_seen"] == decode_state(users[user]).n_total
    finally:
        assert worker.stop() == 0


def test_erase_deletes_state_and_confirms(bootstrap: str, tmp_path: Path) -> None:
    setup = Setup("erase", bootstrap, tmp_path / "state", overrides={"pseudonym_key": "k3y"})
    setup.create_topics()
    s = setup.settings()
    messages = simulated_messages(users=50, days=10, seed=9)
    produce_messages(bootstrap, s.events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: worker.events_seen() >= len(messages), 180, "events")
        victim = json.loads(messages[0][1])["user_id"]
        status, body = worker.user(victim)
        assert status == 200
        pseudonym = body["user_id"]
        assert pseudonym != victim and pseudonym.startswith("p")
        # only pseudonyms reach alerts
        alerts = read_alerts(bootstrap, s.alerts_topic)
        raw_ids = {json.loads(v)["user_id"] for _, v in messages}
        assert alerts and not {a["user_id"] for a in alerts} & raw_ids
        assert victim not in (tmp_path / "worker.log").read_text(errors="replace")

        produce_messages(bootstrap, s.erase_topic, [(victim.encode(), victim.encode())])
        worker.wait_for(lambda: worker.user(victim)[0] == 404, 60, "erasure")
        confirmations = [a for a in read_alerts(bootstrap, s.alerts_topic) if a["kind"] == "erased"]
        assert [a["user_id"] for a in confirmations] == [pseudonym]
        changelog = read_topic(bootstrap, f"{s.app_id}-user-state-changelog")
        last = [m for m in changelog if m.key == pseudonym.encode()][-1]
        assert last.value is None  # a tombstone: compaction removes the user for good
    finally:
        assert worker.stop() == 0
