"""The lapse (neural BTYD) step model behind the ``StepScorer`` protocol: O(1) per event.

The model (``training.lapse_step``) takes one event's feature row and the user's stored
``(h, c)`` and counters, and returns the new ``(h, c)`` and ``params = (k0, b0, p, kappa)``.
From them, with ``k = k0 + n_events - 1`` and ``beta = b0 + t_x`` in the model's time unit,
:mod:`decay.btyd` (or :mod:`decay.lifetime` for dropout ``exp``) gives the closed-form curve
``I(d) = 1 - S(d + H) / S(d)``: its value right after the event (peak), its half-life, and the
silence at which it falls below the threshold (the dormancy deadline).

Each user's state is an opaque record in ``UserState.model_state`` (layout in
:mod:`decay.lapse_state`). ``step`` takes each user's events of a batch in order and steps them
in rounds (round r: every user's r-th event, one onnxruntime call). An event older than the
user's last one is counted, not stepped (``decay.lapse_state.advance``); its scores are those
of the user's current curve, as a window scorer would give for it. A user whose stored state
is not this model's starts again from their window (``resume``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decay import btyd, lifetime
from decay.card import ModelCard
from decay.events import Event
from decay.features import FeatureSpec, category_bucket, event_features
from decay.lapse_state import (
    COUNTERS,
    STATIC,
    pack_states,
    state_dtype,
    static_features,
    unpack_states,
)
from decay.scoring import HOUR_S, Scores
from decay.window import Window
from stream_app.lapse_rounds import batch_rounds, count_all, recur_rounds
from stream_app.onnx_scorer import ModelMismatchError, check_features, open_model
from stream_app.window_steps import window_events

INPUTS: Final = ("event", "h", "c", "static")
OUTPUTS: Final = ("h_next", "c_next", "params")
PARAMS: Final = ["k0", "b0", "p", "kappa"]
DROPOUTS: Final = ("fixed", "beta", "exp")
# Raw events a user's record keeps: the model reads none (its state carries the history);
# the alerts' reasons read the last 10 (the category rule, the recent mix, the typical gap).
WINDOW_EVENTS: Final = 10
# How close to the crossing the half-life and deadline are found, in seconds of silence:
# deadlines are stored as whole ms, half-lives as float32 (7 digits), so 1 us is plenty. The
# root is each head's own (decay.btyd.decreasing_root), so a deadline does not depend on the
# batch; against another search (the 80 bisections of earlier versions) a deadline whose
# crossing lies within 1 us below a whole ms comes out 1 ms later, as after a model rollout.
ROOT_TOL_S: Final = 1e-6
_TS, _TYPE, _CATEGORY = attrgetter("ts_ms"), attrgetter("type"), attrgetter("category")
# the state layout this worker knows: these keys, with these values where fixed
LAYOUT_KEYS: Final = frozenset(
    {"h", "c", "counters", "static", "unit_h", "dropout", "params", "heads"}
)


class UnknownStateLayoutError(ModelMismatchError):
    """The model's card describes a per-user state this worker does not know."""


def is_step_model(card: ModelCard) -> bool:
    return card.arch.endswith("-btyd-step") or bool(card.state_layout)


def check_step_card(card: ModelCard, spec: FeatureSpec) -> None:
    """Raise unless the card's features are ``spec``'s and its state layout is the one this
    worker reads and writes (``decay.lapse_state``)."""
    check_features(card, spec, (*INPUTS, *OUTPUTS))
    layout = card.state_layout
    wrong = []
    if set(layout) != LAYOUT_KEYS:
        extra, lacking = sorted(set(layout) - LAYOUT_KEYS), sorted(LAYOUT_KEYS - set(layout))
        wrong.append(f"keys: unknown {extra}, missing {lacking}")
    else:
        units = layout["h"]
        if not (isinstance(units, int) and units > 0 and layout["c"] == units):
            wrong.append(f"h {layout['h']!r} and c {layout['c']!r} must be one unit count")
        if list(layout["counters"]) != list(COUNTERS):
            wrong.append(f"counters {layout['counters']} != {list(COUNTERS)}")
        if list(layout["static"]) != list(STATIC):
            wrong.append(f"static {layout['static']} != {list(STATIC)}")
        if list(layout["params"]) != PARAMS:
            wrong.append(f"params {layout['params']} != {PARAMS}")
        if layout["dropout"] not in DROPOUTS:
            wrong.append(f"dropout {layout['dropout']!r} not one of {list(DROPOUTS)}")
        unit_h = layout["unit_h"]
        if not (isinstance(unit_h, int | float) and unit_h > 0):
            wrong.append(f"unit_h {unit_h!r} is not a positive number of hours")
    if wrong:
        raise UnknownStateLayoutError(
            f"model {card.model_version!r} has a state layout this worker does not know: "
            + "; ".join(wrong)
        )


@dataclass(frozen=True)
class ServingPoint:
    """The interest horizon and dormancy threshold a lapse model is served with: interest is
    P(an event within ``horizon_h``), dormant below ``threshold`` (None: the worker's
    threshold). Taken from the settings, else from the card's ``serving`` entry (chosen on
    the training period, ``decay_cli.serving_point``), else the card's training horizon."""

    horizon_h: float
    threshold: float | None
    source: str

    @classmethod
    def of(
        cls, card: ModelCard, horizon_h: float | None = None, threshold: float | None = None
    ) -> ServingPoint:
        rec = card.serving
        h = horizon_h or rec.get("horizon_h") or card.horizon_h
        th = threshold if threshold is not None else rec.get("threshold")
        if not (isinstance(h, int | float) and math.isfinite(h) and h > 0):
            raise ModelMismatchError(f"model {card.model_version!r}: serving horizon {h!r}")
        if th is not None and not (isinstance(th, int | float) and 0.0 < th < 1.0):
            raise ModelMismatchError(f"model {card.model_version!r}: serving threshold {th!r}")
        given = bool(horizon_h) or threshold is not None
        source = "settings" if given else "the card's serving point" if rec else "the card"
        return cls(float(h), None if th is None else float(th), source)


class LapseScorer:
    """Scores events incrementally with an exported lapse step model, at a serving point
    (``horizon_h``, ``threshold``: see :class:`ServingPoint`)."""

    def __init__(
        self,
        path: str | Path,
        spec: FeatureSpec | None = None,
        horizon_h: float | None = None,
        threshold: float | None = None,
    ) -> None:
        raw = Path(path).read_bytes()
        self._session, card = open_model(raw, path)
        ours = spec or FeatureSpec()
        check_step_card(card, ours)
        self.card = card
        self.serving = ServingPoint.of(card, horizon_h, threshold)
        self.spec = FeatureSpec(
            version=ours.version, cat_buckets=ours.cat_buckets, horizon_h=self.serving.horizon_h
        )
        layout = card.state_layout
        self.units = int(layout["h"])
        widths = {i.name: i.shape[-1] for i in self._session.get_inputs()}
        want = {"event": ours.n_features, "h": self.units, "c": self.units, "static": len(STATIC)}
        if any(widths.get(name) != width for name, width in want.items()):
            raise UnknownStateLayoutError(
                f"model {card.model_version!r}: its graph's inputs are {widths} wide, its card's "
                f"state layout and this worker's features say {want}"
            )
        self.unit_h = float(layout["unit_h"])
        self.dropout = str(layout["dropout"])
        self.horizon = self.serving.horizon_h / self.unit_h  # in the model's unit
        self.tag = zlib.crc32(raw)  # a state written by another model file is not ours
        self._size = state_dtype(self.units).itemsize
        self._outputs = list(OUTPUTS)  # as onnxruntime's run takes them
        self._start = pack_states(unpack_states([b""], self.tag, self.units))[0]

    @property
    def version(self) -> str:
        return self.card.model_version

    @property
    def window_events(self) -> int:
        return WINDOW_EVENTS

    @property
    def threshold(self) -> float | None:
        """The dormancy threshold this model is served with (None: the worker's)."""
        return self.serving.threshold

    def start(self) -> bytes:
        """A new user's state: no event counted, ``h = c = 0``."""
        return self._start

    def resume(self, states: Sequence[bytes], windows: Sequence[Window | None]) -> list[bytes]:
        out, redo = list(states), []
        for i, s in enumerate(states):
            if len(s) == self._size and int.from_bytes(s[:4], "little") == self.tag:
                continue
            w = windows[i]
            if w is None or w.ts.shape[0] == 0:  # nothing to warm up from: what _warm gives
                out[i] = self._start
            else:
                redo.append(i)
        for i, state in zip(redo, self._warm([windows[i] for i in redo]), strict=True):
            out[i] = state
        return out

    def _warm(self, windows: Sequence[Window | None]) -> list[bytes]:
        """States stepped through each window's events from a new user's state; the events
        before the window are only counted, and an amount is the price (the window keeps no
        quantity). Exact for a user whose whole history is in the window, at quantity 1."""
        if not windows:
            return []
        made: dict[tuple[Any, ...], Event] = {}
        events = [[] if w is None else window_events(w, made) for w in windows]
        st = unpack_states(self._stepped(events), self.tag, self.units)
        seen = np.array([w is not None and w.ts.shape[0] > 0 for w in windows])
        before = [w.n_total - w.ts.shape[0] if w is not None else 0 for w in windows]
        st["n_events"] += np.where(seen, before, 0).astype(np.uint32)
        firsts = [w.first_ts_ms if w is not None else 0 for w in windows]
        st["first_ts_ms"] = np.where(seen, firsts, st["first_ts_ms"])
        return pack_states(st)

    def _stepped(self, events: Sequence[Sequence[Event]]) -> list[bytes]:
        """The state after each list of events, stepped from a new user's state."""
        start = self.start()
        after = self.step([start] * len(events), events)
        return [a[-1] if a else start for a in after]

    def step(self, states: Sequence[bytes], events: Sequence[Sequence[Event]]) -> list[list[bytes]]:
        """Per user: the stored state and the user's events of the batch, in order; returns
        the state after each of them. The counters and feature rows of all the events are
        computed first (they do not depend on the model), then the LSTM steps in rounds, round
        r holding every user's r-th event: one onnxruntime call per round."""
        m = np.fromiter(map(len, events), np.int64, len(events))
        flat = list(chain.from_iterable(events))
        if not flat:
            return [[] for _ in events]
        st = unpack_states(list(states), self.tag, self.units)
        ts = np.fromiter(map(_TS, flat), np.int64, len(flat))
        prices = np.array([e.price if e.price is not None else 0.0 for e in flat])
        qty = np.array([e.quantity if e.quantity is not None else 1 for e in flat], np.float64)
        amount = np.nan_to_num(prices * qty, nan=0.0)  # as training.landmarks.event_amounts
        starts = np.cumsum(m) - m
        rounds = batch_rounds(m, starts)
        counted, prev, in_order = count_all(st, m, starts, rounds, ts, amount)
        count = counted["n_events"].astype(np.int64)
        feats = self._features(flat, in_order, ts, prev, count, counted["first_ts_ms"], prices)
        static = static_features(
            counted["n_events"],
            counted["first_ts_ms"],
            counted["last_ts_ms"],
            counted["amount_sum"],
            self.unit_h,
        )
        after = np.empty(len(flat), dtype=st.dtype)  # the state after each event
        after["tag"] = self.tag
        for name in COUNTERS:
            after[name] = counted[name]
        after["h"], after["c"], after["params"] = recur_rounds(
            self._run, st, m, rounds, in_order, feats, static
        )
        blobs = pack_states(after)
        return [blobs[s : s + k] for s, k in zip(starts.tolist(), m.tolist(), strict=True)]

    def _run(self, feeds: dict[str, npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
        out: list[npt.NDArray[np.float32]] = self._session.run(self._outputs, feeds)
        return out

    def _features(
        self,
        flat: list[Event],
        in_order: npt.NDArray[np.bool_],
        *columns: npt.NDArray[Any],
    ) -> npt.NDArray[np.float32]:
        """The feature rows of the events that step the LSTM (the in-order ones); zeros for
        the others. ``columns``: time, previous time, count, first time and price per event."""
        ts, prev, count, first, prices = columns
        rows = np.nonzero(in_order)[0]
        feats = np.zeros((len(flat), self.spec.n_features), dtype=np.float32)
        stepped = flat if len(rows) == len(flat) else [flat[i] for i in rows.tolist()]
        names = list(map(_CATEGORY, stepped))
        # one crc32 per name, not per event
        bucket = {name: category_bucket(name, self.spec.cat_buckets) for name in set(names)}
        feats[rows] = event_features(
            ts[rows],
            prev[rows],
            np.fromiter(map(_TYPE, stepped), np.int64, len(stepped)),
            np.fromiter(map(bucket.__getitem__, names), np.int64, len(names)),
            prices[rows].astype(np.float32),
            count[rows],
            first[rows],
            self.spec,
        )
        return feats

    def scores(self, states: Sequence[bytes], threshold: float) -> Scores:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        return self._scores(unpack_states(list(states), self.tag, self.units), threshold)

    def heads(self, st: Any) -> tuple[Any, Any, Any]:
        """(p or mu, k, beta) of each state's curve, float64, in the model's unit."""
        par = st["params"].astype(np.float64)
        k = par[:, 0] + np.maximum(st["n_events"].astype(np.float64) - 1.0, 0.0)
        span = (st["last_ts_ms"] - st["first_ts_ms"]).astype(np.float64)
        beta = par[:, 1] + span / (self.unit_h * HOUR_S * 1000.0)
        return par[:, 2], k, beta

    def _scores(self, st: Any, threshold: float) -> Scores:
        p, k, beta = self.heads(st)
        h = self.horizon
        # half-life and deadline in one root search: each element's bracket is its own
        p2, k2, b2 = (np.concatenate([v, v]) for v in (p, k, beta))
        curve: Callable[[Any], Any]
        if self.dropout == "exp":
            peak = lifetime.interest(k, beta, p, h, np.zeros_like(k))

            def curve(d: Any) -> Any:
                return lifetime.interest(k2, b2, p2, h, d)
        else:  # fixed or beta dropout: interest depends on the mean lapse chance p only
            peak = btyd.interest(p, k, beta, h, 0.0)
            curve = btyd.interest_curve(p2, k2, b2, h)
        levels = np.concatenate([peak / 2.0, np.full_like(peak, threshold)])
        to_s = self.unit_h * HOUR_S
        roots = btyd.decreasing_root(curve, levels, levels.shape, tol=ROOT_TOL_S / to_s, rtol=0.0)
        roots *= to_s
        return Scores(peak=peak, half_life_s=roots[: len(p)], deadline_s=roots[len(p) :])

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Interest of each window after the silences ``silent_s``, from the window's events
        stepped through the model from a new user's state (``_warm``). For pages, and for
        explanations (``decay.scoring.occlusion``): the window without each of its last
        events is re-run through the cell the same way, in one ``step`` (one onnxruntime run
        per event of the longest window). What that approximates: the effect of an event on
        this re-run from the 10 kept events (those before them counted, not stepped; amounts
        at quantity 1), not on the stored state, whose recurrent state holds the whole
        history; exact for a user whose whole history is in the window, at quantity 1."""
        silent = np.atleast_2d(np.asarray(silent_s, dtype=np.float64))
        silent = np.broadcast_to(silent, (len(windows), silent.shape[1]))
        if not windows:
            return np.zeros((0, silent.shape[1]))
        st = unpack_states(self._warm(windows), self.tag, self.units)
        p, k, beta = self.heads(st)
        d = silent / (self.unit_h * HOUR_S)
        if self.dropout == "exp":
            return lifetime.interest(k[:, None], beta[:, None], p[:, None], self.horizon, d)
        return btyd.interest(p[:, None], k[:, None], beta[:, None], self.horizon, d)

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
        """From the two stored parameters: an exponential through the peak and the half-life
        (exact at both; deadlines come from the closed form in ``step``)."""
        if not math.isfinite(half_life_s) or half_life_s <= 0:
            return peak if math.isinf(half_life_s) else 0.0
        return peak * 2.0 ** (-max(silent_s, 0.0) / half_life_s)
