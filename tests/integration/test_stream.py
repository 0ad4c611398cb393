"""The worker end to end on the real broker: alerts, dead letters, crashes, batch sizes."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from decay.state import decode_state
from decay_cli.replay import encode
from tests.integration.harness import (
    Setup,
    WorkerProcess,
    commit_progress,
    committed_everything,
    oracle,
    produce_messages,
    read_alerts,
    read_topic,
    run_to_end,
    topic_records,
    worker_log_errors,
)
from training.simulate import simulate

pytestmark = pytest.mark.kafka


def simulated_messages(users: int, days: float, seed: int) -> list[tuple[bytes | None, bytes]]:
    frame = simulate(n_users=users, days=days, seed=seed).events
    records = frame.to_dict(orient="records")
    return [encode({k: v for k, v in r.items() if v is not None and v == v}) for r in records]


@pytest.fixture(scope="module")
def sim_messages() -> list[tuple[bytes | None, bytes]]:
    return simulated_messages(users=300, days=30, seed=5)


def setup_for(name: str, bootstrap: str, tmp_path: Path) -> Setup:
    setup = Setup(name, bootstrap, tmp_path / f"{name}-state")
    setup.create_topics()
    return setup


def expected_alerts(setup: Setup, now_ms: int) -> tuple[list[dict], dict]:
    s = setup.settings()
    outs, store = oracle(topic_records(s.bootstrap, s.events_topic), s, now_ms)
    alerts = [json.loads(a.payload) for out in outs for a in out.alerts]
    flat = {(p, k): v for p, kv in store.data.items() for k, v in kv.items()}
    return alerts, flat


def test_simulated_log_gives_the_expected_alerts(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    setup = setup_for("sim", bootstrap, tmp_path)
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, sim_messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        run_to_end(worker, setup, len(sim_messages))
        got = read_alerts(bootstrap, s.alerts_topic)
        want, state = expected_alerts(setup, now_ms=int(time.time() * 1000))
        assert len(want) > 50
        assert sorted((a["alert_id"], a["kind"], a["user_id"]) for a in got) == sorted(
            (a["alert_id"], a["kind"], a["user_id"]) for a in want
        )
        # Every valid event applied once: per-user counts match the in-memory run.
        users = sorted({k for (_, k) in state if not k.startswith("\x00")})
        for user in random.Random(1).sample(users, 25):
            status, body = worker.user(user)
            partition = next(p for (p, k) in state if k == user)
            assert status == 200
            assert body["events_seen"] == decode_state(state[(partition, user)]).n_total
        assert worker.user("nobody")[0] == 404
        assert worker.metrics()['decay_events_total{result="ok"}'] > 0
    finally:
        assert worker.stop() == 0
    assert worker_log_errors(worker.log_path) == []


def malformed_messages(n: int, rng: random.Random) -> list[tuple[tuple[bytes | None, bytes], str]]:
    """``n`` bad messages of many kinds, each with the reason the worker must give."""
    good = {"event_id": "x", "user_id": "mallory", "ts": 1_704_100_000_000, "type": "view"}

    def js(obj: object) -> bytes:
        return json.dumps(obj).encode()

    makers = [
        (lambda i: b"{not json " + str(i).encode(), "invalid_json"),
        (lambda i: bytes(rng.randrange(128, 256) for _ in range(20)), "not_utf8"),
        (lambda i: json.dumps({**good, "event_id": str(i)}).encode("utf-16"), "not_utf8"),
        (lambda i: js([i, "list"]), "not_an_object"),
        (lambda i: js({k: v for k, v in good.items() if k != "user_id"}), "missing_field"),
        (lambda i: js({k: v for k, v in good.items() if k != "ts"}), "missing_field"),
        (lambda i: js({**good, "event_id": i}), "wrong_type"),
        (lambda i: js({**good, "price": "cheap"}), "wrong_type"),
        (lambda i: js({**good, "ts": "last tuesday"}), "bad_timestamp"),
        (lambda i: js({**good, "ts": 12}), "timestamp_out_of_range"),
        (lambda i: js({**good, "type": "levitate"}), "unknown_event_type"),
        (lambda i: js({**good, "quantity": -1}), "invalid_value"),
        (lambda i: js({**good, "pad": "x" * 70_000}), "too_large"),
    ]
    out = []
    for i in range(n):
        make, reason = makers[i % len(makers)]
        value = make(i)
        key = b"mallory"
        out.append(((key, value), reason))
    return out


def test_malformed_messages_go_to_the_dead_letter_topic(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    setup = setup_for("dlq", bootstrap, tmp_path)
    s = setup.settings()
    rng = random.Random(42)
    bad = malformed_messages(1000, rng)
    valid = sim_messages[:6000]
    mixed: list[tuple[tuple[bytes | None, bytes], str | None]] = [(m, None) for m in valid] + bad
    rng.shuffle(mixed)
    produce_messages(bootstrap, s.events_topic, [m for m, _ in mixed])
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        run_to_end(worker, setup, len(mixed))
        dead = read_topic(bootstrap, s.dead_letter_topic)
        assert len(dead) == 1000
        by_value = Counter((m.value, dict(m.headers)["decay-reason"].decode()) for m in dead)
        assert by_value == Counter((m[1], reason) for m, reason in bad)
        events = {(m.partition, m.offset): m.value for m in read_topic(bootstrap, s.events_topic)}
        for m in dead:
            h = {k: v.decode() for k, v in m.headers}
            assert h["decay-source-topic"] == s.events_topic
            assert (
                events[(int(h["decay-source-partition"]), int(h["decay-source-offset"]))] == m.value
            )
        metrics = worker.metrics()
        assert metrics['decay_events_total{result="invalid"}'] == 1000
        applied = metrics.get('decay_events_total{result="ok"}', 0) + metrics.get(
            'decay_events_total{result="late"}', 0
        )
        assert applied == len(valid)
        reasons = Counter(r for _, r in bad)
        for reason, n in reasons.items():
            assert metrics[f'decay_dead_letters_total{{reason="{reason}"}}'] == n
        # the valid events gave exactly the alerts they give without the noise
        want, _ = expected_alerts(setup, now_ms=int(time.time() * 1000))
        got = read_alerts(bootstrap, s.alerts_topic)
        assert sorted(a["alert_id"] for a in got) == sorted(a["alert_id"] for a in want)
    finally:
        assert worker.stop() == 0


def test_sigkill_mid_stream_loses_nothing(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    setup = setup_for("kill", bootstrap, tmp_path)
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, sim_messages)
    log = tmp_path / "worker.log"
    first = WorkerProcess(setup, log, batch_max=200)
    third = len(sim_messages) // 3

    def committed() -> int:
        return sum(c for c, _ in commit_progress(bootstrap, s.app_id, s.events_topic).values())

    # Killed once it has committed something and gone a third of the way: decided on what
    # the worker did, not on how fast it is. A fast worker may have committed the whole log
    # by then; the checks below hold in both cases (nothing left: nothing may be re-sent).
    first.wait_for(
        lambda: first.events_seen() >= third and committed() > 0, 180, "a third and a commit"
    )
    first.kill()
    # The restarted worker is handed everything from the committed offsets on.
    at_kill = commit_progress(bootstrap, s.app_id, s.events_topic)
    left = sum(end - c for c, end in at_kill.values())
    assert 0 <= left < len(sim_messages)
    print(f"killed with {left} of {len(sim_messages)} records past the committed offsets")
    second = WorkerProcess(setup, log, batch_max=200)
    try:
        run_to_end(second, setup, left)
        got = read_alerts(bootstrap, s.alerts_topic)
        want, state = expected_alerts(setup, now_ms=int(time.time() * 1000))
        got_ids = Counter(a["alert_id"] for a in got)
        want_ids = {a["alert_id"] for a in want}
        assert set(got_ids) == want_ids  # no alert lost, none invented
        duplicated = sum(n - 1 for n in got_ids.values())
        # Only alerts caused by records the killed worker applied past the committed offsets
        # (what it did since its last commit, one commit interval) can come twice. The
        # restarted worker finds those records applied already: `k` of them in all, so at
        # most the `k` records after each partition's committed offset.
        m = second.metrics()
        k = int(
            m.get('decay_events_total{result="redelivered"}', 0)
            + m.get('decay_events_total{result="invalid"}', 0)
        )
        records = topic_records(bootstrap, s.events_topic)
        now = int(time.time() * 1000)

        def alerts_below(extra: int) -> set[str]:
            upto = [r for r in records if r.offset < at_kill[r.partition][0] + extra]
            outs, _ = oracle(upto, s, now)
            return {json.loads(a.payload)["alert_id"] for out in outs for a in out.alerts}

        before = alerts_below(0)
        bound = len(alerts_below(k) - before)
        print(
            f"alerts {len(want_ids)}; after SIGKILL: {k} records applied twice, "
            f"{duplicated} alerts duplicated, at most {bound} possible (caused by the {k} "
            f"records after each committed offset; {len(want_ids - before)} past them in all)"
        )
        assert duplicated <= bound
        for (_, user), raw in state.items():
            if user.startswith("\x00"):
                continue
            want_state = decode_state(raw)
            status, body = second.user(user)
            assert status == 200 and body["events_seen"] == want_state.n_total, user
            assert (body["dormant_since"] is None) == (want_state.dormant_since_ms == 0), user
    finally:
        assert second.stop() == 0


def test_a_graceful_stop_commits_what_the_worker_applied(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    """SIGTERM (a rolling restart): the worker commits what it applied before it goes, so the
    next start neither applies nor re-sends anything again. The commit timer is set too slow
    to do it (a bench run saw a stopped worker's last batch, 2,000 records, uncommitted)."""
    setup = setup_for("term", bootstrap, tmp_path)
    s = setup.settings()
    messages = sim_messages[:3000]
    produce_messages(bootstrap, s.events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log", commit_interval_s=3600)
    try:
        worker.wait_for(lambda: worker.events_seen() >= len(messages), 180, "all records")
    finally:
        assert worker.stop() == 0
    progress = commit_progress(bootstrap, s.app_id, s.events_topic)
    assert all(committed == end for committed, end in progress.values()), progress


def test_replays_with_other_batch_sizes_give_identical_alerts(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    messages = sim_messages[:8000]
    results = []
    for batch in ("1", "700"):
        setup = setup_for(f"batch{batch}", bootstrap, tmp_path)
        s = setup.settings()
        produce_messages(bootstrap, s.events_topic, messages)
        worker = WorkerProcess(setup, tmp_path / f"worker{batch}.log",
                               batch_max=int(batch))  # fmt: skip
        try:
            run_to_end(worker, setup, len(messages))
        finally:
            assert worker.stop() == 0
        alerts = read_alerts(bootstrap, s.alerts_topic)
        results.append(sorted((a["alert_id"], a["kind"], a["score"]) for a in alerts))
    assert len(results[0]) > 10
    assert results[0] == results[1]


def test_an_exception_in_the_agent_stops_the_worker_and_loses_nothing(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    """Faust acks an event whose agent raised; ours must neither ack nor carry on."""
    setup = setup_for("fault", bootstrap, tmp_path)
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, sim_messages)
    log = tmp_path / "worker.log"
    script = str(Path(__file__).with_name("faulty_worker.py"))
    # The slow stop gives the worker's timers (commits, the tail check) time to run after
    # the failure: they must not commit or apply past the failed batch (a CI run did).
    faulty = WorkerProcess(
        setup, log, command=(script,), extra_env={"FAIL_AFTER": "4000", "CRASH_DELAY_S": "8"}
    )
    assert faulty.proc.wait(timeout=180) != 0  # it stopped by itself, with an error
    assert "InjectedFault" in log.read_text(errors="replace")
    worker = WorkerProcess(setup, log)
    try:
        worker.wait_for(
            lambda: committed_everything(bootstrap, s.app_id, s.events_topic), 180, "commits"
        )
        got = {a["alert_id"] for a in read_alerts(bootstrap, s.alerts_topic)}
        want, state = expected_alerts(setup, now_ms=int(time.time() * 1000))
        assert got == {a["alert_id"] for a in want}
        for (_, user), raw in list(state.items())[:50]:
            if not user.startswith("\x00"):
                assert worker.user(user)[1]["events_seen"] == decode_state(raw).n_total
    finally:
        assert worker.stop() == 0


def test_exactly_once_alerts_across_a_kill_inside_a_transaction(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    """DECAY_EXACTLY_ONCE: the worker dies with a transaction open (its alerts sent, its
    batch's state on the broker, its offsets not committed), the next one is SIGKILLed from
    outside halfway through the rest; after a third start a read_committed subscriber sees
    every expected alert exactly once."""
    setup = setup_for("eos", bootstrap, tmp_path)
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, sim_messages)
    log = tmp_path / "worker.log"
    script = str(Path(__file__).with_name("killing_worker.py"))
    dying = WorkerProcess(
        setup, log, command=(script,), extra_env={"KILL_AT": "12"}, batch_max=200, exactly_once=True
    )
    assert dying.proc.wait(timeout=180) == -9  # SIGKILLed itself, mid-transaction
    at_kill = commit_progress(bootstrap, s.app_id, s.events_topic)
    left = sum(end - c for c, end in at_kill.values())
    assert 0 < left < len(sim_messages)
    second = WorkerProcess(setup, log, batch_max=200, exactly_once=True)
    second.wait_for(lambda: second.events_seen() >= left // 2, 180, "half of the rest")
    second.kill()
    left = sum(end - c for c, end in commit_progress(bootstrap, s.app_id, s.events_topic).values())
    worker = WorkerProcess(setup, log, batch_max=200, exactly_once=True)
    try:
        run_to_end(worker, setup, left)
        want, _ = expected_alerts(setup, now_ms=int(time.time() * 1000))
        want_ids = {a["alert_id"] for a in want}
        committed = Counter(
            a["alert_id"] for a in read_alerts(bootstrap, s.alerts_topic, "read_committed")
        )
        everything = Counter(a["alert_id"] for a in read_alerts(bootstrap, s.alerts_topic))
        aborted = sum(everything.values()) - sum(committed.values())
        print(f"alerts {len(want_ids)}; in aborted transactions {aborted}")
        assert set(committed) == want_ids
        assert max(committed.values()) == 1
        assert aborted > 0  # the kill did leave alerts behind, which read_committed skips
    finally:
        assert worker.stop() == 0


def test_records_the_consumer_skips_are_read_by_the_worker_itself(
    bootstrap: str, tmp_path: Path, sim_messages: list
) -> None:
    """faust-streaming's consumer can skip records after a rebalance: inside a partition (a
    later record shows the jump) or at its end (none does). Both are read and applied."""
    setup = setup_for("skips", bootstrap, tmp_path)
    s = setup.settings()
    produce_messages(bootstrap, s.events_topic, sim_messages)
    ends = Counter(r.partition for r in topic_records(bootstrap, s.events_topic))
    assert min(ends[0], ends[1]) > 300
    tail = ends[1] - 50
    script = str(Path(__file__).with_name("skipping_worker.py"))
    worker = WorkerProcess(
        setup,
        tmp_path / "worker.log",
        command=(script,),
        extra_env={"SKIP": f"0:100:200,1:{tail}:"},
    )
    try:
        run_to_end(worker, setup, len(sim_messages))
        got = read_alerts(bootstrap, s.alerts_topic)
        want, _ = expected_alerts(setup, now_ms=int(time.time() * 1000))
        assert sorted(a["alert_id"] for a in got) == sorted(a["alert_id"] for a in want)
        metrics = worker.metrics()
        assert metrics["decay_refetched_records_total"] >= 150
        log = worker.log_path.read_text(errors="replace")
        assert "came before" in log and "no record delivered past" in log
    finally:
        assert worker.stop() == 0
