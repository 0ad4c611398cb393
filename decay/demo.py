"""``make demo``: the whole pipeline on one machine, then a summary of what it found.

Starts the broker (unless one runs), creates a fresh set of topics, starts a worker process,
replays a simulated log at full speed in event time, prints alerts as they arrive, and ends
with the alerts by kind and how many ``dormant`` users really stayed away. Everything it
started is stopped at the end, on an error, or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from decay.alert_feed import follow_alerts, format_alert
from decay.eventlog import write_events
from decay.kafka_broker import KafkaBroker, find_repo_root
from decay.replay import replay_file
from decay.scoring import fit_half_life, gaps_from_events
from decay.settings import Settings
from decay.simulate import simulate
from decay.topics import ensure_topics

DAY_MS = 86_400_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events_seen(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("decay_events_total{")
    )


@dataclass(frozen=True)
class Outcome:
    """For dormant alerts that the log can judge: did the user stay away for the horizon?"""

    judged: int
    stayed_away: int
    too_recent: int

    @property
    def share(self) -> float:
        return self.stayed_away / self.judged if self.judged else float("nan")


def dormant_outcome(alerts: list[dict[str, Any]], events: pd.DataFrame, horizon_ms: int) -> Outcome:
    """Share of dormant alerts after which the user had no event within ``horizon_ms``.

    Alerts closer than the horizon to the end of the log cannot be judged and are counted apart.
    """
    end = int(events["ts"].max())
    by_user = {u: np.sort(g.to_numpy()) for u, g in events.groupby("user_id")["ts"]}
    judged = stayed = recent = 0
    for alert in alerts:
        if alert["kind"] != "dormant":
            continue
        at = int(pd.Timestamp(alert["event_time"]).value // 1_000_000)
        if at + horizon_ms > end:
            recent += 1
            continue
        ts = by_user.get(alert["user_id"], np.zeros(0, dtype=np.int64))
        i = int(np.searchsorted(ts, at, side="right"))
        came_back = i < ts.shape[0] and ts[i] <= at + horizon_ms
        judged += 1
        stayed += not came_back
    return Outcome(judged, stayed, recent)


def run_demo(users: int, days: float, seed: int, horizon_days: float = 14.0, show: int = 40) -> int:
    root = find_repo_root()
    run = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / "var" / "demo" / run
    run_dir.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(root)
    started_broker = not broker.is_running()
    worker: subprocess.Popen[bytes] | None = None
    try:
        state = "starting" if started_broker else "already running"
        print(f"== broker: {state} on {broker.bootstrap}")
        broker.start()

        print(f"== simulating {users} users over {days:g} days (seed {seed})")
        log = simulate(n_users=users, days=days, seed=seed)
        events = log.events
        log_file = run_dir / "events.jsonl"
        write_events(events, log_file)
        # The baseline's half-life is fitted on the first half of the log only.
        calib = events[events["ts"] < log.start_ms + (log.end_ms - log.start_ms) // 2]
        half_life_s = fit_half_life(gaps_from_events(calib["user_id"], calib["ts"]))
        print(f"   {len(events):,} events; fitted half-life {half_life_s / 3600:.1f} h")

        port = _free_port()
        settings = Settings(
            bootstrap=broker.bootstrap,
            app_id=f"demo-{run}",
            events_topic=f"demo-{run}-events",
            alerts_topic=f"demo-{run}-alerts",
            dead_letter_topic=f"demo-{run}-dlq",
            data_dir=run_dir / "state",
            web_port=port,
            half_life_hours=half_life_s / 3600.0,
        )
        asyncio.run(ensure_topics(settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DECAY_")}
        passed = ["bootstrap", "app_id", "events_topic", "alerts_topic", "dead_letter_topic"]
        passed += ["data_dir", "web_port", "half_life_hours"]
        dumped = settings.model_dump()
        env.update({f"DECAY_{name.upper()}": str(dumped[name]) for name in passed})
        env["DECAY_LOG_LEVEL"] = "warning"
        worker_log = (run_dir / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "decay", "worker"], env=env, stdout=worker_log, stderr=worker_log
        )
        print(f"== worker pid {worker.pid}; metrics at http://127.0.0.1:{port}/metrics")
        print(f"   one user: http://127.0.0.1:{port}/users/{events['user_id'].iloc[0]}")

        print(f"== replaying {log_file.name} at full speed")
        sent = asyncio.run(replay_file(log_file, settings.bootstrap, settings.events_topic))

        print("== alerts as they arrive")
        seen: list[dict[str, Any]] = []

        def on_alert(alert: dict[str, Any]) -> None:
            seen.append(alert)
            if len(seen) <= show:
                print("  ", format_alert(alert))
            elif len(seen) % 500 == 0:
                print(f"   ... {len(seen)} alerts so far")

        def done() -> bool:
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; see {worker_log.name}")
            return _events_seen(port) >= sent

        asyncio.run(follow_alerts(settings.bootstrap, settings.alerts_topic, on_alert, stop=done))
        # The worker has read everything: read the topic again until it has been quiet for a
        # while, which also collects alerts still in flight at that moment.
        final = _read_all_alerts(settings)
        print_summary(final, events, log.truth, horizon_days)
        return 0
    except KeyboardInterrupt:
        print("\n== interrupted; stopping everything")
        return 130
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        if started_broker:
            broker.stop()
        print(f"== stopped; logs and data in {run_dir}")


def _read_all_alerts(settings: Settings) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    asyncio.run(
        follow_alerts(settings.bootstrap, settings.alerts_topic, got.append, idle_timeout=3.0)
    )
    return got


def print_summary(
    alerts: list[dict[str, Any]], events: pd.DataFrame, truth: pd.DataFrame, horizon_days: float
) -> None:
    unique = {a["alert_id"]: a for a in alerts}
    kinds = Counter(a["kind"] for a in unique.values())
    print("\n== summary")
    print(f"   events replayed: {len(events):,} from {events['user_id'].nunique():,} users")
    print(f"   alerts: {len(unique):,} ({len(alerts) - len(unique)} duplicates)")
    for kind in ("dormant", "reengaged", "category_decay"):
        print(f"     {kind:<15}{kinds.get(kind, 0):>7,}")
    outcome = dormant_outcome(list(unique.values()), events, int(horizon_days * DAY_MS))
    print(
        f"   dormant users who did not come back within {horizon_days:g} days: "
        f"{outcome.stayed_away:,} of {outcome.judged:,} ({outcome.share:.1%}); "
        f"{outcome.too_recent:,} alerts too close to the end of the log to judge"
    )
    churned = set(truth.loc[truth["churned"].astype(bool), "user_id"])
    dormant_users = {a["user_id"] for a in unique.values() if a["kind"] == "dormant"}
    if dormant_users:
        share = len(dormant_users & churned) / len(dormant_users)
        print(
            f"   users with a dormant alert who churned for good (simulator's truth): {share:.1%}"
            f" (all users: {len(churned) / len(truth):.1%})"
        )
    print(json.dumps({"alerts": dict(kinds), "dormant_stayed_away_share": outcome.share}))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo(users=2000, days=60.0, seed=7))
