"""A batch of the lapse step model's events in rounds: round r holds every user's r-th event
of the batch (one onnxruntime call per round). The counters are counted round by round on
their own, then the LSTM steps through the rounds on slices of the events in round order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from decay.lapse_state import COUNTER_DTYPE, COUNTERS, advance

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Rounds = list[tuple[I64, I64]]


def batch_rounds(m: I64, starts: I64) -> Rounds:
    """Per round: the positions of its events (each user's events are contiguous from
    ``starts``, ``m`` of them) and its users, in user order."""
    rounds = []
    for r in range(int(m.max())):
        users = np.nonzero(m > r)[0]
        rounds.append((starts[users] + r, users))
    return rounds


def count_rounds(
    st: npt.NDArray[np.void],
    rounds: Rounds,
    ts: I64,
    amount: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.void], I64, npt.NDArray[np.bool_]]:
    """The counters after each event (exact sums in each user's event order), the time of
    the user's last event before it (its own for a user's first; the feature row reads the
    counters before the event, decay.features) and whether it is in order. Round by round
    on the counters alone: ``h`` and ``c`` are most of a state's bytes."""
    now = np.empty(len(st), dtype=COUNTER_DTYPE)  # each user's counters, as they go
    for name in COUNTERS:
        now[name] = st[name]
    counted = np.empty(len(ts), dtype=COUNTER_DTYPE)
    prev = np.empty(len(ts), np.int64)
    in_order = np.empty(len(ts), dtype=bool)
    for idx, users in rounds:
        sub = now[users]
        t = ts[idx]
        prev[idx] = np.where(sub["n_events"] > 0, sub["last_ts_ms"], t)
        in_order[idx] = advance(sub, t, amount[idx])
        now[users] = sub
        counted[idx] = sub
    return counted, prev, in_order


def count_all(
    st: npt.NDArray[np.void],
    m: I64,
    starts: I64,
    rounds: Rounds,
    ts: I64,
    amount: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.void], I64, npt.NDArray[np.bool_]]:
    """``count_rounds``'s results, the rounds done at once on a users-by-rounds grid where it
    is small (each user's events a row): the last time is a running maximum, the first a
    running minimum, the amounts a running sum along each row (accumulate: one addition after
    another, as round by round), each seeded with the user's stored counters."""
    n0 = st["n_events"].astype(np.int64)
    width = int(m.max()) + 1 if len(m) else 1
    if len(m) * width > 8 * len(ts) + 1024 or int((n0 + m).max(initial=0)) >= 2**32:
        return count_rounds(st, rounds, ts, amount)  # a few users with many: rounds
    col = np.arange(width - 1)
    held = col < m[:, None]  # [users, rounds]: the user has an r-th event
    pos = np.where(held, starts[:, None] + col, 0)
    seen = n0 > 0
    grid = np.empty((len(m), width), np.int64)  # seed, then the events (padding after)
    grid[:, 0] = np.where(seen, st["last_ts_ms"], np.iinfo(np.int64).min)
    grid[:, 1:] = np.where(held, ts[pos], np.iinfo(np.int64).min)
    last = np.maximum.accumulate(grid, axis=1)
    grid[:, 0] = np.where(seen, st["first_ts_ms"], np.iinfo(np.int64).max)
    grid[:, 1:] = np.where(held, ts[pos], np.iinfo(np.int64).max)
    first = np.minimum.accumulate(grid, axis=1)
    sums = np.empty((len(m), width), np.float64)
    sums[:, 0] = st["amount_sum"]
    sums[:, 1:] = np.where(held, np.maximum(amount[pos], 0.0), 0.0)
    sums = np.add.accumulate(sums, axis=1)
    at = pos[held]  # each event's position, user by user, round by round
    before = last[:, :-1][held]  # the user's last time before each event
    count = n0[:, None] + col + 1
    counted = np.empty(len(ts), dtype=COUNTER_DTYPE)
    counted["n_events"][at] = count[held]
    counted["first_ts_ms"][at] = first[:, 1:][held]
    counted["last_ts_ms"][at] = last[:, 1:][held]
    counted["amount_sum"][at] = sums[:, 1:][held]
    had = (count - 1)[held] > 0
    prev = np.empty(len(ts), np.int64)
    prev[at] = np.where(had, before, ts[at])
    in_order = np.empty(len(ts), dtype=bool)
    in_order[at] = ~had | (ts[at] >= before)
    return counted, prev, in_order


def recur_rounds(
    run: Callable[[dict[str, F32]], list[F32]],  # one onnxruntime call: the feeds -> outputs
    st: npt.NDArray[np.void],
    m: I64,
    rounds: Rounds,
    in_order: npt.NDArray[np.bool_],
    feats: F32,
    static: F32,
) -> list[F32]:
    """``h``, ``c`` and ``params`` after each event, round by round from the users'
    states ``st``: an older event leaves them as they were. The events are taken in
    round order, so that a round reads and writes slices; round r + 1's users are round
    r's with more than r + 1 events (``m``), in the same order."""
    order = np.concatenate([idx for idx, _ in rounds])  # the events, round by round
    go_all, rows, stat = in_order[order], feats[order], static[order]
    every = bool(go_all.all())  # the usual case: no event older than its user's last
    now = [st[name][rounds[0][1]] for name in ("h", "c", "params")]  # this round's users'
    out = [np.empty((len(order), *v.shape[1:]), np.float32) for v in now]
    start = 0
    for r, (idx, users) in enumerate(rounds):
        end = start + len(idx)
        go = go_all[start:end]
        if every or go.all():
            feeds = {
                "event": rows[start:end],
                "h": now[0],
                "c": now[1],
                "static": stat[start:end],
            }
            now = run(feeds)
        elif go.any():
            feeds = {
                "event": rows[start:end][go],
                "h": now[0][go],
                "c": now[1][go],
                "static": stat[start:end][go],
            }
            for value, new in zip(now, run(feeds), strict=True):
                value[go] = new  # our own arrays: gathered, or onnxruntime's outputs
        for into, value in zip(out, now, strict=True):
            into[start:end] = value
        if r + 1 < len(rounds):
            more = m[users] > r + 1
            now = [value[more] for value in now]
        start = end
    back = [np.empty_like(o) for o in out]  # in the events' own order again
    for into, o in zip(back, out, strict=True):
        into[order] = o
    return back
