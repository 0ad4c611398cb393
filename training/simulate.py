"""Synthetic e-commerce event logs with per-user ground truth (vectorised numpy).

Example::

    from datetime import UTC, datetime
    from decay.eventlog import write_events
    from training.simulate import simulate, users_for_events

    start = datetime(2024, 1, 1, tzinfo=UTC)
    n_users = users_for_events(1_000_000, days=30, seed=7)   # about 1M events
    log = simulate(n_users, days=30, seed=7, start=start)
    write_events(log.events, "data/sim.parquet")
    log.truth.to_parquet("data/sim_truth.parquet")

Model (every draw comes from one ``numpy.random.default_rng(seed)``, so a seed fixes the log):

* Users arrive uniformly (in rhythm-weighted time) over the first ``arrival_fraction`` of the
  period; the arrival is their first session.
* Sessions follow a Poisson process whose rate ``sessions_per_day ~ Gamma(r, scale)`` differs
  per user (the NBD half of BG/NBD), modulated by a daily rhythm (evening peak, night trough;
  hours are UTC) and a weekly one (weekends higher) normalised to mean 1, so the rate is the
  user's average sessions per day.
* After every session the user leaves for good with probability ``dropout_p ~ Beta(a, b)``
  (the BG half); ``churn_ts`` is the last event of the final session, NaN when the user is
  still active at the end of the period.
* A session is an optional search, a geometric number of product views, and per view a
  click, then maybe an add-to-cart (per-user Beta funnel rates) or a wishlist; sessions with
  a cart check out with a per-user probability, buying each carted item. Quantities are
  geometric (mostly 1); items follow a Zipf popularity inside each category; prices are
  lognormal around a per-category median and fixed per item.
* 20 categories; each user has a Dirichlet preference vector, mixed over time with a second
  one (slow drift), and a fraction of users switch their main category at a random time.
* ``duplicate_fraction`` re-emits that share of events verbatim (same ``event_id``), right
  after the original, to exercise de-duplication.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from decay.durations import DAY_MS as MS_PER_DAY
from decay.eventlog import EVENT_TYPES, coerce_events

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)

# (name, share of traffic, median price in currency units)
CATEGORIES: tuple[tuple[str, float, float], ...] = (
    ("fashion", 0.12, 35.0),
    ("electronics", 0.09, 89.0),
    ("books", 0.08, 14.0),
    ("home", 0.08, 40.0),
    ("beauty", 0.07, 18.0),
    ("shoes", 0.06, 65.0),
    ("phones", 0.05, 250.0),
    ("games", 0.05, 45.0),
    ("kitchen", 0.05, 30.0),
    ("toys", 0.05, 25.0),
    ("sports", 0.05, 40.0),
    ("computers", 0.04, 420.0),
    ("health", 0.04, 20.0),
    ("pets", 0.04, 22.0),
    ("music", 0.03, 12.0),
    ("movies", 0.03, 15.0),
    ("garden", 0.03, 35.0),
    ("tools", 0.03, 45.0),
    ("baby", 0.03, 28.0),
    ("jewelry", 0.02, 80.0),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c[0] for c in CATEGORIES)

# Relative activity at each UTC hour (linearly interpolated): night trough, evening peak.
HOURLY_PROFILE: tuple[float, ...] = (
    0.55, 0.35, 0.22, 0.16, 0.14, 0.18, 0.30, 0.50, 0.70, 0.85, 0.92, 0.98,
    1.05, 1.00, 0.95, 0.95, 1.00, 1.10, 1.30, 1.55, 1.75, 1.70, 1.35, 0.90,
)  # fmt: skip
# Monday .. Sunday
WEEKLY_PROFILE: tuple[float, ...] = (0.92, 0.90, 0.92, 0.95, 1.00, 1.18, 1.22)

_TYPE_CODE = {name: i for i, name in enumerate(EVENT_TYPES)}


@dataclass(frozen=True)
class SimConfig:
    """Tunable parameters of :func:`simulate` (defaults give ~40 events per user-month)."""

    rate_shape: float = 0.7  # Gamma shape r of sessions/day across users
    rate_scale: float = 0.6  # Gamma scale (1/alpha): mean rate 0.42 sessions/day
    dropout_a: float = 1.2  # Beta(a, b) of the per-session dropout probability
    dropout_b: float = 6.0
    arrival_fraction: float = 0.5  # users arrive over this first share of the period
    items_per_category: int = 2_000
    item_zipf: float = 1.1
    price_sigma: float = 0.55  # lognormal sigma of item prices around the category median
    pref_concentration: float = 3.0  # Dirichlet total mass: small = users focus on few
    drift: float = 0.3  # weight of the second preference vector at the end of the period
    switch_fraction: float = 0.15  # users who switch their main category once
    switch_weight: float = 0.7  # weight of the new main category after a switch
    session_focus: float = 0.8  # share of views in the session's category
    view_stop_p: float = 0.18  # geometric views per session: mean 1/p
    max_views: int = 60
    search_p: float = 0.35
    other_p: float = 0.10
    click_ab: tuple[float, float] = (3.0, 7.0)  # Beta of P(click | view) per user
    cart_ab: tuple[float, float] = (2.0, 6.0)  # Beta of P(cart | click) per user
    checkout_ab: tuple[float, float] = (2.0, 3.0)  # Beta of P(checkout | cart in session)
    wishlist_p: float = 0.02
    quantity_p: float = 0.85  # geometric quantity: mostly 1
    dwell_median_s: float = 30.0
    dwell_sigma: float = 0.9
    checkout_median_s: float = 90.0
    rhythm_bin_minutes: int = 5


@dataclass(frozen=True)
class Preferences:
    """Each user's category preferences over time (users in ``truth`` order, categories in
    ``CATEGORY_NAMES`` order): at time t a session draws its category from
    ``(1 - w) base + w drift`` with ``w = drift_weight * (t - start) / (end - start)``, and
    ``base`` is ``initial``, or ``switched`` from ``switch_ts`` on."""

    initial: FloatArray  # [users, categories]
    drift: FloatArray
    switched: FloatArray
    switch_ts: FloatArray  # NaN: no switch
    drift_weight: float
    start_ms: int
    end_ms: int

    def at(self, user: int, t_ms: int) -> FloatArray:
        w = self.drift_weight * (t_ms - self.start_ms) / (self.end_ms - self.start_ms)
        switched = not np.isnan(self.switch_ts[user]) and t_ms >= self.switch_ts[user]
        base = self.switched[user] if switched else self.initial[user]
        out: FloatArray = (1.0 - w) * base + w * self.drift[user]
        return out


@dataclass(frozen=True)
class SimulatedLog:
    """Events in the contract's columns (sorted by ``ts``) and per-user ground truth."""

    events: pd.DataFrame
    truth: pd.DataFrame
    start_ms: int
    end_ms: int
    seed: int
    config: SimConfig = field(default_factory=SimConfig)
    preferences: Preferences | None = None


def _to_ms(start: datetime) -> int:
    # naive datetimes are taken as UTC rather than the host's local zone
    aware = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def rhythm_grid(start_ms: int, end_ms: int, bin_minutes: int = 5) -> tuple[FloatArray, FloatArray]:
    """Bin edges (epoch ms) and cumulative intensity at them, in "average days".

    Intensity is piecewise constant per bin (hourly x weekly profile, each mean 1), so an
    inverse interpolation maps uniform draws in intensity space to rhythm-shaped times.
    """
    bin_ms = bin_minutes * 60_000
    n_bins = max(1, math.ceil((end_ms - start_ms) / bin_ms))
    edges = np.minimum(start_ms + np.arange(n_bins + 1, dtype=np.int64) * bin_ms, end_ms)
    mid = (edges[:-1] + edges[1:]) / 2.0
    hourly = np.asarray(HOURLY_PROFILE) / np.mean(HOURLY_PROFILE)
    weekly = np.asarray(WEEKLY_PROFILE) / np.mean(WEEKLY_PROFILE)
    hour = (mid % MS_PER_DAY) / 3_600_000.0
    h_mult = np.interp(hour, np.arange(25), np.append(hourly, hourly[0]))
    # 1970-01-01 was a Thursday (weekday 3)
    weekday = ((mid // MS_PER_DAY).astype(np.int64) + 3) % 7
    mult = h_mult * weekly[weekday]
    cum = np.concatenate([[0.0], np.cumsum(mult * np.diff(edges) / MS_PER_DAY)])
    return edges.astype(np.float64), cum


def _group_rank(groups: IntArray) -> IntArray:
    """0-based position of each element inside its run, for an array sorted by group."""
    first = np.searchsorted(groups, groups, side="left")
    return np.arange(groups.size, dtype=np.int64) - first


def _categorical(cum: FloatArray, rng: np.random.Generator) -> IntArray:
    """One draw per row from row-wise cumulative probabilities ``cum`` (n, k)."""
    u = rng.random(int(cum.shape[0]))
    out: IntArray = np.minimum((cum < u[:, None]).sum(axis=1), cum.shape[1] - 1).astype(np.int64)
    return out


def _lognormal_ms(rng: np.random.Generator, median_s: float, sigma: float, size: int) -> IntArray:
    return (rng.lognormal(math.log(median_s * 1000.0), sigma, size)).astype(np.int64)


def simulate(
    n_users: int = 20_000,
    days: float = 30.0,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    *,
    duplicate_fraction: float = 0.0,
    config: SimConfig | None = None,
) -> SimulatedLog:
    """Simulate ``n_users`` shoppers over ``days`` from ``start``; see the module docstring.

    ``events`` has the contract columns with canonical dtypes (``ts`` int64 epoch ms), sorted
    by ``ts``, ``event_id`` ``e0, e1, ...`` in that order (duplicates repeat their original's
    id). ``truth`` has one row per user: ``user_id``, ``arrival_ts``, ``sessions_per_day``
    (true rate), ``dropout_p``, ``churned``, ``churn_ts`` (float ms, NaN if not churned in the
    period), ``n_sessions``, ``n_events``, funnel rates ``click_p``/``cart_p``/``checkout_p``,
    ``top_category``/``top_share`` (initial preference), ``switch_ts`` (NaN if no switch),
    ``switch_category`` (the main category switched to; NA if no switch) and
    ``final_top_category`` (preference at the end of the period).

    Moving away from a category, in the truth: from ``switch_ts`` on, every category but
    ``switch_category`` keeps ``1 - switch_weight`` (0.3) of its base share; the drift alone
    keeps at least ``1 - drift`` (0.7) of every share, so it never halves one. A user has moved away
    from category c at time t exactly when ``switch_ts <= t`` and c is not ``switch_category``.
    """
    if n_users < 1:
        raise ValueError("n_users must be positive")
    if days <= 0:
        raise ValueError("days must be positive")
    if not 0.0 <= duplicate_fraction < 1.0:
        raise ValueError("duplicate_fraction must be in [0, 1)")
    cfg = config or SimConfig()
    rng = np.random.default_rng(seed)
    start_ms = _to_ms(start)
    end_ms = start_ms + round(days * MS_PER_DAY)
    edges, cum_int = rhythm_grid(start_ms, end_ms, cfg.rhythm_bin_minutes)
    c_total = float(cum_int[-1])

    n_cat = len(CATEGORIES)
    share = np.array([c[1] for c in CATEGORIES])
    share /= share.sum()
    median_price = np.array([c[2] for c in CATEGORIES])

    # --- catalog: Zipf popularity within a category, one lognormal price per item
    n_items = cfg.items_per_category
    pop = 1.0 / np.arange(1, n_items + 1) ** cfg.item_zipf
    item_cdf = np.cumsum(pop / pop.sum())
    raw_price = rng.lognormal(
        np.log(np.repeat(median_price, n_items)), cfg.price_sigma, n_cat * n_items
    )
    # shop-style .99 endings
    item_price = np.maximum(np.ceil(raw_price) - 0.01, 0.99)

    # --- users
    uid = np.arange(n_users, dtype=np.int64)
    rate = rng.gamma(cfg.rate_shape, cfg.rate_scale, n_users)
    dropout = rng.beta(cfg.dropout_a, cfg.dropout_b, n_users)
    click_p = rng.beta(*cfg.click_ab, n_users)
    cart_p = rng.beta(*cfg.cart_ab, n_users)
    checkout_p = rng.beta(*cfg.checkout_ab, n_users)
    c_arrival_end = float(
        np.interp(start_ms + cfg.arrival_fraction * (end_ms - start_ms), edges, cum_int)
    )
    arr_c = rng.uniform(0.0, c_arrival_end, n_users)
    arr_t = np.interp(arr_c, cum_int, edges)

    pref0 = rng.dirichlet(cfg.pref_concentration * share, n_users)
    pref_drift = rng.dirichlet(cfg.pref_concentration * share, n_users)
    top0 = pref0.argmax(axis=1)
    switches = rng.random(n_users) < cfg.switch_fraction
    switch_t = np.where(switches, arr_t + rng.random(n_users) * (end_ms - arr_t), np.nan)
    new_cat = (top0 + rng.integers(1, n_cat, n_users)) % n_cat  # any category but the top
    pref_switch = (1.0 - cfg.switch_weight) * pref0
    pref_switch[uid, new_cat] += cfg.switch_weight
    # (user, component, category): 0 = initial, 1 = drift target, 2 = after the switch
    pref_cum = np.cumsum(np.stack([pref0, pref_drift, pref_switch], axis=1), axis=2)
    pref_cum[..., -1] = 1.0

    # --- sessions: first at arrival, then Poisson in intensity space; dropout after each
    n_extra = rng.poisson(rate * (c_total - arr_c))
    lifetime = rng.geometric(dropout)  # sessions before leaving for good (>= 1)
    e_user = np.repeat(uid, n_extra)
    e_c = arr_c[e_user] + rng.random(e_user.size) * (c_total - arr_c)[e_user]
    order = np.lexsort((e_c, e_user))
    e_user, e_c = e_user[order], e_c[order]
    keep = _group_rank(e_user) < lifetime[e_user] - 1
    s_user = np.concatenate([uid, e_user[keep]])
    s_c = np.concatenate([arr_c, e_c[keep]])
    order = np.lexsort((s_c, s_user))
    s_user, s_c = s_user[order], s_c[order]
    n_sess_user = np.bincount(s_user, minlength=n_users)
    churned_model = lifetime <= 1 + n_extra  # the final session falls inside the period
    s_t = np.interp(s_c, cum_int, edges).astype(np.int64)
    n_sess = s_user.size

    frac = (s_t - start_ms) / (end_ms - start_ms)
    comp = np.where(switches[s_user] & (s_t >= np.nan_to_num(switch_t[s_user], nan=np.inf)), 2, 0)
    comp = np.where(rng.random(n_sess) < cfg.drift * frac, 1, comp)
    s_cat = _categorical(pref_cum[s_user, comp], rng)
    n_views = np.minimum(rng.geometric(cfg.view_stop_p, n_sess), cfg.max_views)
    has_search = rng.random(n_sess) < cfg.search_p
    lead = np.where(has_search, _lognormal_ms(rng, 12.0, 0.6, n_sess), 0)

    # --- views (grouped by session, in time order inside each)
    v_sess = np.repeat(np.arange(n_sess, dtype=np.int64), n_views)
    n_v = v_sess.size
    v_user = s_user[v_sess]
    v_cat = s_cat[v_sess].copy()
    off = np.flatnonzero(rng.random(n_v) >= cfg.session_focus)
    v_cat[off] = _categorical(pref_cum[v_user[off], comp[v_sess[off]]], rng)
    v_rank = np.minimum(np.searchsorted(item_cdf, rng.random(n_v), side="right"), n_items - 1)
    v_item = v_cat * n_items + v_rank
    dwell = np.clip(_lognormal_ms(rng, cfg.dwell_median_s, cfg.dwell_sigma, n_v), 2_000, 900_000)
    before = np.cumsum(dwell) - dwell
    first_view = np.searchsorted(v_sess, np.arange(n_sess))
    v_ts = s_t[v_sess] + lead[v_sess] + before - before[first_view][v_sess]
    views_end = s_t + lead + np.bincount(v_sess, weights=dwell, minlength=n_sess).astype(np.int64)

    clicked = rng.random(n_v) < click_p[v_user]
    carted = clicked & (rng.random(n_v) < cart_p[v_user])
    wished = ~carted & (rng.random(n_v) < cfg.wishlist_p)
    qty = rng.geometric(cfg.quantity_p, n_v)
    has_cart = np.bincount(v_sess[carted], minlength=n_sess) > 0
    converts = has_cart & (rng.random(n_sess) < checkout_p[s_user])
    bought = carted & converts[v_sess]
    checkout_at = views_end + _lognormal_ms(rng, cfg.checkout_median_s, 0.7, n_sess)
    p_idx = np.flatnonzero(bought)
    p_ts = checkout_at[v_sess[p_idx]] + 1_500 * _group_rank(v_sess[p_idx])
    sess_end = np.where(converts, checkout_at, views_end)
    has_other = rng.random(n_sess) < cfg.other_p
    o_idx = np.flatnonzero(has_other)
    o_ts = s_t[o_idx] + (rng.random(o_idx.size) * (sess_end - s_t)[o_idx]).astype(np.int64)
    sr_idx = np.flatnonzero(has_search)

    c_idx, k_idx, w_idx = np.flatnonzero(clicked), np.flatnonzero(carted), np.flatnonzero(wished)
    parts: list[tuple[str, IntArray, IntArray, IntArray, IntArray, IntArray]] = [
        # (type, session, ts, item (-1 none), category (-1 none), quantity (0 none))
        ("search", sr_idx, s_t[sr_idx], np.full(sr_idx.size, -1), s_cat[sr_idx],
         np.zeros(sr_idx.size, np.int64)),
        ("view", v_sess, v_ts, v_item, v_cat, np.zeros(n_v, np.int64)),
        ("click", v_sess[c_idx], v_ts[c_idx] + (dwell[c_idx] * 0.35).astype(np.int64),
         v_item[c_idx], v_cat[c_idx], np.zeros(c_idx.size, np.int64)),
        ("wishlist", v_sess[w_idx], v_ts[w_idx] + (dwell[w_idx] * 0.55).astype(np.int64),
         v_item[w_idx], v_cat[w_idx], np.zeros(w_idx.size, np.int64)),
        ("cart", v_sess[k_idx], v_ts[k_idx] + (dwell[k_idx] * 0.75).astype(np.int64),
         v_item[k_idx], v_cat[k_idx], qty[k_idx]),
        ("purchase", v_sess[p_idx], p_ts, v_item[p_idx], v_cat[p_idx], qty[p_idx]),
        ("other", o_idx, o_ts, np.full(o_idx.size, -1), np.full(o_idx.size, -1),
         np.zeros(o_idx.size, np.int64)),
    ]  # fmt: skip
    ev_type = np.concatenate([np.full(p[1].size, _TYPE_CODE[p[0]], np.int8) for p in parts])
    ev_sess = np.concatenate([p[1] for p in parts]).astype(np.int64)
    ev_ts = np.concatenate([p[2] for p in parts]).astype(np.int64)
    ev_item = np.concatenate([p[3] for p in parts]).astype(np.int64)
    ev_cat = np.concatenate([p[4] for p in parts]).astype(np.int64)
    ev_qty = np.concatenate([p[5] for p in parts]).astype(np.int64)

    # churned: the final session happened and all of the user's events ended inside the
    # period; the max over all sessions covers a long session overlapping the next one
    user_last = np.full(n_users, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(user_last, s_user[ev_sess], ev_ts)
    churned = churned_model & (user_last < end_ms)
    churn_ts = np.where(churned, user_last.astype(np.float64), np.nan)

    # a stable sort keeps construction order on equal ts, so the ordering is deterministic
    order = np.argsort(ev_ts, kind="stable")
    order = order[ev_ts[order] < end_ms]
    n_ev = order.size
    event_no = np.arange(n_ev, dtype=np.int64)
    n_dup = round(duplicate_fraction * n_ev)
    if n_dup:
        dup = np.sort(rng.choice(n_ev, size=n_dup, replace=False))
        # each copy lands right after its original: same ts, so the log stays sorted
        event_no = np.sort(np.concatenate([event_no, dup]), kind="stable")
    rows = order[event_no]

    events = _events_frame(
        event_no=event_no,
        user=s_user[ev_sess[rows]],
        ts=ev_ts[rows],
        type_code=ev_type[rows],
        item=ev_item[rows],
        cat=ev_cat[rows],
        qty=ev_qty[rows],
        item_price=item_price,
        n_users=n_users,
        n_items=n_items,
    )

    base_end = np.where(switches[:, None], pref_switch, pref0)
    final_pref = (1.0 - cfg.drift) * base_end + cfg.drift * pref_drift
    n_user_events = np.bincount(s_user[ev_sess[order]], minlength=n_users)
    cat_names = np.asarray(CATEGORY_NAMES, dtype=object)
    truth = pd.DataFrame(
        {
            "user_id": pd.array(_user_names(n_users), dtype=pd.StringDtype()),
            "arrival_ts": arr_t.astype(np.int64),
            "sessions_per_day": rate,
            "dropout_p": dropout,
            "churned": churned,
            "churn_ts": churn_ts,
            "n_sessions": n_sess_user.astype(np.int64),
            "n_events": n_user_events.astype(np.int64),
            "click_p": click_p,
            "cart_p": cart_p,
            "checkout_p": checkout_p,
            "top_category": pd.array(cat_names[top0], dtype=pd.StringDtype()),
            "top_share": pref0.max(axis=1),
            "switch_ts": switch_t,
            "switch_category": pd.array(
                np.where(switches, cat_names[new_cat], None), dtype=pd.StringDtype()
            ),
            "final_top_category": pd.array(
                cat_names[final_pref.argmax(axis=1)], dtype=pd.StringDtype()
            ),
        }
    )
    logger.info(
        "simulated %d events (%d duplicates) for %d users over %.1f days",
        len(events),
        n_dup,
        n_users,
        days,
    )
    prefs = Preferences(pref0, pref_drift, pref_switch, switch_t, cfg.drift, start_ms, end_ms)
    return SimulatedLog(events, truth, start_ms, end_ms, seed, cfg, prefs)


def _user_names(n: int) -> Any:
    return ("u" + pd.Series(np.arange(n)).astype(str)).to_numpy(dtype=object)


def _events_frame(
    *,
    event_no: IntArray,
    user: IntArray,
    ts: IntArray,
    type_code: npt.NDArray[np.int8],
    item: IntArray,
    cat: IntArray,
    qty: IntArray,
    item_price: FloatArray,
    n_users: int,
    n_items: int,
) -> pd.DataFrame:
    # categoricals from codes avoid building a million Python strings twice
    item_names = (
        "i"
        + pd.Series(np.arange(item_price.size) // n_items).astype(str).str.zfill(2)
        + "-"
        + pd.Series(np.arange(item_price.size) % n_items).astype(str).str.zfill(5)
    )
    has_item = item >= 0
    frame = pd.DataFrame(
        {
            "event_id": "e" + pd.Series(event_no).astype(str),
            "user_id": pd.Categorical.from_codes(user, categories=_user_names(n_users)),
            "ts": ts,
            "type": pd.Categorical.from_codes(type_code, categories=list(EVENT_TYPES)),
            "item_id": pd.Categorical.from_codes(
                np.where(has_item, item, -1), categories=item_names.to_numpy(object)
            ),
            "category": pd.Categorical.from_codes(cat, categories=list(CATEGORY_NAMES)),
            "price": np.where(has_item, item_price[np.maximum(item, 0)], np.nan),
            "quantity": pd.arrays.IntegerArray(qty, qty <= 0),
        }
    )
    return coerce_events(frame)


def users_for_events(
    target_events: int,
    days: float = 30.0,
    seed: int = 0,
    *,
    config: SimConfig | None = None,
    pilot_users: int = 2_000,
) -> int:
    """Number of users that yields about ``target_events`` events, from a small pilot run."""
    pilot = simulate(pilot_users, days, seed, DEFAULT_START, config=config)
    per_user = max(len(pilot.events) / pilot_users, 1e-9)
    return max(1, math.ceil(target_events / per_user))
