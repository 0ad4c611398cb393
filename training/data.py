"""Load event logs (contract JSONL/CSV/Parquet, or CDNOW) and clean them, vectorised.

Cleaning drops what the stream app would dead-letter or deduplicate (so training sees what
serving sees) and reports every step:

- invalid rows: missing ids, unknown event types, timestamps outside a sane range;
  negative or non-finite prices become missing (the row is kept);
- duplicate ``event_id``: the first one is kept (the stream applies a duplicate once);
- missing categories become ``"unknown"`` (the encoder treats a missing category the same);
- bot-like users: more than ``max_per_minute`` events within one minute, anywhere in their
  history; all their events are dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from decay.durations import DAY_MS, MINUTE_MS
from decay.eventlog import cdnow_events, read_events
from decay.events import EVENT_TYPES, MIN_TS_MS
from decay.features import UNKNOWN_CATEGORY

log = logging.getLogger(__name__)


@dataclass
class CleanReport:
    rows_in: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    prices_fixed: int = 0
    categories_filled: int = 0
    bot_users: int = 0
    bot_events: int = 0
    rows_out: int = 0

    def lines(self) -> list[str]:
        invalid = ", ".join(f"{k} {v}" for k, v in self.invalid.items() if v) or "none"
        return [
            f"rows in:            {self.rows_in:,}",
            f"invalid dropped:    {sum(self.invalid.values()):,} ({invalid})",
            f"duplicate event_id: {self.duplicates:,}",
            f"prices set missing: {self.prices_fixed:,}",
            f"category->unknown:  {self.categories_filled:,}",
            f"bot-like users:     {self.bot_users:,} ({self.bot_events:,} events dropped)",
            f"rows out:           {self.rows_out:,}",
        ]


def load_events(source: str | Path) -> pd.DataFrame:
    """A contract event log by path, or ``cdnow`` / ``cdnow-sample`` (from ``lifetimes``)."""
    name = str(source)
    if name in ("cdnow", "cdnow-sample"):
        return cdnow_events(sample=name == "cdnow-sample")
    return read_events(source)


def clean(
    events: pd.DataFrame,
    *,
    max_ts_ms: int | None = None,
    max_per_minute: int = 120,
    verbose: bool = True,
) -> tuple[pd.DataFrame, CleanReport]:
    """Return the cleaned log (sorted by ts, stable) and what was done to it."""
    rep = CleanReport(rows_in=len(events))
    df = events.reset_index(drop=True)
    now = max_ts_ms if max_ts_ms is not None else int(pd.Timestamp.now(tz="UTC").value // 10**6)
    uid = df["user_id"].astype("string")
    eid = df["event_id"].astype("string")
    kind = df["type"].astype("string").str.lower()
    ts = df["ts"].to_numpy(dtype=np.int64)
    checks = {
        "missing id": (uid.isna() | eid.isna() | (uid.str.strip() == "")).to_numpy(bool),
        "unknown type": ~kind.isin(list(EVENT_TYPES)).fillna(False).to_numpy(bool),
        "bad timestamp": (ts < MIN_TS_MS) | (ts > now + DAY_MS),
    }
    bad = np.zeros(len(df), dtype=bool)
    for reason, mask in checks.items():
        rep.invalid[reason] = int((mask & ~bad).sum())
        bad |= mask
    df = df.loc[~bad].copy()
    df["type"] = kind[~bad]

    dup = df["event_id"].duplicated(keep="first").to_numpy()
    rep.duplicates = int(dup.sum())
    df = df.loc[~dup]

    if "price" in df.columns:
        price = df["price"].to_numpy(dtype=np.float64, na_value=np.nan)
        wrong = ~np.isnan(price) & (~np.isfinite(price) | (price < 0))
        rep.prices_fixed = int(wrong.sum())
        df.loc[wrong, "price"] = np.nan
    if "category" not in df.columns:
        df["category"] = pd.array([None] * len(df), dtype="string")
    missing = df["category"].isna() | (df["category"].astype("string").str.strip() == "")
    rep.categories_filled = int(missing.sum())
    df.loc[missing, "category"] = UNKNOWN_CATEGORY

    bots = bot_users(df, max_per_minute)
    is_bot = df["user_id"].isin(bots).to_numpy()
    rep.bot_users, rep.bot_events = len(bots), int(is_bot.sum())
    df = df.loc[~is_bot].sort_values("ts", kind="stable", ignore_index=True)
    rep.rows_out = len(df)
    if verbose:
        print("cleaning report\n  " + "\n  ".join(rep.lines()), flush=True)
    return df, rep


def bot_users(events: pd.DataFrame, max_per_minute: int) -> list[str]:
    """Users with more than ``max_per_minute`` events inside some one-minute span."""
    if events.empty:
        return []
    codes, users = pd.factorize(events["user_id"].astype(str))
    ts = events["ts"].to_numpy(dtype=np.int64)
    order = np.lexsort((ts, codes))
    c, t = codes[order].astype(np.int64), ts[order]
    t0 = int(t.min())
    span = int(t.max()) - t0 + MINUTE_MS + 2
    key = c * span + (t - t0)
    # events of the same user in (t - 1 min, t]
    first = np.searchsorted(key, key - MINUTE_MS + 1, side="left")
    burst = np.arange(key.shape[0]) - first + 1
    flagged = np.unique(c[burst > max_per_minute])
    return [str(users[i]) for i in flagged]


def collapse_same_day(events: pd.DataFrame) -> pd.DataFrame:
    """One event per user and UTC day (the CDNOW protocol: same-day purchases count once).
    Quantities and amounts are summed; the day's first event id and time are kept."""
    df = events.copy()
    df["_day"] = df["ts"] // DAY_MS
    amount = df["price"].fillna(0.0) * df["quantity"].fillna(1).astype("float64")
    df["_amount"] = amount
    grouped = df.groupby(["user_id", "_day"], sort=False, as_index=False)
    out = grouped.agg(
        event_id=("event_id", "first"),
        ts=("ts", "min"),
        type=("type", "first"),
        category=("category", "first"),
        quantity=("quantity", "sum"),
        _amount=("_amount", "sum"),
    )
    qty = out["quantity"].astype("float64")
    out["price"] = (out["_amount"] / qty.where(qty > 0)).astype("float64")
    out["item_id"] = pd.array([None] * len(out), dtype="string")
    cols = ["event_id", "user_id", "ts", "type", "item_id", "category", "price", "quantity"]
    return out[cols].sort_values("ts", kind="stable", ignore_index=True)
