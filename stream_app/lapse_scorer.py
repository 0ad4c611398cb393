"""The lapse (neural BTYD) step model behind the ``StepScorer`` protocol: O(1) per event.

The model (``training.lapse_step``) takes one event's feature row and the user's stored
``(h, c)`` and counters, and returns the new ``(h, c)`` and ``params = (k0, b0, p, kappa)``.
From them, with ``k = k0 + n_events - 1`` and ``beta = b0 + t_x`` in the model's time unit,
:mod:`decay.btyd` (or :mod:`decay.lifetime` for dropout ``exp``) gives the closed-form curve
``I(d) = 1 - S(d + H) / S(d)``: its value right after the event (peak), its half-life, and the
silence at which it falls below the threshold (the dormancy deadline).

Each user's state is an opaque record in ``UserState.model_state`` (layout in
:mod:`decay.lapse_state`). A batch of (state, event) pairs is one onnxruntime call. An event
older than the user's last one is counted, not stepped (``decay.lapse_state.advance``); its
scores are those of the user's current curve, as a window scorer would give for it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from decay import btyd, lifetime
from decay.card import CardError, ModelCard, card_of_session
from decay.events import Event, EventType
from decay.features import FeatureSpec, category_bucket, event_features
from decay.lapse_state import (
    COUNTERS,
    STATIC,
    advance,
    pack_states,
    static_features,
    unpack_states,
)
from decay.scoring import HOUR_S, Scores
from decay.window import NO_CATEGORY, Window
from stream_app.onnx_scorer import ModelMismatchError

INPUTS: Final = ("event", "h", "c", "static")
OUTPUTS: Final = ("h_next", "c_next", "params")
PARAMS: Final = ["k0", "b0", "p", "kappa"]
DROPOUTS: Final = ("fixed", "beta", "exp")
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
    problems = []
    if card.feature_spec_version != spec.version:
        problems.append(f"feature spec {card.feature_spec_version!r} != {spec.version!r}")
    if card.cat_buckets != spec.cat_buckets:
        problems.append(f"category buckets {card.cat_buckets} != {spec.cat_buckets}")
    if tuple(card.feature_names) != spec.feature_names:
        problems.append("feature names differ")
    missing = [n for n in (*INPUTS, *OUTPUTS) if n not in (*card.input_names, *card.output_names)]
    if missing:
        problems.append(f"graph lacks {missing}")
    if problems:
        raise ModelMismatchError(
            f"model {card.model_version!r} does not match this worker's features: "
            + "; ".join(problems)
        )
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


class LapseScorer:
    """Scores events incrementally with an exported lapse step model."""

    def __init__(self, path: str | Path, spec: FeatureSpec | None = None) -> None:
        raw = Path(path).read_bytes()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(raw, opts, providers=["CPUExecutionProvider"])
        try:
            card = card_of_session(self._session)
        except CardError as exc:
            raise ModelMismatchError(f"{path}: {exc}") from exc
        ours = spec or FeatureSpec()
        check_step_card(card, ours)
        self.card = card
        self.spec = FeatureSpec(
            version=ours.version, cat_buckets=ours.cat_buckets, horizon_h=float(card.horizon_h)
        )
        layout = card.state_layout
        self.units = int(layout["h"])
        self.unit_h = float(layout["unit_h"])
        self.dropout = str(layout["dropout"])
        self.horizon = float(card.horizon_h) / self.unit_h  # in the model's unit
        self.tag = zlib.crc32(raw)  # a state written by another model file is not ours

    @property
    def version(self) -> str:
        return self.card.model_version

    def start(self) -> bytes:
        return pack_states(unpack_states([b""], self.tag, self.units))[0]

    def step(self, states: Sequence[bytes], events: Sequence[Event]) -> list[bytes]:
        return pack_states(self._advance(states, events)) if events else []

    def scores(self, states: Sequence[bytes], threshold: float) -> Scores:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        return self._scores(unpack_states(list(states), self.tag, self.units), threshold)

    def _advance(self, states: Sequence[bytes], events: Sequence[Event]) -> Any:
        """The states after one event each, as a record array (one model call)."""
        st = unpack_states(list(states), self.tag, self.units)
        ts = np.array([e.ts_ms for e in events], dtype=np.int64)
        prices = np.array([e.price if e.price is not None else 0.0 for e in events])
        qty = np.array([e.quantity if e.quantity is not None else 1 for e in events], np.float64)
        amount = np.nan_to_num(prices * qty, nan=0.0)  # as training.landmarks.event_amounts
        n0 = st["n_events"].astype(np.int64)
        # the feature row reads the counters before the event (decay.features.event_features)
        prev = np.where(n0 > 0, st["last_ts_ms"], ts)
        first = np.where(n0 > 0, np.minimum(st["first_ts_ms"], ts), ts)
        in_order = advance(st, ts, amount)
        rows = np.nonzero(in_order)[0]
        if rows.shape[0]:
            stepped = [events[i] for i in rows.tolist()]
            buckets = [category_bucket(e.category, self.spec.cat_buckets) for e in stepped]
            feats = event_features(
                ts[rows],
                prev[rows],
                np.array([int(e.type) for e in stepped], dtype=np.int64),
                np.array(buckets, dtype=np.int64),
                prices[rows].astype(np.float32),
                n0[rows] + 1,
                first[rows],
                self.spec,
            )
            h, c, params = self._run(feats, st[rows])
            st["h"][rows], st["c"][rows], st["params"][rows] = h, c, params
        return st

    def _run(self, feats: npt.NDArray[np.float32], st: Any) -> list[Any]:
        static = static_features(
            st["n_events"], st["first_ts_ms"], st["last_ts_ms"], st["amount_sum"], self.unit_h
        )
        feeds = {"event": feats, "h": st["h"], "c": st["c"], "static": static}
        out: list[Any] = self._session.run(list(OUTPUTS), feeds)
        return out

    def heads(self, st: Any) -> tuple[Any, Any, Any]:
        """(p or mu, k, beta) of each state's curve, float64, in the model's unit."""
        par = st["params"].astype(np.float64)
        k = par[:, 0] + np.maximum(st["n_events"].astype(np.float64) - 1.0, 0.0)
        span = (st["last_ts_ms"] - st["first_ts_ms"]).astype(np.float64)
        beta = par[:, 1] + span / (self.unit_h * HOUR_S * 1000.0)
        return par[:, 2], k, beta

    def _scores(self, st: Any, threshold: float) -> Scores:
        p, k, beta = self.heads(st)
        to_s = self.unit_h * HOUR_S
        if self.dropout == "exp":
            peak = lifetime.interest(k, beta, p, self.horizon, np.zeros_like(k))
            half = lifetime.half_life(k, beta, p, self.horizon)
            dead = lifetime.deadline(k, beta, p, self.horizon, threshold)
        else:  # fixed or beta dropout: interest depends on the mean lapse chance p only
            peak = btyd.interest(p, k, beta, self.horizon, 0.0)
            half = btyd.half_life(p, k, beta, self.horizon)
            dead = btyd.deadline(p, k, beta, self.horizon, threshold)
        return Scores(peak=peak, half_life_s=half * to_s, deadline_s=dead * to_s)

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Interest of each window after the silences ``silent_s``, from the window's events
        stepped through the model from a new user's state (the events before the window are
        only counted: exact for a user whose whole history is in the window). For pages."""
        silent = np.atleast_2d(np.asarray(silent_s, dtype=np.float64))
        silent = np.broadcast_to(silent, (len(windows), silent.shape[1]))
        if not windows:
            return np.zeros((0, silent.shape[1]))
        states = [self.start()] * len(windows)
        for r in range(max(w.ts.shape[0] for w in windows)):  # round r: each window's r-th
            live = [i for i, w in enumerate(windows) if w.ts.shape[0] > r]
            new = pack_states(
                self._advance(
                    [states[i] for i in live], [_window_event(windows[i], r) for i in live]
                )
            )
            for i, one in zip(live, new, strict=True):
                states[i] = one
        st = unpack_states(states, self.tag, self.units)
        # the events before the window: counted, as the stream's counters would hold them
        st["n_events"] += np.array([w.n_total - w.ts.shape[0] for w in windows], np.uint32)
        st["first_ts_ms"] = [w.first_ts_ms for w in windows]
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


def _window_event(w: Window, r: int) -> Event:
    cat = int(w.cats[r])
    return Event(
        event_id="",
        user_id="",
        ts_ms=int(w.ts[r]),
        type=EventType(int(w.types[r])),
        category=None if cat == NO_CATEGORY else w.categories[cat],
        price=float(w.prices[r]),
    )
