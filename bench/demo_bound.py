"""What the demo's bar can measure: dormant alerts' precision at the baseline's recall.

    .venv/bin/python bench/demo_bound.py

The demo judges a dormant alert by whether the customer bought nothing in the 90 days after
it (precision), and a silence of 90 days by whether an alert came within it (recall). Any
deadline under 90 days catches every such silence, so the baseline's recall is 100%, and a
model matches it only with deadlines that all come within 90 days. Among those, a later alert
is a more precise one (a customer who comes back before it is never alerted), so the latest
timer before the judging horizon sets the precision no per-user deadline can pass at that
recall. This bench shows it on the training period of the shipped CDNOW model (weeks 1-39,
the serving point's own data, judged exactly as ``decay_cli.serving_point`` judges them):

- timers (the exponential baseline's deadline and later ones up to 89 days);
- the model's deadlines capped at a timer (the best horizon and threshold of the serving
  point's grid for each cap);
- the model's alerts that come before 89 days, alone (are they calibrated?).

In memory, no Kafka; the model's curves are the worker's (``LapseScorer``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import add_json_option, figures_path, machine_note, write_figures
from decay.durations import DAY_MS
from decay.eventlog import cdnow_events
from decay.scoring import fit_half_life, gaps_from_events
from decay.settings import DEFAULT_THRESHOLD
from decay_cli.demo import CDNOW_CUT_MS
from decay_cli.serving_point import HORIZONS_DAYS, THRESHOLDS, curves_of, deadlines_ms, judge
from stream_app.lapse_scorer import LapseScorer
from stream_app.rollout import shipped_model

JUDGE_DAYS = 90.0
LATEST_DAYS = 89.0  # the latest timer whose alerts all come within the judging horizon


def row(label: str, got: Any) -> dict[str, Any]:
    print(
        f"  {label:<52} precision {got.precision:6.1%}  recall {got.recall:6.1%}  "
        f"judged {got.judged:>6,}  median silence {got.median_silence_days:5.1f} d"
    )
    return {"label": label, **asdict(got)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=shipped_model("cdnow-lapse.onnx"))
    add_json_option(parser, "demo_bound")
    args = parser.parse_args()
    events = cdnow_events(sample=False)
    frame = events[events["ts"] < CDNOW_CUT_MS]
    scorer = LapseScorer(args.model)
    log, heads = curves_of(scorer, frame)
    judge_ms = int(JUDGE_DAYS * DAY_MS)
    half_life_s = fit_half_life(gaps_from_events(frame["user_id"], frame["ts"]))
    base_days = half_life_s * math.log2(1.0 / DEFAULT_THRESHOLD) / 86400.0
    rows: dict[str, list[dict[str, Any]]] = {"timers": [], "capped": [], "early": []}
    print(f"CDNOW weeks 1-39, {log.ts.shape[0]:,} events; judged over {JUDGE_DAYS:g} days")
    print("timers (the first is the exponential baseline's):")
    for days in (base_days, 80.0, 85.0, LATEST_DAYS):
        got = judge(log, np.full(log.ts.shape, days * DAY_MS), judge_ms, log.start)
        rows["timers"].append(row(f"dormant after {days:.1f} d", got))
    print("the model's deadline capped at a timer (best grid point by precision):")
    for cap in (60.0, 75.0, 85.0, LATEST_DAYS):
        grid = [
            (judge(log, np.minimum(deadlines_ms(scorer, heads, h, th), cap * DAY_MS),
                   judge_ms, log.start), h, th)
            for h in HORIZONS_DAYS
            for th in THRESHOLDS
        ]  # fmt: skip
        got, h, th = max(grid, key=lambda g: g[0].precision)
        rows["capped"].append(row(f"min(model H={h:g} d θ={th:g}, {cap:g} d)", got))
    print(f"the model's alerts before {LATEST_DAYS:g} d alone, H = 91 d:")
    for th in (0.05, 0.1, 0.15, 0.2, 0.3):
        d = deadlines_ms(scorer, heads, 91.0, th)
        early = np.where(d < LATEST_DAYS * DAY_MS, d, np.inf)
        got = judge(log, early, judge_ms, log.start)
        rows["early"].append(row(f"P(a purchase within 91 d) below {th:g}", got))
    doc = {"machine": machine_note(), "model": str(args.model), **rows}
    write_figures(figures_path(args.json, "demo_bound"), doc)


if __name__ == "__main__":
    main()
