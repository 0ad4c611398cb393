"""A simulator with meaning: real category names in interest families, item titles, search
queries, and users whose interest drifts to a related category; the truth records the drifts.

This is what makes the text embeddings testable (bench/embeddings.py): a model that knows
"trail running" is close to "running shoes" should predict the drift, a hashed bucket cannot.

Example::

    from training.semantic_sim import simulate_semantic
    log = simulate_semantic(2000, days=60, seed=7)
    log.events   # the event contract's columns plus item_title and query
    log.truth    # per user: main and second category, drift time, from and to

Model (one ``numpy.random.default_rng(seed)``):

* Each user has a home family, a main category in it and a second category in another family.
* Sessions are a Poisson process (rate ``Gamma(2, 0.35)`` per day). A session's category is
  the main one (share ``main``), the second one (``second``), another of the home family
  (``explore``) or any category (the rest).
* A share ``drift_p`` of users drift at a uniform time in the middle of the period: the main
  category is dropped for a new one, of the same family with probability ``related_p``, else
  of a third family. The drift's target inherits the main share.
* A session is an optional search (its ``query`` names the category or an item), 1-4 views of
  items of the category (``item_title``: brand, product, attribute), clicks, carts, purchases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import pandas as pd

from decay.durations import DAY_MS
from decay.eventlog import coerce_events

# family -> category -> products (an item title is "<brand> <product> <attribute>")
FAMILIES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "running": {
        "running shoes": ("road running shoe", "cushioned running sneaker", "racing flat"),
        "trail running": ("trail running shoe", "trail vest", "hydration pack"),
        "sports watches": ("GPS running watch", "heart rate monitor", "fitness tracker"),
        "running apparel": ("running shorts", "moisture-wicking running shirt", "running tights"),
    },
    "kitchen": {
        "cookware": ("non-stick frying pan", "cast iron skillet", "stainless steel saucepan"),
        "chef knives": ("chef's knife", "santoku knife", "knife sharpener"),
        "coffee": ("espresso machine", "burr coffee grinder", "whole bean coffee"),
        "bakeware": ("baking sheet", "springform cake pan", "silicone muffin tray"),
    },
    "outdoors": {
        "camping tents": ("two-person tent", "family camping tent", "tent footprint"),
        "sleeping bags": ("down sleeping bag", "sleeping pad", "camping pillow"),
        "hiking boots": ("waterproof hiking boot", "hiking sock", "trekking poles"),
        "backpacks": ("hiking backpack", "daypack", "rain cover for backpack"),
    },
    "gaming": {
        "video games": ("open world video game", "racing game", "puzzle game"),
        "gaming headsets": ("wireless gaming headset", "surround sound headset", "mic boom"),
        "game controllers": ("wireless game controller", "arcade stick", "controller charger"),
    },
    "baby": {
        "baby strollers": ("lightweight stroller", "jogging stroller", "stroller rain cover"),
        "diapers": ("newborn diapers", "diaper wipes", "diaper bag"),
        "baby clothes": ("baby onesie", "infant sleep sack", "baby socks"),
    },
    "garden": {
        "garden tools": ("pruning shears", "garden hoe", "watering can"),
        "plant seeds": ("tomato seeds", "wildflower seed mix", "herb seed kit"),
        "lawn mowers": ("cordless lawn mower", "robotic mower", "grass trimmer"),
    },
    "pets": {
        "dog food": ("grain-free dog food", "puppy kibble", "dog treats"),
        "cat toys": ("feather wand cat toy", "cat scratching post", "catnip mouse"),
        "aquariums": ("glass aquarium tank", "aquarium filter", "tropical fish food"),
    },
    "beauty": {
        "skincare": ("hydrating face serum", "daily moisturizer", "gentle cleanser"),
        "perfume": ("floral eau de parfum", "citrus cologne", "perfume travel spray"),
        "makeup": ("matte lipstick", "mascara", "foundation"),
    },
    "home office": {
        "office chairs": ("ergonomic office chair", "mesh desk chair", "lumbar cushion"),
        "standing desks": ("electric standing desk", "desk converter", "anti-fatigue mat"),
        "computer monitors": ("27-inch monitor", "ultrawide monitor", "monitor arm"),
    },
    "music": {
        "guitars": ("acoustic guitar", "electric guitar", "guitar strings"),
        "headphones": ("noise cancelling headphones", "wireless earbuds", "studio headphones"),
        "vinyl records": ("jazz vinyl record", "turntable", "record cleaning kit"),
    },
    "fitness": {
        "yoga mats": ("non-slip yoga mat", "yoga block", "yoga strap"),
        "dumbbells": ("adjustable dumbbells", "kettlebell", "weight rack"),
        "protein powder": ("whey protein powder", "vegan protein shake", "protein bars"),
    },
    "books": {
        "mystery novels": ("detective novel", "crime thriller", "cozy mystery"),
        "cookbooks": ("vegetarian cookbook", "baking cookbook", "italian cookbook"),
        "children's books": ("picture book", "bedtime story book", "early reader"),
    },
}
BRANDS: Final = ("Aldor", "Brevik", "Corvan", "Dunmore", "Eskel", "Farrow", "Galen", "Hollis")
ATTRIBUTES: Final = ("", "pro", "lite", "2024 edition", "black", "blue", "value pack", "XL")
FAMILY_OF: Final[dict[str, str]] = {c: f for f, cats in FAMILIES.items() for c in cats}
CATEGORY_NAMES: Final[tuple[str, ...]] = tuple(FAMILY_OF)
DEFAULT_START: Final = datetime(2024, 3, 1, tzinfo=UTC)
SESSION_GAP_MS: Final = 30 * 60_000


@dataclass(frozen=True, slots=True)
class SemanticConfig:
    main: float = 0.55
    second: float = 0.25
    explore: float = 0.12  # another category of the home family
    drift_p: float = 0.6
    related_p: float = 0.8
    search_p: float = 0.35
    rate_shape: float = 2.0
    rate_scale: float = 0.35  # sessions per day: mean 0.7


@dataclass(frozen=True, slots=True)
class SemanticLog:
    events: pd.DataFrame
    truth: pd.DataFrame


def _pick_other(rng: np.random.Generator, exclude_families: set[str]) -> str:
    names = [c for c in CATEGORY_NAMES if FAMILY_OF[c] not in exclude_families]
    return str(names[rng.integers(len(names))])


def _user_truth(rng: np.random.Generator, uid: str, days: int, cfg: SemanticConfig) -> dict:
    families = list(FAMILIES)
    home = families[rng.integers(len(families))]
    main = list(FAMILIES[home])[rng.integers(len(FAMILIES[home]))]
    second = _pick_other(rng, {home})
    row: dict = {"user_id": uid, "family": home, "main": main, "second": second}
    row.update(drift_ms=np.nan, drift_from=None, drift_to=None, drift_related=False)
    if rng.random() < cfg.drift_p:
        if rng.random() < cfg.related_p:
            others = [c for c in FAMILIES[home] if c != main]
            target = others[rng.integers(len(others))]
        else:
            target = _pick_other(rng, {home, FAMILY_OF[second]})
        row.update(
            drift_ms=float(rng.uniform(0.35, 0.65) * days * DAY_MS),
            drift_from=main,
            drift_to=target,
            drift_related=FAMILY_OF[target] == home,
        )
    return row


def _session_category(
    rng: np.random.Generator, truth: dict, t_ms: float, cfg: SemanticConfig
) -> str:
    main = truth["main"]
    if truth["drift_to"] is not None and t_ms >= truth["drift_ms"]:
        main = truth["drift_to"]
    u = rng.random()
    if u < cfg.main:
        return str(main)
    if u < cfg.main + cfg.second:
        return str(truth["second"])
    if u < cfg.main + cfg.second + cfg.explore:
        family = list(FAMILIES[truth["family"]])
        return str(family[rng.integers(len(family))])
    return str(CATEGORY_NAMES[rng.integers(len(CATEGORY_NAMES))])


def _item(rng: np.random.Generator, category: str) -> tuple[str, str]:
    products = FAMILIES[FAMILY_OF[category]][category]
    p, b, a = rng.integers(len(products)), rng.integers(len(BRANDS)), rng.integers(len(ATTRIBUTES))
    title = f"{BRANDS[b]} {products[p]} {ATTRIBUTES[a]}".strip()
    item_id = f"{CATEGORY_NAMES.index(category):02d}-{p}{b}{a}"
    return item_id, title


def _session_events(
    rng: np.random.Generator, category: str, t0: float, cfg: SemanticConfig
) -> list:
    """(offset ms, type, item id, title, query) of one session."""
    out: list[tuple[float, str, str | None, str | None, str | None]] = []
    t = t0
    if rng.random() < cfg.search_p:
        item_id, title = _item(rng, category)
        query = category if rng.random() < 0.5 else title.split(" ", 1)[1]
        out.append((t, "search", None, None, query))
    for _ in range(int(rng.integers(1, 5))):
        t += float(rng.exponential(90_000.0))
        item_id, title = _item(rng, category)
        out.append((t, "view", item_id, title, None))
        if rng.random() < 0.4:
            out.append((t + 20_000.0, "click", item_id, title, None))
            if rng.random() < 0.25:
                out.append((t + 60_000.0, "cart", item_id, title, None))
                if rng.random() < 0.5:
                    out.append((t + 120_000.0, "purchase", item_id, title, None))
    return out


def simulate_semantic(
    n_users: int,
    days: int = 60,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    config: SemanticConfig | None = None,
) -> SemanticLog:
    """Events (the contract's columns, plus ``item_title`` and ``query``) and per-user truth;
    the truth's ``drift_ms`` is epoch milliseconds (NaN for users who did not drift)."""
    cfg = config or SemanticConfig()
    rng = np.random.default_rng(seed)
    t_start = start.timestamp() * 1000.0
    rows: list[tuple] = []
    truths = []
    for u in range(n_users):
        uid = f"s{u:06d}"
        truth = _user_truth(rng, uid, days, cfg)
        rate = rng.gamma(cfg.rate_shape, cfg.rate_scale)
        n_sessions = max(1, int(rng.poisson(rate * days)))
        for t in np.sort(rng.uniform(0.0, days * DAY_MS, n_sessions)):
            category = _session_category(rng, truth, float(t), cfg)
            for off, kind, item_id, title, query in _session_events(rng, category, float(t), cfg):
                rows.append((uid, int(t_start + off), kind, item_id, category, title, query))
        truth["drift_ms"] = truth["drift_ms"] + t_start  # NaN stays NaN
        truths.append(truth)
    columns = ["user_id", "ts", "type", "item_id", "category", "item_title", "query"]
    events = pd.DataFrame(rows, columns=columns).sort_values(["ts", "user_id"], kind="stable")
    events.insert(0, "event_id", [f"se{i:08d}" for i in range(len(events))])
    events = coerce_events(events.reset_index(drop=True))
    for col in ("item_title", "query"):
        events[col] = events[col].astype(pd.StringDtype())
    return SemanticLog(events=events, truth=pd.DataFrame(truths))


def session_starts(events: pd.DataFrame, gap_ms: int = SESSION_GAP_MS) -> pd.DataFrame:
    """One row per session (a gap of ``gap_ms`` starts one): user, start ts and the category
    of its first event with one (``decay.engagement`` counts sessions the same way)."""
    ev = events.dropna(subset=["category"]).sort_values(["user_id", "ts"], kind="stable")
    gap = ev.groupby("user_id", sort=False)["ts"].diff()
    first = gap.isna() | (gap > gap_ms)
    out = ev.loc[first, ["user_id", "ts", "category"]].reset_index(drop=True)
    return out.astype({"category": str, "user_id": str})
