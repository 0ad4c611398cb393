"""Bytes of state per user, everything included, and scoring cost per event, per scorer.

    .venv/bin/python bench/state_size.py --model var/lapse/step.onnx   # an exported step model
    .venv/bin/python bench/state_size.py                               # trains a tiny one first

A simulated log (``--users`` users over ``--days`` days, seed 7) goes through
``stream_app.processor.Processor`` in batches of ``--batch`` with an in-memory store, once per
scorer: the exponential baseline, the shipped window model (ONNX hazard LSTM) and the lapse
step model. Offsets are committed after every batch, as the worker does, so each record keeps
its last ``keep_alerts`` alerts. For each scorer it prints the size of the users' records at
the end (median, p99, max, the share over 1.5 KB), where the bytes of the largest go (header,
event window, model state, categories, engagement, alerts), and the scorer's time per event
(``BatchOutput.score_seconds``). The window keeps what each scorer reads, as the worker does
(64 events for the baseline and the window model; 10 for the lapse model, whose state
carries the history: the alerts' reasons read the last 10 events), or ``--max-events`` for
every scorer. Stored alerts are deflated (``decay.state``, version 3).

Without ``--model`` a lapse model of 16 units is trained for 3 epochs on the same log (needs
the train extra) and exported to a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import MODEL, add_json_option, figures_path, machine_note, write_figures
from decay.eventlog import frame_to_records
from decay.scoring import AnyScorer, ExponentialDecayScorer
from decay.state import UserState, decode_state
from decay_cli.replay import encode
from stream_app.lapse_scorer import LapseScorer
from stream_app.onnx_scorer import OnnxScorer
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.store import MemoryStore
from training.simulate import simulate

LIMIT = 1536  # the bar: under 1.5 KB per user
ROW = 22  # bytes per event of the window (decay.state)


def parts(st: UserState, total: int) -> dict[str, int]:
    """Where a record's bytes go, from the layout in decay.state."""
    named = {
        "window": st.n_events * ROW,
        "model_state": len(st.model_state),
        "categories": sum(1 + len(c.encode()[:255]) for c in st.categories),
        "engagement": 1 + sum(1 + len(c.encode()[:255]) + 21 for c in st.engagement),
        "alerts": sum(10 + len(a.packed) for a in st.alerts),
    }
    return {"header": total - sum(named.values()), **named}


def measure(
    name: str, scorer: AnyScorer, recs: list[Record], batch: int, config: ProcessorConfig
) -> dict[str, Any]:
    store = MemoryStore()
    proc = Processor(config, scorer, store, lambda: int(time.time() * 1000))
    score_s, events = 0.0, 0
    started = time.process_time()
    for i in range(0, len(recs), batch):
        out = proc.process(recs[i : i + batch])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        proc.committed[0] = recs[min(i + batch, len(recs)) - 1].offset + 1
        score_s += out.score_seconds
        events += len(out.peaks)
    cpu = time.process_time() - started
    users = {k: v for k, v in store.data[0].items() if not k.startswith("\x00")}
    sizes = np.array([len(v) for v in users.values()])
    biggest = max(users, key=lambda k: len(users[k]))
    st = decode_state(users[biggest])
    row = {
        "scorer": name,
        "version": scorer.version,
        "users": len(users),
        "events_scored": events,
        "bytes_median": float(np.median(sizes)),
        "bytes_p99": float(np.quantile(sizes, 0.99)),
        "bytes_max": int(sizes.max()),
        "share_over_1.5KB": float((sizes > LIMIT).mean()),
        "largest": {"events_in_window": st.n_events, **parts(st, len(users[biggest]))},
        "score_us_per_event": round(score_s / max(events, 1) * 1e6, 1),
        "cpu_us_per_event": round(cpu / max(events, 1) * 1e6, 1),
    }
    print(
        f"{name:>8}: {len(users):,} users, record median {row['bytes_median']:.0f} B, "
        f"p99 {row['bytes_p99']:.0f} B, max {row['bytes_max']} B "
        f"({row['share_over_1.5KB']:.1%} over 1.5 KB); largest: {row['largest']}; "
        f"scoring {row['score_us_per_event']} us/event, processor CPU "
        f"{row['cpu_us_per_event']} us/event",
        flush=True,
    )
    return row


def train_tiny(frame: Any, out: Path) -> Path:
    from decay.features import FeatureSpec
    from training.lapse import LapseConfig, fit
    from training.lapse_step import export

    cfg = LapseConfig(units=16, epochs=3, unit_h=24.0, landmark_every_h=72.0, min_window_h=72.0)
    result = fit(frame, int(frame["ts"].max()), FeatureSpec(horizon_h=72.0), cfg)
    path = out / "step.onnx"
    export(result, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an exported lapse step model")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--max-events", type=int, default=None, help="window size (default: the scorer's)"
    )
    add_json_option(parser, "state_size")
    args = parser.parse_args()
    frame = simulate(n_users=args.users, days=args.days, seed=7).events.iloc[: args.events]
    recs = [Record(0, i, *encode(r), int(r["ts"])) for i, r in enumerate(frame_to_records(frame))]
    config = ProcessorConfig(max_events=args.max_events)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_tiny(frame, Path(tmp))
        scorers: list[tuple[str, AnyScorer]] = [
            ("baseline", ExponentialDecayScorer(half_life_s=72 * 3600.0)),
            ("window", OnnxScorer(MODEL)),
            ("lapse", LapseScorer(model)),
        ]
        rows = [measure(n, s, recs, args.batch, config) for n, s in scorers]
    doc = {
        "machine": machine_note(),
        "events": len(recs),
        "batch": args.batch,
        "max_events": config.max_events or "the scorer's",
        "rows": rows,
    }
    write_figures(figures_path(args.json, "state_size"), doc)


if __name__ == "__main__":
    main()
