"""The serving point of a lapse model (interest horizon H, dormancy threshold theta), chosen
on the training period only, and written into the model's card (``ModelCard.serving``).

The stream is replayed offline, exactly: each event of the training period is stepped through
the exported model (``stream_app.lapse_scorer.LapseScorer``, the worker's own code), giving
its curve ``I(d) = P(an event within H | silent d)``; for a serving point, its deadline
``D`` is where ``I`` falls below theta, and the worker's dormant alert comes at ``t + D``
when the user's next event is later (``Processor``: one alert per silence, closed by the
next event). Alerts and silences are then judged as the demo judges them
(``decay_cli.demo``; a unit test holds the two equal):

- precision: of the dormant alerts that the log can judge (``judge`` before its end), the
  share after which the user had no event within ``judge``;
- recall: of the times a user then stayed away ``judge`` (an event followed by that much
  silence, inside the log), the share with a dormant alert within those days.

The exponential baseline (half-life fitted on the same events, theta = the worker's default)
is judged the same way. Rule: of the grid's points whose precision is at least the
baseline's, the one with the highest recall (then the earliest alerts). Nothing after the
training cut is read.

    python -m decay_cli.serving_point --model stream_app/models/cdnow-lapse.onnx \\
        --events cdnow --until 1997-10-01 --write
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from decay import btyd, lifetime
from decay.durations import DAY_MS
from decay.events import Event, EventType
from decay.lapse_state import unpack_states
from decay.scoring import fit_half_life, gaps_from_events
from decay.settings import DEFAULT_THRESHOLD
from stream_app.lapse_scorer import LapseScorer

HORIZONS_DAYS = (7.0, 14.0, 28.0, 42.0, 56.0, 70.0, 91.0, 119.0, 147.0, 182.0, 273.0)
THRESHOLDS = tuple(round(0.05 + 0.025 * i, 3) for i in range(19))  # 0.05 .. 0.5
NEVER = np.iinfo(np.int64).max // 4
GRACE_MS = 3_600_000  # the worker's default grace: a deadline fires once the watermark passes


@dataclass(frozen=True)
class Judged:
    precision: float
    recall: float
    judged: int  # dormant alerts the log can judge
    episodes: int  # times a user stayed away for the judging horizon
    median_silence_days: float  # silence at the judged alerts


@dataclass(frozen=True)
class Log:
    """Events sorted by user then time, with each one's next event of the user (or NEVER)."""

    ts: npt.NDArray[np.int64]
    nxt: npt.NDArray[np.int64]
    start: int
    end: int

    @classmethod
    def of(cls, users: npt.ArrayLike, ts: npt.ArrayLike) -> Log:
        u, t = np.asarray(users), np.asarray(ts, dtype=np.int64)
        order = np.lexsort((t, u))
        u, t = u[order], t[order]
        nxt = np.full(t.shape, NEVER, dtype=np.int64)
        same = u[1:] == u[:-1]
        nxt[:-1][same] = t[1:][same]
        return cls(t, nxt, int(t.min()), int(t.max()))


def judge(log: Log, deadline_ms: npt.ArrayLike, judge_ms: int, from_ms: int) -> Judged:
    """The alerts a worker raises with these deadlines (per event, in ``log``'s order),
    judged as ``decay_cli.demo`` judges the alerts it reads: see the module doc."""
    d = np.asarray(deadline_ms, dtype=np.float64)
    at = log.ts + np.where(np.isfinite(d), d, 0.0)
    fired = np.isfinite(d) & (at < log.nxt) & (at <= log.end - GRACE_MS)
    judged = fired & (at >= from_ms) & (at + judge_ms <= log.end)
    stayed = judged & (log.nxt > at + judge_ms)
    away = (log.nxt - log.ts > judge_ms) & (log.ts + judge_ms >= from_ms)
    away &= log.ts + judge_ms <= log.end
    caught = away & (d > 0) & (d <= judge_ms)
    n, e = int(judged.sum()), int(away.sum())
    silence = float(np.median(d[judged])) / DAY_MS if n else math.nan
    return Judged(
        int(stayed.sum()) / n if n else math.nan,
        int(caught.sum()) / e if e else math.nan,
        n,
        e,
        silence,
    )


def _events(frame: pd.DataFrame) -> dict[str, list[Event]]:
    by_user: dict[str, list[Event]] = {}
    price = frame["price"] if "price" in frame else pd.Series(np.nan, index=frame.index)
    qty = frame["quantity"] if "quantity" in frame else pd.Series(np.nan, index=frame.index)
    cat = frame["category"] if "category" in frame else pd.Series(None, index=frame.index)
    for eid, user, ts, kind, c, p, q in zip(
        frame["event_id"], frame["user_id"], frame["ts"], frame["type"], cat, price, qty,
        strict=True,
    ):  # fmt: skip
        by_user.setdefault(str(user), []).append(
            Event(
                event_id=str(eid),
                user_id=str(user),
                ts_ms=int(ts),
                type=EventType[str(kind).upper()],
                category=None if pd.isna(c) else str(c),
                price=None if pd.isna(p) else float(p),
                quantity=None if pd.isna(q) else int(q),
            )
        )
    return by_user


def curves_of(scorer: LapseScorer, frame: pd.DataFrame) -> tuple[Log, Any]:
    """Every event of ``frame`` stepped through the model as the worker steps it: the log
    and each event's heads ``(p or mu, k, beta)``, in the log's order."""
    by_user = _events(frame.sort_values(["ts"], kind="stable"))
    users = list(by_user)
    after = scorer.step([scorer.start()] * len(users), [by_user[u] for u in users])
    st = unpack_states([s for a in after for s in a], scorer.tag, scorer.units)
    uid = np.array([u for u in users for _ in by_user[u]])
    ts = np.array([e.ts_ms for u in users for e in by_user[u]], dtype=np.int64)
    order = np.lexsort((ts, uid))
    heads = tuple(h[order] for h in scorer.heads(st))
    return Log.of(uid, ts), heads


def deadlines_ms(scorer: LapseScorer, heads: Any, horizon_days: float, theta: float) -> Any:
    unit_ms = scorer.unit_h * 3_600_000.0
    h = horizon_days * DAY_MS / unit_ms
    p, k, beta = heads
    if scorer.dropout == "exp":
        return lifetime.deadline(k, beta, p, h, theta) * unit_ms
    return btyd.deadline(p, k, beta, h, theta) * unit_ms


def choose(scorer: LapseScorer, frame: pd.DataFrame, judge_days: float = 90.0) -> dict[str, Any]:
    """The serving point by the module's rule, with the grid's figures and the baseline's."""
    log, heads = curves_of(scorer, frame)
    judge_ms = int(judge_days * DAY_MS)
    half_life_s = fit_half_life(gaps_from_events(frame["user_id"], frame["ts"]))
    base_deadline = half_life_s * 1000.0 * math.log2(1.0 / DEFAULT_THRESHOLD)
    base = judge(log, np.full(log.ts.shape, base_deadline), judge_ms, log.start)
    grid = []
    for days in HORIZONS_DAYS:
        for theta in THRESHOLDS:
            got = judge(log, deadlines_ms(scorer, heads, days, theta), judge_ms, log.start)
            grid.append({"horizon_days": days, "threshold": theta, **asdict(got)})
    ok = [g for g in grid if g["judged"] and g["precision"] >= base.precision]
    if not ok:
        raise ValueError("no serving point reaches the baseline's precision on this period")
    best = max(ok, key=lambda g: (g["recall"], -g["median_silence_days"]))
    return {
        "horizon_h": best["horizon_days"] * 24.0,
        "threshold": best["threshold"],
        "rule": "highest recall among the points with at least the baseline's precision, on "
        f"the training period; dormant alerts judged over {judge_days:g} days "
        "(decay_cli.serving_point)",
        "chosen_on": {
            "from": pd.Timestamp(log.start, unit="ms", tz="UTC").isoformat(),
            "until": pd.Timestamp(log.end, unit="ms", tz="UTC").isoformat(),
            "events": int(log.ts.shape[0]),
            "judge_days": judge_days,
        },
        "model": {k: best[k] for k in asdict(base)},
        "baseline": {
            "half_life_days": half_life_s / 86400.0,
            "threshold": DEFAULT_THRESHOLD,
            **asdict(base),
        },
        "grid_points": len(grid),
    }


def write_serving(path: Path, serving: dict[str, Any]) -> None:
    """Put ``serving`` into the card of the ONNX file at ``path`` (and its .card.json)."""
    import dataclasses

    import onnx

    from decay.card import read_card
    from training.export import save_with_card

    card = dataclasses.replace(read_card(path), serving=serving)
    save_with_card(onnx.load(path), card, path, path.with_suffix(".card.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported lapse model")
    parser.add_argument("--events", default="cdnow", help="event log, or cdnow")
    parser.add_argument("--until", required=True, help="the training cut (ISO time)")
    parser.add_argument("--judge-days", type=float, default=90.0)
    parser.add_argument("--write", action="store_true", help="write the point into the card")
    args = parser.parse_args()
    from decay.eventlog import cdnow_events, read_events

    frame = cdnow_events() if args.events == "cdnow" else read_events(args.events)
    cut = int(pd.Timestamp(args.until, tz="UTC").value // 1_000_000)
    frame = frame[frame["ts"] < cut]
    serving = choose(LapseScorer(args.model), frame, args.judge_days)
    print(json.dumps(serving, indent=2))
    if args.write:
        write_serving(args.model, serving)
        print(f"serving point written into {args.model}'s card")


if __name__ == "__main__":
    main()
