"""What the worker's category vectors cost, and how right its ``related`` suggestions are.

    .venv/bin/python bench/related_cost.py                      # about a minute on 2 cores
    .venv/bin/python bench/related_cost.py --users 1200 --days 120

Needs the encoder (the `embed` extra). Prints:

1. the cost per new name as the worker pays it (``stream_app.category_vectors``: a batch's
   new names in one encoder call, float16-rounded): ms per name for batches of 1, 4, 16 and
   39 names (the semantic simulator's), each batch of names never seen before, and the
   encoder's load time (once per worker);
2. the semantic simulator's log (``training.semantic_sim``: real category names in families,
   users whose main category drifts) run through the worker's processor in memory, with the
   shipped model and the category vectors: the names embedded and the encoder time of the
   whole run, the ``category_decay`` alerts and how many carry ``related``, and, for each
   alert about a user's drift (the category is the one the user drifted from, after the
   drift), the share of suggestions that are the category the user truly drifted to,
   against two baselines of three categories each: the globally most active categories
   (sessions of the whole log) and the user's own top categories now (their decayed share).

Figures JSON to var/bench/related_cost-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.common import add_json_option, figures_path, machine_note, write_figures
from decay.embeddings import load_encoder
from decay.eventlog import frame_to_records
from decay.related import engagement_interest
from decay.settings import Settings
from decay.state import decode_state
from decay_cli.replay import encode
from stream_app.app import processor_config
from stream_app.category_vectors import CategoryVectors
from stream_app.processor import Processor, Record
from stream_app.queries import partition_for
from stream_app.rollout import load_scorer
from stream_app.store import MemoryStore
from training.semantic_sim import CATEGORY_NAMES, session_starts, simulate_semantic

BATCH_SIZES = (1, 4, 16, len(CATEGORY_NAMES))


def name_cost(rounds: int) -> dict[str, Any]:
    """ms per new name by batch size: each round a fresh CategoryVectors over one encoder
    (so every name is new), the names shuffled per round."""
    started = time.perf_counter()
    encoder = load_encoder()
    load_s = time.perf_counter() - started
    CategoryVectors(encoder).vectors(CATEGORY_NAMES[:3])  # warm the session
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"encoder_load_s": load_s, "ms_per_name": {}}
    for size in BATCH_SIZES:
        per_name = []
        for _ in range(rounds):
            names = [str(n) for n in rng.permutation(CATEGORY_NAMES)]
            vectors = CategoryVectors(encoder)
            for start in range(0, len(names) - size + 1, size):
                vectors.vectors(names[start : start + size])
            per_name.append(1e3 * vectors.embed_seconds / vectors.counts["embedded"])
        out["ms_per_name"][str(size)] = float(np.median(per_name))
    return out


def replay(users: int, days: int, seed: int, partitions: int, batch: int) -> dict[str, Any]:
    """The semantic log through the processor with category vectors; its alerts judged."""
    log = simulate_semantic(users, days=days, seed=seed)
    settings = Settings(partitions=partitions)
    config = processor_config(settings)
    vectors = CategoryVectors.load(config.engagement)
    spent = time_learn(vectors)
    end_ms = int(log.events["ts"].max())
    store = MemoryStore()
    proc = Processor(config, load_scorer(settings), store, lambda: end_ms, None, vectors)
    offsets = [0] * partitions
    records = []
    for key, value in (encode(r) for r in frame_to_records(log.events)):
        p = partition_for(key or b"", partitions)
        records.append(Record(p, offsets[p], key, value))
        offsets[p] += 1
    started = time.perf_counter()
    alerts: list[tuple[dict[str, Any], list[str]]] = []
    for i in range(0, len(records), batch):
        out = proc.process(records[i : i + batch])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
        for a in out.alerts:
            payload = json.loads(a.payload)
            if payload["kind"] == "category_decay":
                alerts.append((payload, own_top(store, a.partition, a.user_id, payload, vectors)))
    seconds = time.perf_counter() - started
    sessions = session_starts(log.events)
    popular = [str(c) for c, _ in Counter(sessions["category"].astype(str)).most_common(4)]
    return {
        "events": len(records),
        "users": users,
        "days": days,
        "seed": seed,
        "batch": batch,
        "processor_seconds": seconds,
        "names_embedded": vectors.counts["embedded"],
        "encoder_calls": vectors.counts["calls"],
        "encoder_seconds": vectors.embed_seconds,
        "learn_seconds": spent[0],
        "learn_calls": spent[1],
        **judge(alerts, log.truth, popular),
    }


def time_learn(vectors: CategoryVectors) -> list[float]:
    """[seconds, calls] of ``vectors.learn`` (the per-batch step, encoder time included),
    kept up to date by a timing wrapper on this instance."""
    spent = [0.0, 0.0]
    learn = vectors.learn

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        learn(*args)
        spent[0] += time.perf_counter() - started
        spent[1] += 1

    vectors.learn = timed  # type: ignore[method-assign]
    return spent


def own_top(
    store: MemoryStore, p: int, user: str, alert: dict[str, Any], vectors: CategoryVectors
) -> list[str]:
    """The user's three top categories by decayed share at the alert, the fading one left
    out (the baseline related suggestions must beat). The state as of the batch's end is
    close enough: the batch holds a few minutes of events."""
    raw = store.get(p, user)
    if raw is None:
        return []
    st = decode_state(raw)
    t_ms = st.last_ts_ms
    interest = engagement_interest(st.engagement, t_ms, st.sessions, vectors.rules)
    ranked = sorted((c for c in interest if c != alert["category"]), key=lambda c: -interest[c].now)
    return ranked[:3]


def judge(
    alerts: Sequence[tuple[dict[str, Any], list[str]]], truth: Any, popular: Sequence[str]
) -> dict[str, Any]:
    """Per kind of suggestion (related, popular, own_top): of the alerts about a user's drift
    (category = drift_from, fired after drift_ms), the share of suggestions that are
    drift_to (precision), the share of those alerts that suggest it (hit rate), and the
    suggestions per alert."""
    rows = truth.set_index("user_id")
    judged: dict[str, list[list[str]]] = {"related": [], "popular": [], "own_top": []}
    targets = []
    carry = 0
    for alert, own in alerts:
        related = [r["category"] for r in alert.get("related", [])]
        carry += bool(related)
        row = rows.loc[alert["user_id"]]
        drifted = row["drift_from"] == alert["category"]
        fired_ms = int(np.datetime64(alert["event_time"].rstrip("Z"), "ms").astype(np.int64))
        if not drifted or not fired_ms >= row["drift_ms"]:
            continue
        judged["related"].append(related)
        judged["popular"].append([c for c in popular if c != alert["category"]][:3])
        judged["own_top"].append(own)
        targets.append(str(row["drift_to"]))
    scores = {}
    for kind, lists in judged.items():
        n = sum(len(s) for s in lists)
        hits = sum(t in s for s, t in zip(lists, targets, strict=True))
        scores[kind] = {
            "precision": hits / n if n else float("nan"),
            "hit_rate": hits / len(targets) if targets else float("nan"),
            "per_alert": n / len(targets) if targets else float("nan"),
        }
    return {
        "category_decay": len(alerts),
        "with_related": carry,
        "about_a_drift": len(targets),
        "suggestions": scores,
    }


def report(cost: dict[str, Any], run: dict[str, Any]) -> None:
    per = ", ".join(f"{v:.2f} ms in batches of {k}" for k, v in cost["ms_per_name"].items())
    print(f"cost per new category name: {per}; encoder load {cost['encoder_load_s']:.2f} s")
    print(
        f"processor, {run['events']:,} events of {run['users']:,} users over {run['days']} "
        f"days: {run['processor_seconds']:.1f} s, of which encoder {run['encoder_seconds']:.3f} "
        f"s ({run['names_embedded']} names in {run['encoder_calls']} calls)"
    )
    besides = run["learn_seconds"] - run["encoder_seconds"]
    print(
        f"the per-batch step besides the encoder: {1e6 * besides / run['learn_calls']:.0f} µs "
        f"per batch of {run['batch']} ({1e6 * besides / run['events']:.2f} µs per event)"
    )
    print(
        f"category_decay alerts {run['category_decay']}, with related {run['with_related']}; "
        f"about a user's drift {run['about_a_drift']}:"
    )
    for kind, s in run["suggestions"].items():
        print(
            f"  {kind:<8} precision {s['precision']:.3f}  hit rate {s['hit_rate']:.3f}  "
            f"{s['per_alert']:.2f} per alert"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the cost per name")
    add_json_option(parser, "related_cost")
    args = parser.parse_args()
    cost = name_cost(args.rounds)
    run = replay(args.users, args.days, args.seed, args.partitions, args.batch)
    report(cost, run)
    doc = {"args": vars(args), "machine": machine_note(), "cost": cost, "replay": run}
    write_figures(figures_path(args.json, "related_cost"), doc)


if __name__ == "__main__":
    main()
