"""Category alerts against the simulator's truth: how many are right, and their share.

    .venv/bin/python bench/categories.py --users 1000 --days 60 --seed 11
    .venv/bin/python bench/categories.py --users 2000 --days 120 --seed 11

Simulates a log (``training.simulate``, fixed seed), runs it through the worker's processor in
memory (the shipped ONNX model unless ``--scorer baseline``) in batches of 500, and reads
each ``category_decay`` alert against the simulator's truth. An alert about user u and
category c at event time t is *right* when u's true preference for c at t (the simulator's
``Preferences.at``: its initial one, or the one after its switch of main category, mixed
with its slow drift) is less than half of what it was at the start: u really moved away
from c. Also printed: the stricter reading from the truth file alone (c was u's main
category, ``top_category``, u switched away from it before t: ``switch_ts`` <= t, and it is
not the main one at the end, ``final_top_category``), the share of ``category_decay`` among
all alerts, and how many alerts fired while the category held at least half of the user's
last 10 events (must be 0).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from datetime import datetime

import numpy as np

from decay.eventlog import frame_to_records
from decay.settings import Settings
from decay_cli.replay import encode
from stream_app.app import processor_config
from stream_app.processor import Processor, Record
from stream_app.queries import partition_for
from stream_app.rollout import load_scorer
from stream_app.store import MemoryStore
from training.simulate import CATEGORY_NAMES, simulate


def parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--scorer", choices=("onnx", "baseline"), default="onnx")
    args = parser.parse_args()
    log = simulate(n_users=args.users, days=args.days, seed=args.seed)
    settings = Settings(partitions=4, scorer=args.scorer)
    store = MemoryStore()
    end_ms = int(log.end_ms)  # "now" is the end of the simulated period
    proc = Processor(processor_config(settings), load_scorer(settings), store, lambda: end_ms)
    offsets = [0] * settings.partitions
    records = []
    for key, value in (encode(r) for r in frame_to_records(log.events)):
        p = partition_for(key or b"", settings.partitions)
        records.append(Record(p, offsets[p], key, value))
        offsets[p] += 1
    held: list[tuple[str, int, str | None]] = []
    for r in records:
        body = json.loads(r.value or b"{}")
        held.append((body["user_id"], body["ts"], body.get("category")))
    started = time.perf_counter()
    alerts = []
    for i in range(0, len(records), 500):
        out = proc.process(records[i : i + 500])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        alerts += [json.loads(a.payload) for a in out.alerts]
    elapsed = time.perf_counter() - started

    truth = log.truth.set_index("user_id")
    prefs = log.preferences
    assert prefs is not None
    index = {u: i for i, u in enumerate(log.truth["user_id"])}
    names = list(CATEGORY_NAMES)
    kinds = Counter(a["kind"] for a in alerts)
    cat = [a for a in alerts if a["kind"] == "category_decay"]
    right = strict = while_engaged = 0
    events_of: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for user, ts, category in held:
        events_of[user].append((ts, category))
    for a in cat:
        row = truth.loc[a["user_id"]]
        t = parse_ms(a["event_time"])
        c = names.index(a["category"])
        u = index[a["user_id"]]
        if prefs.at(u, t)[c] < 0.5 * prefs.initial[u, c]:
            right += 1
        switched = not np.isnan(row["switch_ts"]) and row["switch_ts"] <= t
        if switched and a["category"] == row["top_category"] != row["final_top_category"]:
            strict += 1
        last10 = [c for ts, c in sorted(events_of[a["user_id"]]) if ts <= t][-10:]
        if last10.count(a["category"]) >= 5:
            while_engaged += 1
    switchers = int((~np.isnan(truth["switch_ts"].to_numpy(dtype=float))).sum())
    print(
        f"{len(records):,} events of {args.users:,} users over {args.days:g} days "
        f"(seed {args.seed}, {switchers} switch their main category), {args.scorer} scorer, "
        f"{elapsed:.1f} s"
    )
    print(f"alerts: {dict(kinds)}")
    share = len(cat) / max(len(alerts), 1)
    print(f"category_decay: {len(cat)} of {len(alerts)} alerts ({share:.0%})")
    if cat:
        print(
            f"  right (true preference fell by half): {right} ({right / len(cat):.0%}); "
            f"main category switched away from (truth file): {strict} "
            f"({strict / len(cat):.0%}); while the category held half of the last 10 "
            f"events: {while_engaged}"
        )
    per_user = Counter((a["user_id"], a["category"]) for a in cat)
    if per_user:
        print(f"  most alerts for one user and category: {max(per_user.values())}")


if __name__ == "__main__":
    main()
