"""What explaining alerts costs: time and model calls per alert, against the same batches
without explanations, for the default window model and the lapse step model.

    .venv/bin/python bench/explain_cost.py
    .venv/bin/python bench/explain_cost.py --events 40000 --batch 500 --repeat 3

A simulated log (``--users`` users over ``--days`` days, seed 7, the first ``--events``
events; the log of bench/state_size.py) goes through ``stream_app.processor.Processor`` in
batches of ``--batch`` with an in-memory store, offsets committed after each batch as the
worker does, once with explanations off (``explain_events`` 0) and once on (10, the
default), alternately, ``--repeat`` times, per scorer: the shipped window model
(``stream_app/models/model.onnx``, the worker's default) and the shipped lapse step model
(``cdnow-lapse.onnx`` at its card's serving point). It prints, per scorer: the alerts and
the batches that had any; the processor's wall and CPU time with and without explanations
(median over the rounds) and the difference per alert; the explanation's scorer calls
(``curves``, which the processor calls only for them) per batch with alerts and per alert,
the onnxruntime runs inside them (counted by a proxy around the scorer's session: the window
model runs once per call, the lapse model once per round of its recurrent cell, at most one
per event of the window) and the time of those calls per alert. It checks that the alerts,
ids included, are the same with and without explanations.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

from bench.common import add_json_option, figures_path, machine_note, write_figures
from decay.alerts import Alert
from decay.eventlog import frame_to_records
from decay.explanations import EVENTS
from decay.settings import Settings
from decay_cli.replay import encode
from stream_app.app import processor_config
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.rollout import load_scorer, shipped_model
from stream_app.store import MemoryStore
from training.simulate import simulate


@dataclass
class Calls:
    """The explanation calls of the scorer (``curves``) and the session runs inside them."""

    curves: int = 0
    curves_s: float = 0.0
    runs: int = 0  # every onnxruntime run
    runs_in_curves: int = 0


class CountedSession:
    """An onnxruntime session that counts its runs (``run`` is the only method the scorers
    call after loading)."""

    def __init__(self, session: Any, calls: Calls) -> None:
        self._session, self._calls = session, calls

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.runs += 1
        return self._session.run(*args, **kwargs)


def counted(scorer: Any, calls: Calls) -> Any:
    """The scorer, its ``curves`` calls timed and counted, its session's runs counted."""
    scorer._session = CountedSession(scorer._session, calls)
    inner = scorer.curves

    def curves(windows: Any, silent_s: Any) -> Any:
        runs, started = calls.runs, time.perf_counter()
        try:
            return inner(windows, silent_s)
        finally:
            calls.curves += 1
            calls.curves_s += time.perf_counter() - started
            calls.runs_in_curves += calls.runs - runs

    scorer.curves = curves
    return scorer


@dataclass
class Run:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    alerts: list[tuple[str, str, float]] = field(default_factory=list)  # id, kind, score
    explained: int = 0  # alerts with an explanation
    batches_alerting: int = 0
    calls: Calls = field(default_factory=Calls)


def run_once(scorer: Any, recs: list[Record], batch: int, config: ProcessorConfig) -> Run:
    calls = scorer._session._calls
    before = replace(calls)
    store = MemoryStore()
    proc = Processor(config, scorer, store, lambda: int(time.time() * 1000))
    got = Run()
    for i in range(0, len(recs), batch):
        wall, cpu = time.perf_counter(), time.process_time()
        out = proc.process(recs[i : i + batch])
        got.wall_s += time.perf_counter() - wall
        got.cpu_s += time.process_time() - cpu
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        proc.committed[0] = recs[min(i + batch, len(recs)) - 1].offset + 1
        got.batches_alerting += bool(out.alerts)
        for a in out.alerts:
            alert = Alert.from_json(a.payload)
            got.alerts.append((alert.alert_id, alert.kind, alert.score))
            got.explained += bool(alert.explanation)
    got.calls = Calls(*(getattr(calls, f) - getattr(before, f) for f in vars(calls)))
    return got


def measure(
    name: str, settings: Settings, recs: list[Record], batch: int, repeat: int
) -> dict[str, Any]:
    scorer = counted(load_scorer(settings), Calls())
    # the worker's settings, on one partition (every record is applied where it comes)
    worker = replace(processor_config(settings), partitions=None)
    rounds: dict[int, list[Run]] = {0: [], EVENTS: []}
    for _ in range(repeat):
        for k in rounds:  # alternately, so that the machine's load falls on both alike
            config = replace(worker, explain_events=k)
            rounds[k].append(run_once(scorer, recs, batch, config))
    plain, explained = rounds[0][0], rounds[EVENTS][0]
    assert all(r.alerts == plain.alerts for rs in rounds.values() for r in rs), "alerts differ"
    assert plain.calls.curves == 0 and explained.explained > 0
    n = len(plain.alerts)

    def median(k: int, what: str) -> float:
        return statistics.median(getattr(r, what) for r in rounds[k])

    c = explained.calls
    row = {
        "scorer": name,
        "version": scorer.version,
        "events": len(recs),
        "batch": batch,
        "alerts": n,
        "alerts_explained": explained.explained,
        "batches_with_alerts": explained.batches_alerting,
        "wall_s_without": median(0, "wall_s"),
        "wall_s_with": median(EVENTS, "wall_s"),
        "cpu_s_without": median(0, "cpu_s"),
        "cpu_s_with": median(EVENTS, "cpu_s"),
        "explain_scorer_calls": c.curves,
        "explain_scorer_calls_per_alerting_batch": c.curves / explained.batches_alerting,
        "explain_scorer_calls_per_alert": c.curves / n,
        "onnx_runs_per_explain_call": c.runs_in_curves / max(c.curves, 1),
        "onnx_runs_scoring": c.runs - c.runs_in_curves,
        "explain_call_ms_per_alert": c.curves_s / n * 1e3,
    }
    row["wall_ms_per_alert"] = (row["wall_s_with"] - row["wall_s_without"]) / n * 1e3
    row["cpu_ms_per_alert"] = (row["cpu_s_with"] - row["cpu_s_without"]) / n * 1e3
    print(
        f"{name} ({scorer.version}): {len(recs):,} events in batches of {batch}, {n:,} alerts "
        f"({explained.explained:,} explained) in {explained.batches_alerting} batches\n"
        f"  processor wall {row['wall_s_without']:.2f} s without explanations, "
        f"{row['wall_s_with']:.2f} s with: +{row['wall_ms_per_alert']:.3f} ms per alert "
        f"(CPU {row['cpu_s_without']:.2f} -> {row['cpu_s_with']:.2f} s: "
        f"+{row['cpu_ms_per_alert']:.3f} ms per alert)\n"
        f"  explanations: {c.curves} scorer calls = "
        f"{row['explain_scorer_calls_per_alerting_batch']:.2f} per batch with alerts, "
        f"{row['explain_scorer_calls_per_alert']:.4f} per alert; "
        f"{row['onnx_runs_per_explain_call']:.1f} onnxruntime runs per call "
        f"(scoring: {row['onnx_runs_scoring']:,} runs); the calls take "
        f"{row['explain_call_ms_per_alert']:.3f} ms per alert",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    add_json_option(parser, "explain_cost")
    args = parser.parse_args()
    frame = simulate(n_users=args.users, days=args.days, seed=7).events.iloc[: args.events]
    recs = [Record(0, i, *encode(r), int(r["ts"])) for i, r in enumerate(frame_to_records(frame))]
    scorers = [
        ("window model (default)", Settings()),
        ("lapse model", Settings(model_path=shipped_model("cdnow-lapse.onnx"))),
    ]
    rows = [measure(name, s, recs, args.batch, args.repeat) for name, s in scorers]
    doc = {"machine": machine_note(), "explain_events": EVENTS, "rows": rows}
    write_figures(figures_path(args.json, "explain_cost"), doc)


if __name__ == "__main__":
    main()
