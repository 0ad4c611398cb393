"""Text embeddings of categories against hashed buckets, on the semantic simulator.

    .venv/bin/python bench/embeddings.py --users 3000 --days 60 --seed 7

about a minute on 2 cores; TensorFlow (the `train` extra) and the encoder (`embed`).

Simulates a log with real category names (``training.semantic_sim``), withholds one category
per family from training and a share of users for evaluation, and prints:

1. the sentence encoder's cost per new name (alone, and in a batch of names) and three
   similarities;
2. next-category top-5 accuracy (the category of a user's next session, ranked among all
   categories, withheld ones included) on held-out users, for targets seen in training and
   for withheld ones: embeddings (PCA of all-MiniLM-L6-v2, fitted on the training category
   names) against hashed buckets (16, the feature spec's default, and 64), same Keras layers
   (``training.next_category``);
3. ``related`` suggestions (``decay.related``) for every held-out user who drifted, two weeks
   after the drift, with the drift's old category as the fading one: the share of
   suggestions that are the category the user truly drifted to, against the globally most
   active categories and against the user's own top categories.

Figures JSON and the category space (PCA, as it goes into a model card) go to var/bench/.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from bench.common import OUT_DIR, add_json_option, figures_path, write_figures
from decay.durations import DAY_MS
from decay.embeddings import EmbeddingCache, cosine, load_encoder
from decay.related import Interest, related
from training.category_space import bucket_rows, fit_space, history_features
from training.next_category import EmbeddingHead, HashedHead, TrainConfig, top_k_accuracy
from training.semantic_sim import CATEGORY_NAMES, FAMILIES, session_starts, simulate_semantic

F32 = npt.NDArray[np.float32]
HALF_LIFE_MS = 7 * DAY_MS  # decay.engagement's default category half-life
AFTER_DRIFT_MS = 14 * DAY_MS


def withheld_categories(seed: int) -> set[str]:
    """One category per family, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return {str(rng.choice(list(cats))) for cats in FAMILIES.values()}


def held_out_users(users: Sequence[str], share: float, seed: int) -> set[str]:
    rng = np.random.default_rng(seed)
    return set(rng.choice(list(users), int(len(users) * share), replace=False).tolist())


def sequences(sessions: pd.DataFrame) -> dict[str, list[str]]:
    return {str(u): g["category"].tolist() for u, g in sessions.groupby("user_id", sort=True)}


def examples(
    seqs: Mapping[str, list[str]], rows: Mapping[str, F32], drop: frozenset[str] = frozenset()
) -> tuple[F32, list[str]]:
    """History features and next-session targets of every user's sessions, ``drop``'s
    categories removed first (as if they never existed)."""
    feats, targets = [], []
    for cats in seqs.values():
        kept = [c for c in cats if c not in drop]
        if len(kept) < 2:
            continue
        feats.append(history_features(np.stack([rows[c] for c in kept])))
        targets.extend(kept[1:])
    width = 3 * len(next(iter(rows.values())))
    return (np.concatenate(feats) if feats else np.zeros((0, width), np.float32)), targets


def decayed_interest(ts: Sequence[int], cats: Sequence[str], at_ms: int) -> dict[str, float]:
    """Sessions per category up to ``at_ms``, each weighted 2^(-age / half-life)."""
    out: Counter[str] = Counter()
    for t, c in zip(ts, cats, strict=True):
        if t <= at_ms:
            out[c] += 0.5 ** ((at_ms - t) / HALF_LIFE_MS)
    return dict(out)


def suggestion_scores(suggested: Sequence[Sequence[str]], truth: Sequence[str]) -> dict[str, float]:
    """Precision (share of all suggestions that are the user's true target), hit rate (share
    of users whose target was suggested) and suggestions per user."""
    n = sum(len(s) for s in suggested)
    hits = sum(t in s for s, t in zip(suggested, truth, strict=True))
    users = len(truth)
    return {
        "precision": hits / n if n else float("nan"),
        "hit_rate": hits / users if users else float("nan"),
        "per_user": n / users if users else float("nan"),
    }


def encoder_cost(cache: EmbeddingCache, names: Sequence[str]) -> dict[str, float]:
    encoder = cache._encoder
    encoder.encode(list(names[:3]))  # warm the session
    t = time.perf_counter()
    for name in names:
        encoder.encode([name])
    alone = (time.perf_counter() - t) / len(names)
    t = time.perf_counter()
    vecs = cache.vectors(names)
    batch = (time.perf_counter() - t) / len(names)
    v = dict(zip(names, vecs, strict=True))
    return {
        "ms_per_name_alone": alone * 1e3,
        "ms_per_name_batched": batch * 1e3,
        "cos_running_shoes_trail_running": cosine(v["running shoes"], v["trail running"]),
        "cos_cookware_chef_knives": cosine(v["cookware"], v["chef knives"]),
        "cos_running_shoes_cookware": cosine(v["running shoes"], v["cookware"]),
    }


def next_category(
    train: Mapping[str, list[str]],
    test: Mapping[str, list[str]],
    space_rows: Mapping[str, F32],
    withheld: set[str],
    cfg: TrainConfig,
) -> dict[str, dict[str, float]]:
    names = list(CATEGORY_NAMES)
    seen = [c for c in names if c not in withheld]
    index = {c: i for i, c in enumerate(names)}
    drop = frozenset(withheld)
    out: dict[str, dict[str, float]] = {}
    x, y = examples(train, space_rows, drop)
    head = EmbeddingHead(
        x, np.array([seen.index(c) for c in y]), np.stack([space_rows[c] for c in seen]), cfg
    )
    xt, yt = examples(test, space_rows)
    target = np.array([index[c] for c in yt])
    is_withheld = np.array([c in withheld for c in yt])
    scores = head.scores(xt, np.stack([space_rows[c] for c in names]))
    out["embeddings"] = _split_accuracy(scores, target, is_withheld)
    popularity = np.array([float(sum(s.count(c) for s in train.values())) for c in names])
    for buckets in (16, 64):
        rows = dict(zip(names, bucket_rows(names, buckets), strict=True))
        x, y = examples(train, rows, drop)
        hashed = HashedHead(x, np.array([rows[c].argmax() for c in y]), buckets, cfg)
        xt, _ = examples(test, rows)
        for c in withheld:  # never in training: a hashed model cannot know it is popular
            popularity[index[c]] = 0.0
        out[f"hashed_{buckets}"] = _split_accuracy(
            hashed.scores(xt, names, popularity), target, is_withheld
        )
    return out


def _split_accuracy(
    scores: F32, target: npt.NDArray[np.int64], withheld: npt.NDArray[np.bool_]
) -> dict[str, float]:
    return {
        "seen": top_k_accuracy(scores[~withheld], target[~withheld]),
        "withheld": top_k_accuracy(scores[withheld], target[withheld]),
        "n_seen": int((~withheld).sum()),
        "n_withheld": int(withheld.sum()),
    }


def related_check(
    sessions: pd.DataFrame,
    truth: pd.DataFrame,
    vectors: Mapping[str, F32],
    popular: Sequence[str],
    end_ms: int,
) -> dict[str, dict[str, float]]:
    drifted = truth[truth["drift_to"].notna() & (truth["drift_ms"] + AFTER_DRIFT_MS <= end_ms)]
    by_user = {str(u): g for u, g in sessions.groupby("user_id")}
    got: dict[str, list[list[str]]] = {"related": [], "popular": [], "own_top": []}
    targets = []
    for row in drifted.itertuples():
        g = by_user[str(row.user_id)]
        at = int(row.drift_ms + AFTER_DRIFT_MS)
        now = decayed_interest(g["ts"].tolist(), g["category"].tolist(), at)
        before = decayed_interest(g["ts"].tolist(), g["category"].tolist(), at - 7 * DAY_MS)
        levels = {c: Interest(v, before.get(c, 0.0)) for c, v in now.items()}
        fading = str(row.drift_from)
        got["related"].append([s.category for s in related(fading, vectors, levels)])
        got["popular"].append([c for c in popular if c != fading][:3])
        own = sorted((c for c in now if c != fading), key=lambda c: -now[c])
        got["own_top"].append(own[:3])
        targets.append(str(row.drift_to))
    return {k: {**suggestion_scores(v, targets), "users": len(targets)} for k, v in got.items()}


def training_catalogue(
    events: pd.DataFrame, withheld: set[str], held: set[str], titles_per: int
) -> list[str]:
    """The names (and up to ``titles_per`` distinct item titles per category) PCA is fitted
    on: training users' events outside withheld categories. Titles made withheld categories
    worse in a trial at 1,500 users (top-5 0.748 with 3 titles per category and 24 dims;
    0.807 and 0.819 with names alone at 20 and 26): they pull components towards brands and
    attributes."""
    ev = events[~events["category"].isin(withheld) & ~events["user_id"].isin(held)]
    titles = ev.dropna(subset=["item_title"]).drop_duplicates(["category", "item_title"])
    sample = titles.groupby("category").head(titles_per)["item_title"].astype(str).tolist()
    names = sorted(set(ev["category"].dropna().astype(str)))
    return names + sample


def print_encoder(cost: Mapping[str, float]) -> None:
    print(
        f"encoder: {cost['ms_per_name_alone']:.2f} ms per new name alone, "
        f"{cost['ms_per_name_batched']:.2f} ms in a batch of {len(CATEGORY_NAMES)}; cosine "
        f"running shoes/trail running {cost['cos_running_shoes_trail_running']:.2f}, "
        f"cookware/chef knives {cost['cos_cookware_chef_knives']:.2f}, "
        f"running shoes/cookware {cost['cos_running_shoes_cookware']:.2f}"
    )


def print_accuracy(acc: Mapping[str, Mapping[str, float]], dims: int, texts: int) -> None:
    print(
        f"next-category top-5 accuracy, held-out users ({dims}-d space from "
        f"{texts:,} training texts):"
    )
    print(f"  {'input':<12} {'seen categories':>16} {'withheld categories':>20}")
    for name, a in acc.items():
        print(f"  {name:<12} {a['seen']:>16.3f} {a['withheld']:>20.3f}")
    print(
        f"  ({acc['embeddings']['n_seen']:,} and {acc['embeddings']['n_withheld']:,} next sessions)"
    )


def print_related(rel: Mapping[str, Mapping[str, float]]) -> None:
    print(
        f"related suggestions, {rel['related']['users']:,} held-out users who drifted, "
        "14 days after the drift:"
    )
    for name, r in rel.items():
        print(
            f"  {name:<10} precision {r['precision']:.3f}  hit rate {r['hit_rate']:.3f}  "
            f"{r['per_user']:.2f} per user"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dims", type=int, default=16)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--titles", type=int, default=0, help="item titles per category in the PCA fit (0: names)"
    )
    add_json_option(parser, "embeddings")
    args = parser.parse_args()

    t0 = time.perf_counter()
    log = simulate_semantic(args.users, days=args.days, seed=args.seed)
    sessions = session_starts(log.events)
    users = sorted(log.truth["user_id"])
    held = held_out_users(users, args.holdout, args.seed + 1)
    withheld = withheld_categories(args.seed + 2)
    seqs = sequences(sessions)
    train = {u: s for u, s in seqs.items() if u not in held}
    test = {u: s for u, s in seqs.items() if u in held}
    print(
        f"{len(log.events):,} events, {len(sessions):,} sessions, {len(users):,} users "
        f"({len(held):,} held out); withheld from training: {', '.join(sorted(withheld))}"
    )

    cache = EmbeddingCache(load_encoder())
    cost = encoder_cost(cache, list(CATEGORY_NAMES))
    print_encoder(cost)

    catalogue = training_catalogue(log.events, withheld, held, args.titles)
    space = fit_space(cache.vectors(catalogue), args.dims)
    space_rows = dict(
        zip(CATEGORY_NAMES, space.project(cache.vectors(CATEGORY_NAMES)), strict=True)
    )
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed)
    acc = next_category(train, test, space_rows, withheld, cfg)
    print_accuracy(acc, args.dims, len(catalogue))

    counts = Counter(c for u, s in train.items() for c in s if c not in withheld)
    popular = [c for c, _ in counts.most_common(4)]
    end_ms = int(log.events["ts"].max())
    held_truth = log.truth[log.truth["user_id"].isin(held)]
    rel = related_check(sessions, held_truth, space_rows, popular, end_ms)
    print_related(rel)
    elapsed = time.perf_counter() - t0
    print(f"{elapsed:.1f} s in all")

    path = figures_path(args.json, "embeddings")
    write_figures(
        path,
        {
            "args": vars(args),
            "encoder": cost,
            "next_category_top5": acc,
            "related": rel,
            "withheld": sorted(withheld),
            "seconds": elapsed,
        },
    )
    write_figures(OUT_DIR / "embeddings-space.json", space.to_card(), indent=0)


if __name__ == "__main__":
    main()
