"""The hazard LSTM's category head, hashed buckets (spec fs1) against the category space (fs2),
on the semantic simulator: next-category top-5 on held-out users, seen and withheld categories.

    .venv/bin/python bench/lstm_categories.py --users 3000 --days 60 --seed 7

The split is bench/embeddings.py's (same seeds): one category per family withheld from
training (its events removed, as if it never existed), a fifth of the users held out. Both
models are ``training.train``'s hazard LSTM with the same settings and seed; only the
category input and head differ: 16 hashed buckets and a logit per bucket, or the
``--dims``-d category space (PCA of the training names' sentence embeddings) and a query
vector scored q · e(name). The question: at the last event of each of a held-out user's
sessions, which category will the next session be in? All 39 categories are ranked, the
withheld ones included (a bucket's logit, ties broken by training popularity, for fs1; the
name's projected embedding for fs2, whether it was seen or not). Figures to var/bench/.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from bench.common import add_json_option, figures_path, write_figures
from bench.embeddings import held_out_users, withheld_categories
from decay.features import FeatureSpec, category_bucket, gather_windows, prepare_events, space_spec
from training.next_category import top_k_accuracy
from training.semantic_sim import CATEGORY_NAMES, SESSION_GAP_MS, simulate_semantic
from training.train import TrainConfig, TrainResult, space_rows, train

F64 = npt.NDArray[np.float64]


def session_questions(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``events`` sorted as ``prepare_events`` sorts them, the index of the last event before
    each session that follows another, and that session's category."""
    ev = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    same_user = ev["user_id"].eq(ev["user_id"].shift())
    gap = ev["ts"].diff()
    start = same_user & (gap > SESSION_GAP_MS) & ev["category"].notna()
    at = np.flatnonzero(start.to_numpy())
    return ev, at - 1, ev["category"].to_numpy(dtype=object)[at]


def head_scores(result: TrainResult, ev: pd.DataFrame, last: np.ndarray, pop: F64) -> F64:
    """Scores [n, 39] of every category name at the windows ending at events ``last``."""
    rows = space_rows(result)
    table = prepare_events(ev, result.spec, rows)
    user = table.user_of[last]
    out: list[F64] = []
    for lo in range(0, last.shape[0], 4096):
        x, lengths = gather_windows(table, user[lo : lo + 4096], last[lo : lo + 4096])
        elapsed = np.zeros((x.shape[0], 1), np.float32)
        pred = result.model.predict_on_batch({"x": x, "lengths": lengths, "elapsed_h": elapsed})
        if rows is None:
            cols = [category_bucket(n, result.spec.cat_buckets) for n in CATEGORY_NAMES]
            tiebreak = 1e-6 * np.log1p(pop) / max(float(np.log1p(pop.max())), 1.0)
            out.append(np.asarray(pred["category_logits"], np.float64)[:, cols] + tiebreak)
        else:
            keys = rows.rows(list(CATEGORY_NAMES)).astype(np.float64)
            out.append(np.asarray(pred["category_query"], np.float64) @ keys.T)
    return np.concatenate(out)


def accuracy(scores: F64, target: np.ndarray, withheld: np.ndarray) -> dict[str, Any]:
    return {
        "seen": top_k_accuracy(scores[~withheld], target[~withheld]),
        "withheld": top_k_accuracy(scores[withheld], target[withheld]),
        "n_seen": int((~withheld).sum()),
        "n_withheld": int(withheld.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dims", type=int, default=12)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=15)
    add_json_option(parser, "lstm_categories")
    args = parser.parse_args()
    t0 = time.perf_counter()
    log = simulate_semantic(args.users, days=args.days, seed=args.seed)
    held = held_out_users(sorted(log.truth["user_id"]), args.holdout, args.seed + 1)
    withheld = withheld_categories(args.seed + 2)
    is_held = log.events["user_id"].isin(held)
    training = log.events[~is_held & ~log.events["category"].isin(withheld)]
    ev, last, cats = session_questions(log.events[is_held])
    index = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    target = np.array([index[str(c)] for c in cats])
    is_withheld = np.isin(cats, list(withheld))
    seen_counts = training["category"].value_counts()
    pop = np.array([float(seen_counts.get(c, 0)) for c in CATEGORY_NAMES])
    print(
        f"{len(log.events):,} events; {len(training):,} to train on; {len(held):,} users held "
        f"out, {len(target):,} next-session questions; withheld: {', '.join(sorted(withheld))}"
    )
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, verbose=0)
    acc: dict[str, Any] = {"popularity": accuracy(np.tile(pop, (len(target), 1)), target,
                                                  is_withheld)}  # fmt: skip
    specs = {"hashed_16 (fs1)": FeatureSpec(), f"space_{args.dims} (fs2)": space_spec(args.dims)}
    for label, spec in specs.items():
        started = time.perf_counter()
        result = train(training, None, spec=spec, config=cfg)
        acc[label] = {
            **accuracy(head_scores(result, ev, last, pop), target, is_withheld),
            "train_seconds": round(time.perf_counter() - started, 1),
        }
    print("next-session category top-5 on held-out users (seen / withheld targets):")
    for label, a in acc.items():
        print(f"  {label:<18} {a['seen']:.3f} / {a['withheld']:.3f}")
    n = acc["popularity"]
    elapsed = time.perf_counter() - t0
    print(f"  (targets: {n['n_seen']:,} seen, {n['n_withheld']:,} withheld); {elapsed:.0f} s")
    write_figures(figures_path(args.json, "lstm_categories"), {"args": vars(args), "top5": acc})


if __name__ == "__main__":
    main()
