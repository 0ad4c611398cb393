"""``make demo``: the whole pipeline on one machine, then a summary of what it found.

Starts the broker (unless one runs), creates a fresh set of topics, starts two workers on the
same events topic (a model, and the exponential-decay baseline, each with its own group and
alerts topic), replays a log at full speed in event time (the CDNOW purchase log by default,
or the simulator's), prints the model's alerts as they arrive, and ends with the alerts by
kind and the dormant alerts' precision and recall for both. Both learn from the first part of
the log only and are judged on the rest: on CDNOW the model is the lapse model trained on weeks
1-39 (``stream_app/models/cdnow-lapse.onnx``), on the simulator the default model. Everything
it started is stopped at the end, on an error, or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from decay.durations import DAY_MS
from decay.eventlog import cdnow_events, write_events
from decay.scoring import AnyScorer, fit_half_life, gaps_from_events
from decay.settings import Settings
from decay_cli.alert_feed import follow_alerts, format_alert
from decay_cli.replay import replay_file
from decay_cli.worker_process import WorkerProcess, free_port
from decay_kafka.kafka_broker import KafkaBroker, find_repo_root
from decay_kafka.topics import ensure_topics
from stream_app.rollout import load_scorer, shipped_model
from training.simulate import simulate

# The end of CDNOW's week 39: the shipped CDNOW model saw only events before it.
CDNOW_CUT_MS = int(pd.Timestamp("1997-10-01", tz="UTC").value // 1_000_000)


@dataclass(frozen=True)
class Outcome:
    """For dormant alerts that the log can judge: did the user stay away for the horizon?"""

    judged: int
    stayed_away: int
    too_recent: int
    median_silence_days: float = float("nan")  # since the user's last event, at the alerts

    @property
    def share(self) -> float:
        return self.stayed_away / self.judged if self.judged else float("nan")


def dormant_outcome(
    alerts: list[dict[str, Any]], events: pd.DataFrame, horizon_ms: int, from_ms: int = 0
) -> Outcome:
    """Share of dormant alerts (from ``from_ms`` on) after which the user had no event within
    ``horizon_ms``: the alerts' precision.

    Alerts closer than the horizon to the end of the log cannot be judged and are counted apart.
    """
    end = int(events["ts"].max())
    by_user = {u: np.sort(g.to_numpy()) for u, g in events.groupby("user_id")["ts"]}
    judged = stayed = recent = 0
    silences: list[int] = []
    for alert in alerts:
        if alert["kind"] != "dormant":
            continue
        at = alert_ms(alert)
        if at < from_ms:
            continue
        if at + horizon_ms > end:
            recent += 1
            continue
        ts = by_user.get(alert["user_id"], np.zeros(0, dtype=np.int64))
        i = int(np.searchsorted(ts, at, side="right"))
        came_back = i < ts.shape[0] and ts[i] <= at + horizon_ms
        judged += 1
        stayed += not came_back
        if i:
            silences.append(at - int(ts[i - 1]))
    median = float(np.median(silences)) / DAY_MS if silences else float("nan")
    return Outcome(judged, stayed, recent, median)


@dataclass(frozen=True)
class Recall:
    """Of the times a user then stayed away ``horizon`` (an event followed by that much
    silence, its end in the evaluated period), how many had a dormant alert within it."""

    caught: int
    episodes: int

    @property
    def share(self) -> float:
        return self.caught / self.episodes if self.episodes else float("nan")


def alert_ms(alert: dict[str, Any]) -> int:
    return int(pd.Timestamp(alert["event_time"]).value // 1_000_000)


def dormant_recall(
    alerts: list[dict[str, Any]], events: pd.DataFrame, horizon_ms: int, from_ms: int
) -> Recall:
    """See :class:`Recall`: episodes whose ``horizon`` of silence ends between ``from_ms`` and
    the end of the log; caught when a dormant alert came in (event, event + horizon]."""
    end = int(events["ts"].max())
    fired: dict[str, list[int]] = {}
    for a in alerts:
        if a["kind"] == "dormant":
            fired.setdefault(a["user_id"], []).append(alert_ms(a))
    ev = events.sort_values(["user_id", "ts"], kind="stable")
    nxt = ev.groupby("user_id")["ts"].shift(-1)
    silent_until = nxt.fillna(end + 1).astype("int64")
    away = (silent_until - ev["ts"] > horizon_ms) & (ev["ts"] + horizon_ms >= from_ms)
    away &= ev["ts"] + horizon_ms <= end
    caught = episodes = 0
    for user, t in zip(ev.loc[away, "user_id"], ev.loc[away, "ts"], strict=True):
        episodes += 1
        times = np.asarray(fired.get(user, ()), dtype=np.int64)
        caught += bool(((times > t) & (times <= t + horizon_ms)).any())
    return Recall(caught, episodes)


def base_rate(events: pd.DataFrame, horizon_ms: int) -> float:
    """For reference: the share of all events after which the user had no event within the
    horizon (events closer than the horizon to the end excluded)."""
    ev = events.sort_values(["user_id", "ts"], kind="stable")
    nxt = ev.groupby("user_id")["ts"].shift(-1)
    judged = ev["ts"] + horizon_ms <= int(events["ts"].max())
    stayed = nxt.isna() | (nxt - ev["ts"] > horizon_ms)
    return float(stayed[judged].mean())


def _load(
    data: str, users: int, days: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if data == "cdnow":
        return cdnow_events(sample=False), None
    log = simulate(n_users=users, days=days, seed=seed)
    return log.events, log.truth


@dataclass(frozen=True)
class Row:
    """One worker of the demo: its label, scorer and what its operating point is."""

    label: str
    scorer: Literal["onnx", "baseline"]
    half_life_s: float
    about: str


def _rows(model_path: Path | None, half_life_s: float, settings: Settings) -> list[Row]:
    """The model, the baseline with its fitted half-life and, when the model's card says how
    late its alerts came on the training period, the baseline with that timing (a half-life
    whose deadline is the model's median silence at its alerts there): both operating points
    of the baseline come from the training period only."""
    scorer = load_scorer(settings.model_copy(update={"model_path": model_path}))
    threshold = settings.dormancy_threshold
    base_days = half_life_s * math.log2(1.0 / threshold) / 86400.0
    rows = [
        Row("model", "onnx", half_life_s, _about(scorer, threshold)),
        Row(
            "baseline",
            "baseline",
            half_life_s,
            f"exponential, half-life {half_life_s / 86400:.1f} d fitted on the training part: "
            f"dormant after {base_days:.1f} d of silence",
        ),
    ]
    trained = getattr(scorer, "card", None)
    median = (trained.serving.get("model") or {}).get("median_silence_days") if trained else None
    if isinstance(median, int | float) and median > 0:
        timed = median * 86400.0 / math.log2(1.0 / threshold)
        rows.append(
            Row(
                "timed",
                "baseline",
                timed,
                f"exponential, dormant after {median:.1f} d: the model's median silence at "
                "its alerts on the training part (half-life "
                f"{timed / 86400:.1f} d)",
            )
        )
    return rows


def _about(scorer: AnyScorer, threshold: float) -> str:
    serving = getattr(scorer, "serving", None)
    if serving is None:
        return f"{scorer.version}: dormant below {threshold:g}"
    th = serving.threshold if serving.threshold is not None else threshold
    return (
        f"{scorer.version}: interest = P(an event within {serving.horizon_h / 24:g} d), "
        f"dormant below {th:g} ({serving.source})"
    )


def run_demo(
    data: Literal["cdnow", "sim"] = "cdnow",
    users: int = 2000,
    days: float = 60.0,
    seed: int = 7,
    horizon_days: float | None = None,
    show: int = 30,
    broker: KafkaBroker | None = None,
    model: Path | None = None,
) -> int:
    """``broker``: the local broker to use or start (default: kafka.sh's default ports);
    ``model``: the model worker's model (default: on CDNOW the shipped lapse model of weeks
    1-39, on the simulator the worker's default model)."""
    root = find_repo_root()
    run = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / "var" / "demo" / run
    run_dir.mkdir(parents=True, exist_ok=True)
    horizon = horizon_days if horizon_days is not None else (90.0 if data == "cdnow" else 14.0)
    broker = broker or KafkaBroker(root)
    started_broker = not broker.is_running()
    workers: dict[str, WorkerProcess] = {}
    try:
        state = "starting" if started_broker else "already running"
        print(f"== broker: {state} on {broker.bootstrap}")
        broker.start()

        what = "the CDNOW purchase log" if data == "cdnow" else f"{users} simulated users"
        print(f"== loading {what}")
        events, truth = _load(data, users, days, seed)
        log_file = run_dir / "events.jsonl"
        write_events(events, log_file)
        # Both scorers learn from the first part of the log only, and are judged on the rest:
        # on CDNOW the model is the lapse model trained on weeks 1-39 (shipped), the
        # baseline's half-life is fitted on the same weeks; on the simulator, the first half.
        t0, t1 = int(events["ts"].min()), int(events["ts"].max())
        cut_ms = CDNOW_CUT_MS if data == "cdnow" else t0 + (t1 - t0) // 2
        calib = events[events["ts"] < cut_ms]
        half_life_s = fit_half_life(gaps_from_events(calib["user_id"], calib["ts"]))
        model_path = model or (shipped_model("cdnow-lapse.onnx") if data == "cdnow" else None)
        print(
            f"   {len(events):,} events of {events['user_id'].nunique():,} users; trained on "
            f"events before {pd.Timestamp(cut_ms, unit='ms', tz='UTC'):%Y-%m-%d}, judged after"
        )

        common: dict[str, Any] = {
            "bootstrap": broker.bootstrap,
            "events_topic": f"demo-{run}-events",
            "dead_letter_topic": f"demo-{run}-dlq",
            "erase_topic": f"demo-{run}-erase",
        }
        rows = _rows(model_path, half_life_s, Settings(**common, log_level="warning"))
        _start_workers(rows, common, model_path, run_dir, workers)
        model_worker = workers["model"]
        port = model_worker.settings.web_port
        print(f"== workers started; model worker metrics: http://127.0.0.1:{port}/metrics")
        print(f"   one user's page: http://127.0.0.1:{port}/ui/users/{events['user_id'].iloc[0]}")

        print(f"== replaying {log_file.name} at full speed (event time)")
        sent = asyncio.run(replay_file(log_file, broker.bootstrap, common["events_topic"]))

        print("== the model's alerts as they arrive")
        seen = [0]

        def on_alert(alert: dict[str, Any]) -> None:
            seen[0] += 1
            if seen[0] <= show:
                print("  ", format_alert(alert))
            elif seen[0] % 1000 == 0:
                print(f"   ... {seen[0]} alerts so far")

        def all_read() -> bool:
            for w in workers.values():
                w.check()
            return all(w.events_seen() >= sent for w in workers.values())

        _follow(model_worker.settings, on_alert, stop=all_read)
        results = {label: _read_all_alerts(w.settings) for label, w in workers.items()}
        print_summary(results, events, truth, horizon, cut_ms)
        return 0
    except KeyboardInterrupt:
        print("\n== interrupted; stopping everything")
        return 130
    finally:
        for w in workers.values():
            w.stop()
        if started_broker:
            broker.stop()
        print(f"== stopped; logs and data in {run_dir}")


def _start_workers(
    rows: list[Row],
    common: dict[str, Any],
    model_path: Path | None,
    run_dir: Path,
    workers: dict[str, WorkerProcess],
) -> None:
    """One worker per row, each with its own group, alerts topic and state (into
    ``workers`` as they start, so that whatever started is stopped on an error)."""
    run = run_dir.name
    for row in rows:
        settings = Settings(
            **common,
            half_life_hours=row.half_life_s / 3600.0,
            app_id=f"demo-{run}-{row.label}",
            alerts_topic=f"demo-{run}-alerts-{row.label}",
            data_dir=run_dir / f"state-{row.label}",
            web_port=free_port(),
            scorer=row.scorer,
            model_path=model_path if row.scorer == "onnx" else None,
            log_level="warning",
        )
        print(f"   {row.label}: {row.about}")
        asyncio.run(ensure_topics(settings))
        workers[row.label] = WorkerProcess(settings, run_dir / f"worker-{row.label}.log")


def _follow(
    settings: Settings, on_alert: Callable[[dict[str, Any]], None], stop: Callable[[], bool]
) -> None:
    asyncio.run(follow_alerts(settings.bootstrap, settings.alerts_topic, on_alert, stop=stop))


def _read_all_alerts(settings: Settings) -> list[dict[str, Any]]:
    """Every alert of the topic, read until it has been quiet for a while (which also collects
    alerts still in flight when the worker read its last event)."""
    got: list[dict[str, Any]] = []
    asyncio.run(
        follow_alerts(settings.bootstrap, settings.alerts_topic, got.append, idle_timeout=3.0)
    )
    return got


def print_summary(
    results: dict[str, list[dict[str, Any]]],
    events: pd.DataFrame,
    truth: pd.DataFrame | None,
    horizon_days: float,
    from_ms: int = 0,
) -> None:
    """Per worker: alerts by kind, and its dormant alerts' precision and recall on the part
    of the log after ``from_ms`` (what the model did not learn from), with how long the user
    had been silent at the judged alerts."""
    horizon_ms = int(horizon_days * DAY_MS)
    print("\n== summary")
    print(f"   events replayed: {len(events):,} from {events['user_id'].nunique():,} users")
    since = pd.Timestamp(from_ms, unit="ms", tz="UTC")
    header = (
        "dormant | reengaged | category_decay | duplicates | judged | precision | recall | "
        "silence at alert"
    )
    print(f"   {'':<9}| {header}")
    summary: dict[str, Any] = {"horizon_days": horizon_days, "judged_from": since.isoformat()}
    for label, alerts in results.items():
        unique = {a["alert_id"]: a for a in alerts}
        kinds = Counter(a["kind"] for a in unique.values())
        out = dormant_outcome(list(unique.values()), events, horizon_ms, from_ms)
        got = dormant_recall(list(unique.values()), events, horizon_ms, from_ms)
        print(
            f"   {label:<9}| {kinds['dormant']:>7,} | {kinds['reengaged']:>9,} | "
            f"{kinds['category_decay']:>14,} | {len(alerts) - len(unique):>10,} | "
            f"{out.judged:>6,} | {out.share:>9.1%} | {got.share:>6.1%} | "
            f"{out.median_silence_days:>11.1f} d"
        )
        summary[label] = {
            **kinds,
            "judged": out.judged,
            "precision": out.share,
            "away_episodes": got.episodes,
            "caught": got.caught,
            "recall": got.share,
            "median_silence_days": out.median_silence_days,
        }
    print(
        f"   on dormant alerts from {since:%Y-%m-%d} on: precision = the share after which the "
        f"user had no event within {horizon_days:g} days (alerts nearer the end are not "
        f"judged; after a random event the share is {base_rate(events, horizon_ms):.1%}); "
        f"recall = of the times a user then stayed away {horizon_days:g} days (an event "
        f"followed by that much silence, ending after {since:%Y-%m-%d}), the share with a "
        f"dormant alert within those days; silence at alert = median days since the user's "
        "last event, at the judged alerts"
    )
    if truth is not None:
        churned = set(truth.loc[truth["churned"].astype(bool), "user_id"])
        print(f"   simulator's truth: {len(churned) / len(truth):.1%} of users churned for good")
    print(json.dumps(summary, default=float))
