"""The lapse model: an LSTM encoder of the history, heads for a buy-till-you-die process.

Per history (ALL the user's events up to the last one, right-padded as in ``decay.features``,
and the counters of :mod:`decay.lapse_state`), the encoder gives ``k0``, ``b0`` and ``p`` of
:mod:`decay.btyd`, and ``kappa``, the concentration of a Beta lapse chance (output ``params``
[B, 4]; ``kappa`` is read only with ``dropout="beta"``; with ``dropout="exp"`` the third
column is the lapse rate of :mod:`decay.lifetime`). The loss is the exact censored
log-likelihood of the landmark windows (``window_loglik`` of those modules, here in
TensorFlow, :mod:`training.lapse_loss`; ``tests/train`` checks the two agree), each row
weighted by a power of its window's length (``window_weight``). It is trained for a
fixed number of epochs (chosen on validation splits inside the calibration period, see
:mod:`training.validation`): no early stopping, no refit, nothing of a holdout is seen.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from decay import btyd, lifetime
from decay.features import EventTable, FeatureSpec, gather_windows, prepare_events
from training.landmarks import STATIC, Histories, Rows, event_amounts, landmark_rows, landmark_times
from training.lapse_loss import tf_exp_window_loglik, tf_window_loglik

log = logging.getLogger(__name__)
# starting values: BG/NBD's on CDNOW (r, alpha in weeks) and a lapse chance per event
K0_INIT, B0_INIT, P_INIT, KAPPA_INIT = 0.25, 4.0, 0.25, 3.0
MU_INIT = 0.05  # dropout="exp": lapse rate per time unit (Pareto/NBD's mean on CDNOW)
DROPOUTS = ("fixed", "beta", "exp")
P_MIN, P_MAX = 1e-4, 1.0 - 1e-4


@dataclass(frozen=True)
class LapseConfig:
    arch: str = "lstm"  # or "gru"
    units: int = 16
    epochs: int = 30
    batch_histories: int = 256
    learning_rate: float = 3e-3
    seed: int = 0
    unit_h: float = 168.0  # weeks
    landmark_every_h: float = 168.0
    min_window_h: float = 168.0
    max_window_h: float | None = None
    l2: float = 0.0
    # rows weighted by (window / mean window) ** window_weight: > 0 leans the loss toward the
    # long windows, whose horizons are nearest the question's (0: every row counts the same)
    window_weight: float = 0.0
    # and by ((1 + x) / mean) ** repeat_weight, x the history's repeat events: > 0 leans the
    # loss toward repeat buyers, whose predicted counts carry the correlation
    repeat_weight: float = 0.0
    # BG/NBD's posterior on the lapse chance: the head's (p, kappa) are the mean and
    # concentration of a Beta(a, b) prior per history, and the chance at the last event is
    # its posterior after the x lapse chances the user survived, Beta(a, b + x); ``params``
    # then carries that posterior's mean and concentration (a / (a + b + x), a + b + x)
    lapse_posterior: bool = False
    # "fixed": one lapse chance p per history (after each event, as BG/NBD); "beta":
    # p ~ Beta(p kappa, (1 - p) kappa); "exp": an exponential lifetime, rate p per time unit
    # (Pareto/NBD's dropout, decay.lifetime)
    dropout: str = "fixed"
    # round 7 experiment: the mean and spread of the log gaps between the history's events
    # as two more static inputs (the regularity Pareto/GGG reads)
    gap_stats: bool = False
    # round 7 experiment: > 0 ends training on the exponential moving average of the weights
    # (this momentum per step), one network as before
    ema: float = 0.0
    # round 7 experiment: one gamma prior of the purchase rate (k0, b0) for every history, as
    # BG/NBD's (r, alpha); the encoder gives the lapse chance only
    shared_rate: bool = False
    verbose: int = 0


@dataclass
class LapseModel:
    model: Any  # keras.Model
    spec: FeatureSpec
    config: LapseConfig
    summary: dict[str, Any] = field(default_factory=dict)


def build(spec: FeatureSpec, cfg: LapseConfig) -> Any:
    """A fresh encoder; call ``keras.utils.set_random_seed`` first."""
    import keras
    from keras import layers, ops

    x = keras.Input((None, spec.n_features), name="x")
    lengths = keras.Input((), dtype="int32", name="lengths")
    static = keras.Input((n_static(cfg),), name="static")
    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    if cfg.arch == "lstm":
        seq = layers.LSTM(cfg.units, return_sequences=True, name="rnn")(x)
    elif cfg.arch == "gru":
        seq = layers.GRU(cfg.units, return_sequences=True, reset_after=True, name="rnn")(x)
    else:
        raise ValueError(f"unknown arch {cfg.arch!r}")
    idx = ops.reshape(ops.maximum(lengths - 1, 0), (-1, 1, 1))
    last = ops.squeeze(ops.take_along_axis(seq, idx, axis=1), axis=1)
    last = last * ops.expand_dims(ops.cast(lengths > 0, "float32"), -1)
    trunk = layers.Concatenate()([last, static])
    trunk = layers.Dense(cfg.units, activation="tanh", kernel_regularizer=reg, name="trunk")(trunk)
    init = (
        math.log(K0_INIT),
        math.log(B0_INIT),
        math.log(P_INIT / (1 - P_INIT))
        if cfg.dropout != "exp"
        else math.log(MU_INIT / (1 - MU_INIT)),
        math.log(KAPPA_INIT),
    )
    raw = layers.Dense(
        4,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer=keras.initializers.Constant(init),
        kernel_regularizer=reg,
        name="raw",
    )(trunk)
    if cfg.shared_rate:
        one = layers.Lambda(lambda t: ops.ones_like(t[:, :1]), name="one")(trunk)
        rate = layers.Dense(
            2,
            use_bias=False,
            kernel_initializer=keras.initializers.Constant(init[:2]),
            name="rate_prior",
        )(one)
        raw = layers.Concatenate()([rate, raw[:, 2:]])
    head = _params_posterior if cfg.lapse_posterior else _params
    params = layers.Activation(head, name="params")(layers.Concatenate()([raw, static]))
    return keras.Model(
        inputs={"x": x, "lengths": lengths, "static": static}, outputs={"params": params}
    )


def n_static(cfg: LapseConfig) -> int:
    return len(STATIC) + (2 if cfg.gap_stats else 0)


def _params(raw_static: Any) -> Any:
    """[raw (4), static] -> (k0, b0, p, kappa): exp, exp, sigmoid, exp, clipped to a sane
    range (the static columns are not read)."""
    from keras import ops

    raw = raw_static[:, :4]
    k0 = ops.exp(ops.clip(raw[:, 0:1], -7.0, 5.0))
    b0 = ops.exp(ops.clip(raw[:, 1:2], -7.0, 9.0))
    p = ops.clip(ops.sigmoid(raw[:, 2:3]), P_MIN, P_MAX)
    kappa = ops.exp(ops.clip(raw[:, 3:4], -5.0, 9.0))
    return ops.concatenate([k0, b0, p, kappa], axis=1)


def _params_posterior(raw_static: Any) -> Any:
    """As :func:`_params`, then the lapse chance's Beta prior updated by the x survived
    chances (``static[:, 0]`` is ``log1p(x)``): mean ``p kappa / (kappa + x)``, concentration
    ``kappa + x``."""
    from keras import ops

    prior = _params(raw_static)
    x = ops.expm1(raw_static[:, 4:5])
    kappa = prior[:, 3:4] + x
    p = ops.clip(prior[:, 2:3] * prior[:, 3:4] / kappa, P_MIN, P_MAX)
    return ops.concatenate([prior[:, 0:2], p, kappa], axis=1)


def whole_history(spec: FeatureSpec, events: pd.DataFrame) -> FeatureSpec:
    """``spec`` with windows as long as the longest history: the encoder runs over every
    event of a user, as the incremental step does (no window cuts the oldest events off)."""
    longest = int(events.groupby("user_id").size().max()) if len(events) else 1
    return dataclasses.replace(spec, seq_len=max(longest, 1))


@dataclass(frozen=True)
class Batch:
    x: np.ndarray
    lengths: np.ndarray
    static: np.ndarray
    repeats: np.ndarray
    recency: np.ndarray
    row_hist: np.ndarray  # index into this batch's histories
    silence: np.ndarray
    n: np.ndarray
    tau: np.ndarray
    window: np.ndarray
    weight: np.ndarray


def row_weights(
    rows: Rows, power: float, repeats: np.ndarray | None = None, repeat_power: float = 0.0
) -> np.ndarray:
    """Per row ``(w / mean w) ** power`` times ``((1 + x) / mean) ** repeat_power`` (``x``
    the row's history's repeat events, ``repeats`` per history), scaled to sum to the number
    of rows."""
    if len(rows) == 0:
        return np.ones(0)
    raw = np.power(rows.window / rows.window.mean(), power) if power else np.ones(len(rows))
    if repeat_power and repeats is not None:
        x1 = 1.0 + repeats[rows.hist]
        raw = raw * np.power(x1 / x1.mean(), repeat_power)
    return raw * (len(rows) / raw.sum())


def make_batches(
    table: EventTable, hists: Histories, rows: Rows, size: int, weights: np.ndarray
) -> list[Batch]:
    """Histories of similar length together (little padding), each with all its rows."""
    x_all, len_all = gather_windows(table, hists.user, hists.last)
    order = np.argsort(len_all, kind="stable")
    by_hist = np.argsort(rows.hist, kind="stable")
    bounds = np.searchsorted(rows.hist[by_hist], np.arange(len(hists.last) + 1))
    out = []
    for i in range(0, order.shape[0], size):
        h = order[i : i + size]
        row_idx = np.concatenate([by_hist[bounds[j] : bounds[j + 1]] for j in h])
        local = np.repeat(np.arange(h.shape[0]), bounds[h + 1] - bounds[h])
        longest = max(int(len_all[h].max(initial=0)), 1)
        r = rows.take(row_idx)
        f32 = np.float32
        out.append(
            Batch(
                x=x_all[h, :longest],
                lengths=len_all[h],
                static=hists.static[h],
                repeats=hists.repeats[h].astype(f32),
                recency=hists.recency[h].astype(f32),
                row_hist=local.astype(np.int32),
                silence=r.silence.astype(f32),
                n=r.n.astype(f32),
                tau=r.tau.astype(f32),
                window=r.window.astype(f32),
                weight=weights[row_idx].astype(f32),
            )
        )
    return out


def fit(
    events: pd.DataFrame,
    end_ms: int,
    spec: FeatureSpec,
    cfg: LapseConfig,
) -> LapseModel:
    """Train on the events up to ``end_ms`` (windows censored there)."""
    import keras
    import tensorflow as tf

    t0 = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    events = events[events["ts"] <= end_ms]
    table = prepare_events(events, whole_history(spec, events))
    amounts = event_amounts(events)
    start = int(table.ts.min())
    lms = landmark_times(start, end_ms, cfg.landmark_every_h, cfg.min_window_h)
    hists, rows = landmark_rows(
        table, amounts, lms, end_ms, cfg.unit_h, cfg.max_window_h, gap_stats=cfg.gap_stats
    )
    if len(rows) == 0:
        raise ValueError("no landmark rows: too little data before the end of training")
    batches = make_batches(
        table,
        hists,
        rows,
        cfg.batch_histories,
        row_weights(rows, cfg.window_weight, hists.repeats, cfg.repeat_weight),
    )
    model = build(spec, cfg)
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema > 0 else {}
    opt = keras.optimizers.Adam(cfg.learning_rate, clipnorm=1.0, **ema)
    total_rows = float(len(rows))
    if cfg.dropout not in DROPOUTS:
        raise ValueError(f"dropout must be one of {DROPOUTS}, not {cfg.dropout!r}")
    if cfg.lapse_posterior and cfg.dropout == "exp":
        raise ValueError("lapse_posterior needs a lapse chance per event (dropout fixed or beta)")
    beta_dropout, exp_dropout = cfg.dropout == "beta", cfg.dropout == "exp"

    sig = (
        tf.TensorSpec((None, None, spec.n_features), tf.float32),
        tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None, n_static(cfg)), tf.float32),
        *(tf.TensorSpec((None,), tf.float32) for _ in range(2)),
        tf.TensorSpec((None,), tf.int32),
        *(tf.TensorSpec((None,), tf.float32) for _ in range(5)),
    )

    @tf.function(input_signature=sig)
    def step(
        x: Any, lengths: Any, static: Any, rep: Any, rec: Any, rh: Any,
        d: Any, n: Any, tau: Any, w: Any, wt: Any,
    ) -> Any:  # fmt: skip
        with tf.GradientTape() as tape:
            inputs = {"x": x, "lengths": lengths, "static": static}
            params = tf.gather(model(inputs, training=True)["params"], rh)
            rep_r, rec_r = tf.gather(rep, rh), tf.gather(rec, rh)
            if exp_dropout:
                ll = tf_exp_window_loglik(params, rep_r, rec_r, d, n, tau, w)
            else:
                ll = tf_window_loglik(params, rep_r, rec_r, d, n, tau, w, beta_dropout)
            loss = -tf.reduce_sum(wt * ll) / total_rows
            if model.losses:
                loss_total = loss + tf.add_n(model.losses) / float(len(batches))
            else:
                loss_total = loss
        grads = tape.gradient(loss_total, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    history = []
    for epoch in range(cfg.epochs):
        nll = 0.0
        for bi in rng.permutation(len(batches)):
            b = batches[bi]
            nll += float(
                step(
                    *(b.x, b.lengths, b.static, b.repeats, b.recency, b.row_hist),
                    *(b.silence, b.n, b.tau, b.window, b.weight),
                )
            )
        history.append(nll)
        if cfg.verbose:
            log.info("epoch %d: nll per row %.5f", epoch + 1, nll)
    if cfg.ema > 0:
        opt.finalize_variable_values(model.trainable_variables)
    wall = time.perf_counter() - t0
    summary = {
        "landmarks": len(lms),
        "rows": len(rows),
        "histories": len(hists.last),
        "train_nll_per_row": [round(v, 5) for v in history],
        "train_seconds": round(wall, 1),
        "config": asdict(cfg),
        "trained_to": pd.Timestamp(end_ms, unit="ms", tz="UTC").isoformat(),
    }
    log.info("lapse model: %d rows, %.1f s", len(rows), wall)
    return LapseModel(model=model, spec=spec, config=cfg, summary=summary)


def heads_at(result: LapseModel, events: pd.DataFrame, users: list[str], cut_ms: int) -> Any:
    """Per user in ``users`` (each with an event at or before ``cut_ms``): ``k``, ``beta``
    (posterior at the last event), ``p`` and the silence ``d`` at the cut, in model units."""
    cfg, spec = result.config, result.spec
    events = events[events["ts"] <= cut_ms]
    table = prepare_events(events, whole_history(spec, events))
    hists, rows = landmark_rows(
        table, event_amounts(events), [cut_ms], cut_ms, cfg.unit_h, gap_stats=cfg.gap_stats
    )
    x, lengths = gather_windows(table, hists.user, hists.last)
    out = result.model.predict(
        {"x": x, "lengths": lengths, "static": hists.static}, batch_size=2048, verbose=0
    )
    par = np.asarray(out["params"], dtype=np.float64)[rows.hist]
    h_user = hists.user[rows.hist]
    pos = pd.Index(table.users[h_user].astype(str)).get_indexer(pd.Index(users))
    if np.any(pos < 0):
        raise ValueError("a user has no event at or before the cut")
    k = par[:, 0] + hists.repeats[rows.hist]
    beta = par[:, 1] + hists.recency[rows.hist]
    return {
        "k": k[pos],
        "beta": beta[pos],
        "p": par[pos, 2],
        "kappa": par[pos, 3],
        "silence": rows.silence[pos],
    }


def predict(
    result: LapseModel, events: pd.DataFrame, users: list[str], cut_ms: int, horizon_h: float
) -> dict[str, np.ndarray]:
    """P(any event in ``(cut, cut + H]``), the expected count there, and P(alive) at the cut."""
    h = heads_at(result, events, users, cut_ms)
    horizon = horizon_h / result.config.unit_h
    if result.config.dropout == "exp":
        k, beta, mu, d = h["k"], h["beta"], h["p"], h["silence"]
        return {
            "p_any": lifetime.interest(k, beta, mu, horizon, d),
            "expected": lifetime.expected_count(k, beta, mu, horizon, d),
            "p_alive": lifetime.p_alive(k, beta, mu, d),
        }
    kappa = h["kappa"] if result.config.dropout == "beta" else None
    return {
        "p_any": btyd.interest(h["p"], h["k"], h["beta"], horizon, h["silence"]),
        "expected": btyd.expected_count(h["p"], h["k"], h["beta"], horizon, h["silence"], kappa),
        "p_alive": btyd.p_alive(h["p"], h["k"], h["beta"], h["silence"]),
    }


__all__ = ["LapseConfig", "LapseModel", "build", "fit", "predict", "whole_history"]
