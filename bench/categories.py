"""Category alerts against the simulator's truth: precision, recall and share of all alerts.

    .venv/bin/python bench/categories.py --engine rules          # held-out seeds 1-5, fast
    .venv/bin/python bench/categories.py --seeds 1 --users 500    # the processor: all alerts
    .venv/bin/python bench/categories.py --engine rules --seeds 101 102 --rule fall=0.5

Per seed (``--jobs`` at once): simulates a log (``training.simulate``) and reads each
``category_decay`` alert against the truth file. ``--engine processor`` (the default) runs
the log through the worker's processor in memory (the shipped ONNX model unless ``--scorer
baseline``), so the share of all alerts is measured too; ``--engine rules`` applies the same
category rules without the processor (``bench.category_rules``; a unit test checks both raise
the same alerts), about ten times faster, for tuning. ``--rule NAME=VALUE`` overrides one of
``EngagementRules`` (tuning only; the shipped rules are the defaults). The rules were tuned on
seeds 101-105; seeds 1-5, the default, were kept for the figures.

Right, from the truth file alone: an alert about user u and category c at event time t is
right when u switched main category at ``switch_ts <= t`` and c is not the category switched
to (``switch_category``). In the simulator that is exactly when u has moved away from c:
from the switch on every other category keeps 0.3 of its base share, while the slow drift
never takes away more than 0.3 of a share (see ``training.simulate.simulate``). Printed
beside it, as a cross-check, the reading from the preference vectors: c's true share at t
(``Preferences.at``) is less than half of its initial one.

Recall: of the real switches (a user who switched at least ``min_silence`` before the end of
the period), the share whose old main category (``top_category``) got a right alert. "With
evidence" counts only the switchers who had opened at least 5 sessions in it before the
switch and at least 10 sessions after it: fewer cannot show a run of sessions elsewhere.

Profiles: ``default`` is ``SimConfig()`` (a median user has 4 sessions, so few alerts can
be judged); ``loyal`` (the default here, over 240 days) keeps the same shop but users visit
about once a day and leave after about 80 sessions on average, so users have the sessions
for evidence. Pooled precision over the seeds has a Wilson 95% interval (statsmodels);
``--pool A.json B.json`` pools the figures of runs made apart (e.g. seeds split over cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from bench.category_rules import rule_alerts
from bench.common import add_json_option, figures_path, write_figures
from decay.engagement import EngagementRules
from decay.eventlog import frame_to_records
from decay.settings import Settings
from decay_cli.replay import encode
from stream_app.app import processor_config
from stream_app.processor import Processor, Record
from stream_app.queries import partition_for
from stream_app.rollout import load_scorer
from stream_app.store import MemoryStore
from training.simulate import CATEGORY_NAMES, SimConfig, SimulatedLog, simulate

PROFILES = {
    "default": SimConfig(),
    # about one session a day, about 40 sessions before leaving, a little shorter sessions
    "loyal": SimConfig(
        rate_shape=2.0, rate_scale=0.5, dropout_a=1.0, dropout_b=80.0, view_stop_p=0.3
    ),
}
SESSION_GAP_MS = 30 * 60_000


@dataclass
class Outcome:
    """One seed's figures."""

    seed: int
    events: int
    seconds: float
    kinds: Counter[str]
    engine: str = "processor"  # "rules": the category alerts alone, no share of all alerts
    right: int = 0
    right_by_prefs: int = 0
    while_engaged: int = 0
    most_per_pair: int = 0
    switches: int = 0
    caught: int = 0
    evident: int = 0
    caught_evident: int = 0
    wrong: list[dict[str, Any]] = field(default_factory=list)

    @property
    def category(self) -> int:
        return self.kinds["category_decay"]


def parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def replay(
    log: SimulatedLog, settings: Settings, rules: EngagementRules, batch: int
) -> tuple[list[dict[str, Any]], float]:
    """All alerts of the log run through a processor in memory, ``category_decay`` as
    (user, category, ts); the seconds it took."""
    store = MemoryStore()
    end_ms = int(log.end_ms)  # "now" is the end of the simulated period
    config = replace(processor_config(settings), engagement=rules)
    proc = Processor(config, load_scorer(settings), store, lambda: end_ms)
    offsets = [0] * settings.partitions
    records = []
    for key, value in (encode(r) for r in frame_to_records(log.events)):
        p = partition_for(key or b"", settings.partitions)
        records.append(Record(p, offsets[p], key, value))
        offsets[p] += 1
    started = time.perf_counter()
    alerts = []
    for i in range(0, len(records), batch):
        out = proc.process(records[i : i + batch])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        alerts += [json.loads(a.payload) for a in out.alerts]
    for a in alerts:
        a["ts"] = parse_ms(a["event_time"])
    return alerts, time.perf_counter() - started


def rules_only(log: SimulatedLog, rules: EngagementRules) -> tuple[list[dict[str, Any]], float]:
    """The ``category_decay`` alerts alone, from the same rules without the processor
    (``bench.category_rules``); the seconds it took."""
    started = time.perf_counter()
    alerts = [{**a, "kind": "category_decay"} for a in rule_alerts(log.events, rules)]
    return alerts, time.perf_counter() - started


def plain(events: pd.DataFrame) -> pd.DataFrame:
    """User (str), ts and category (str or None) of the events."""
    category = events["category"].astype(object)
    return pd.DataFrame(
        {
            "user_id": events["user_id"].astype(str),
            "ts": events["ts"],
            "category": category.where(category.notna(), None),
        }
    )


def sessions_of(events: pd.DataFrame) -> pd.DataFrame:
    """The log's sessions (a gap of 30 minutes starts one): user, start time, category of
    the first event (what the processor counts as a visit)."""
    ev = plain(events).sort_values(["user_id", "ts"], kind="stable")
    user = ev["user_id"].to_numpy()
    ts = ev["ts"].to_numpy()
    opens = np.ones(len(ev), dtype=bool)
    opens[1:] = (user[1:] != user[:-1]) | (np.diff(ts) >= SESSION_GAP_MS)
    return ev[opens].reset_index(drop=True)


def judge(log: SimulatedLog, alerts: list[dict[str, Any]], out: Outcome) -> set[tuple[str, str]]:
    """Counts the right alerts into ``out``; returns the (user, category) pairs alerted
    rightly."""
    truth = log.truth.set_index("user_id")
    prefs = log.preferences
    assert prefs is not None
    index = {u: i for i, u in enumerate(log.truth["user_id"])}
    names = list(CATEGORY_NAMES)
    by_user = {u: g for u, g in plain(log.events).groupby("user_id", sort=False)}
    pairs: Counter[tuple[str, str]] = Counter()
    caught = set()
    for a in (a for a in alerts if a["kind"] == "category_decay"):
        user, c, t = a["user_id"], a["category"], a["ts"]
        pairs[(user, c)] += 1
        row = truth.loc[user]
        # NaN switch_ts (no switch) compares False
        right = bool(row["switch_ts"] <= t) and c != row["switch_category"]
        if right:
            out.right += 1
            caught.add((user, c))
        else:
            out.wrong.append({"user": user, "category": c, "t": int(t)})
        u = index[user]
        if prefs.at(u, t)[names.index(c)] < 0.5 * prefs.initial[u, names.index(c)]:
            out.right_by_prefs += 1
        mine = by_user[user]
        last10 = mine.loc[mine["ts"] <= t, "category"].tolist()[-10:]
        if 2 * last10.count(c) >= len(last10):
            out.while_engaged += 1
    out.most_per_pair = max(pairs.values(), default=0)
    return caught


def recall(
    log: SimulatedLog, caught: set[tuple[str, str]], min_silence_ms: int, out: Outcome
) -> None:
    """Counts the real switches and those caught into ``out`` (see the module docstring)."""
    truth = log.truth
    moved = truth[truth["switch_ts"] <= log.end_ms - min_silence_ms]
    sess = sessions_of(log.events).merge(
        moved[["user_id", "switch_ts", "top_category"]].astype({"user_id": str}), on="user_id"
    )
    before = sess[(sess["ts"] < sess["switch_ts"]) & (sess["category"] == sess["top_category"])]
    after = sess[sess["ts"] >= sess["switch_ts"]]
    n_before = before.groupby("user_id").size()
    n_after = after.groupby("user_id").size()
    for user, top in zip(moved["user_id"], moved["top_category"], strict=True):
        hit = (user, top) in caught
        evident = bool(n_before.get(user, 0) >= 5 and n_after.get(user, 0) >= 10)
        out.switches += 1
        out.caught += hit
        out.evident += evident
        out.caught_evident += hit and evident


def run_seed(seed: int, args: argparse.Namespace) -> Outcome:
    settings = Settings(partitions=4, scorer=args.scorer)
    rules = with_overrides(processor_config(settings).engagement, args.rule)
    log = simulate(n_users=args.users, days=args.days, seed=seed, config=PROFILES[args.profile])
    if args.engine == "processor":
        alerts, seconds = replay(log, settings, rules, args.batch)
    else:
        alerts, seconds = rules_only(log, rules)
    kinds = Counter(a["kind"] for a in alerts)
    out = Outcome(seed, len(log.events), seconds, kinds, args.engine)
    caught = judge(log, alerts, out)
    recall(log, caught, rules.min_silence_ms, out)
    return out


def with_overrides(rules: EngagementRules, pairs: list[str]) -> EngagementRules:
    """``rules`` with ``NAME=VALUE`` overrides (for tuning), each of the field's type."""
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in EngagementRules.__dataclass_fields__:
            raise SystemExit(f"--rule: no rule named {name!r}")
        rules = replace(rules, **{name: type(getattr(rules, name))(float(value))})
    return rules


def ratio(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else f"{k}/0"


def share(n: int, total: int, measured: bool) -> str:
    return f"{ratio(n, total)} of alerts" if measured else f"{n} (share of all not measured)"


def line(o: Outcome) -> str:
    total = sum(o.kinds.values())
    return (
        f"seed {o.seed}: {o.events:,} events, {o.seconds:.0f} s; category_decay "
        f"{share(o.category, total, o.engine == 'processor')}; "
        f"precision {ratio(o.right, o.category)} "
        f"(by preferences {o.right_by_prefs}); recall {ratio(o.caught, o.switches)}, "
        f"with evidence {ratio(o.caught_evident, o.evident)}; while engaged "
        f"{o.while_engaged}; most per user and category {o.most_per_pair}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="loyal")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=float, default=240.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--scorer", choices=("onnx", "baseline"), default="onnx")
    parser.add_argument(
        "--engine",
        choices=("processor", "rules"),
        default="processor",
        help="rules: the category rules alone, fast, without the other alerts",
    )
    parser.add_argument("--batch", type=int, default=5000, help="records per processor batch")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run at once")
    parser.add_argument(
        "--rule", action="append", default=[], metavar="NAME=VALUE", help="override a rule"
    )
    parser.add_argument("--show-wrong", action="store_true", help="list the wrong alerts")
    parser.add_argument("--pool", type=Path, nargs="+", help="pool these runs' figures only")
    add_json_option(parser, "categories")
    args = parser.parse_args()
    if args.pool:
        print(
            pool([from_figures(s) for f in args.pool for s in json.loads(f.read_text())["seeds"]])[
                "line"
            ]
        )
        return
    print(
        f"profile {args.profile}, {args.users:,} users over {args.days:g} days, "
        f"{args.engine} engine, {args.scorer} scorer, rules {' '.join(args.rule) or 'default'}"
    )
    with multiprocessing.Pool(max(1, min(args.jobs, len(args.seeds)))) as workers:
        outcomes = workers.map(partial(run_seed, args=args), args.seeds, chunksize=1)
    for o in outcomes:
        print(line(o), flush=True)
        if args.show_wrong:
            for w in o.wrong:
                print("   wrong:", w)
    pooled = pool(outcomes)
    print(pooled["line"])
    doc = {"args": {k: str(v) for k, v in vars(args).items()}, **pooled}
    doc["seeds"] = [{**o.__dict__, "kinds": dict(o.kinds)} for o in outcomes]
    path = figures_path(args.json, "categories")
    write_figures(path, doc)
    print(f"figures: {path}")


def from_figures(seed: dict[str, Any]) -> Outcome:
    return Outcome(**{**seed, "kinds": Counter(seed["kinds"])})


def pool(outcomes: list[Outcome]) -> dict[str, Any]:
    n = sum(o.category for o in outcomes)
    right = sum(o.right for o in outcomes)
    total = sum(sum(o.kinds.values()) for o in outcomes)
    lo, hi = proportion_confint(right, n, alpha=0.05, method="wilson") if n else (0.0, 1.0)
    switches, caught = sum(o.switches for o in outcomes), sum(o.caught for o in outcomes)
    evident = sum(o.evident for o in outcomes)
    caught_evident = sum(o.caught_evident for o in outcomes)
    engaged = sum(o.while_engaged for o in outcomes)
    measured = all(o.engine == "processor" for o in outcomes)
    text = (
        f"pooled: category_decay {share(n, total, measured)}; precision {ratio(right, n)}, "
        f"Wilson 95% [{lo:.1%}, {hi:.1%}]; recall {ratio(caught, switches)}, with evidence "
        f"{ratio(caught_evident, evident)}; while engaged {engaged}"
    )
    return {
        "line": text,
        "category_decay": n,
        "alerts": total if measured else None,
        "right": right,
        "precision": right / n if n else None,
        "precision_wilson95": [lo, hi],
        "switches": switches,
        "caught": caught,
        "evident": evident,
        "caught_evident": caught_evident,
        "while_engaged": engaged,
    }


if __name__ == "__main__":
    main()
