"""The Keras model: a recurrent encoder over the last N events and three heads.

Inputs (right-padded, see ``decay.features``): ``x`` [B, T, F], ``lengths`` [B] int32 and
``elapsed_h`` [B, 1] (hours between the last event and the moment of the question; 0 in the
stream). The RNN runs unmasked over the padded sequence and its output is read at step
``length - 1`` (zeros for an empty window): with right padding that is exactly what masking
gives, and it exports to a plain ONNX ``LSTM``/``GRU`` op fed ``sequence_lens``.

Heads (all raw, the maths lives in ``decay.survival``):
- ``log_hazard`` [B, M]: log of the piecewise-constant hazard (per hour) over the bins, trained
  with the censored piecewise-exponential likelihood, left-truncated at ``elapsed_h``. It
  depends on the history only, never on ``elapsed_h``, so conditioning on silence is exact.
- ``category_logits`` [B, K] (spec fs1): the next event's category bucket (cross-entropy,
  observed only); or ``category_query`` [B, k] (spec fs2): a query vector q in the category
  space, a category's score being q · e(category) (``decay.category_space``), trained with
  the cross-entropy over the training categories' rows, so any named category can be scored
  (the two-tower head of ``training.next_category.EmbeddingHead``, whose key map and bias are
  linear in e and so folded into q).
- ``log_count`` [B, 1]: log of the expected number of events within the horizon after the
  question time (Poisson likelihood, scaled by the observed share of the horizon).
"""

from __future__ import annotations

from typing import Any, Literal

import keras
import numpy as np
from keras import layers, ops

from decay.features import FeatureSpec

Arch = Literal["lstm", "gru"]
OUTPUTS = ("log_hazard", "category_logits", "log_count")  # fs1; fs2: category_query
INPUTS = ("x", "lengths", "elapsed_h")
LOG_HAZARD_MIN, LOG_HAZARD_MAX = -16.0, 4.0


def category_head(spec: FeatureSpec) -> str:
    """The name of the category head's output under ``spec``."""
    return "category_query" if spec.uses_space else "category_logits"


def output_names(spec: FeatureSpec) -> tuple[str, str, str]:
    return ("log_hazard", category_head(spec), "log_count")


def build_model(
    spec: FeatureSpec, arch: Arch = "lstm", units: int = 32, base_log_rate: float = -4.0
) -> keras.Model:
    """A fresh model; call ``keras.utils.set_random_seed`` first for reproducible weights."""
    x = keras.Input((None, spec.n_features), name="x")
    lengths = keras.Input((), dtype="int32", name="lengths")
    elapsed = keras.Input((1,), name="elapsed_h")
    if arch == "lstm":
        seq = layers.LSTM(units, return_sequences=True, name="rnn")(x)
    elif arch == "gru":
        seq = layers.GRU(units, return_sequences=True, reset_after=True, name="rnn")(x)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    idx = ops.reshape(ops.maximum(lengths - 1, 0), (-1, 1, 1))
    last = ops.squeeze(ops.take_along_axis(seq, idx, axis=1), axis=1)
    last = last * ops.expand_dims(ops.cast(lengths > 0, "float32"), -1)
    trunk = layers.Dense(units, activation="relu", name="trunk")(last)
    raw = layers.Dense(
        spec.n_bins,
        bias_initializer=keras.initializers.Constant(base_log_rate),
        name="hazard_dense",
    )(trunk)
    log_hazard = layers.Activation(
        lambda t: ops.clip(t, LOG_HAZARD_MIN, LOG_HAZARD_MAX), name="log_hazard"
    )(raw)
    head = category_head(spec)
    width = spec.category_dims if spec.uses_space else spec.cat_buckets
    category = layers.Dense(width, name=head)(trunk)
    # log(1 + x), not log1p: ONNX has no Log1p op
    ctx = layers.Concatenate()([trunk, ops.log(1.0 + ops.maximum(elapsed, 0.0))])
    hidden = layers.Dense(max(units // 2, 4), activation="relu", name="count_hidden")(ctx)
    log_count = layers.Dense(1, name="log_count")(hidden)
    return keras.Model(
        inputs={"x": x, "lengths": lengths, "elapsed_h": elapsed},
        outputs={
            "log_hazard": log_hazard,
            head: category,
            "log_count": log_count,
        },
        name=f"decay_{arch}",
    )


def hazard_loss(y_true: Any, y_pred: Any) -> Any:
    """Censored piecewise-exponential NLL. ``y_true`` [B, 2M]: hours at risk in each bin
    (from ``elapsed`` to the event or the censoring time), then the one-hot bin of the event
    (all zero when censored)."""
    m = ops.shape(y_pred)[-1]
    at_risk, event = y_true[:, :m], y_true[:, m:]
    return ops.sum(ops.exp(y_pred) * at_risk, axis=-1) - ops.sum(event * y_pred, axis=-1)


def category_loss(y_true: Any, y_pred: Any) -> Any:
    """Cross-entropy of the next event's bucket; label -1 (censored) contributes nothing."""
    label = ops.reshape(y_true, (-1,))
    seen = ops.cast(label >= 0, "float32")
    idx = ops.cast(ops.maximum(label, 0), "int32")
    picked = ops.take_along_axis(y_pred, ops.expand_dims(idx, -1), axis=-1)[:, 0]
    nll = ops.logsumexp(y_pred, axis=-1) - picked
    return nll * seen


def query_loss(candidates: np.ndarray) -> Any:
    """Cross-entropy of the next event's category among ``candidates`` [C, k] (the training
    categories' rows; label = row index, -1 censored or missing: nothing), logits q · e."""
    table = ops.convert_to_tensor(np.asarray(candidates, np.float32))

    def loss(y_true: Any, y_pred: Any) -> Any:
        return category_loss(y_true, ops.matmul(y_pred, ops.transpose(table)))

    return loss


def count_loss(y_true: Any, y_pred: Any) -> Any:
    """Poisson NLL of the count over the observed share ``e`` of the horizon:
    mean = exp(log_count) * e. ``y_true`` [B, 3] = (count, e, log(count!))."""
    count, share, log_fact = y_true[:, 0], y_true[:, 1], y_true[:, 2]
    seen = ops.cast(share > 0, "float32")
    log_mu = y_pred[:, 0] + ops.log(ops.maximum(share, 1e-6))
    return (ops.exp(log_mu) - count * log_mu + log_fact) * seen


def hazard_targets(
    edges_h: tuple[float, ...],
    elapsed_h: np.ndarray,
    duration_h: np.ndarray,
    observed: np.ndarray,
) -> np.ndarray:
    """Targets for :func:`hazard_loss`, [B, 2M] float32."""
    edges = np.asarray(edges_h, dtype=np.float64)
    widths = np.append(np.diff(edges), np.inf)

    def covered(t: np.ndarray) -> np.ndarray:
        return np.clip(t[:, None] - edges[None, :], 0.0, widths[None, :])

    d = np.maximum(duration_h, elapsed_h)
    at_risk = covered(d) - covered(elapsed_h)
    bin_of = np.searchsorted(edges, d, side="right") - 1
    event = np.zeros_like(at_risk)
    rows = np.nonzero(observed)[0]
    event[rows, bin_of[rows]] = 1.0
    return np.concatenate([at_risk, event], axis=1).astype(np.float32)


def compile_model(
    model: keras.Model, learning_rate: float = 3e-3, candidates: np.ndarray | None = None
) -> None:
    """``candidates``: the training categories' rows, for a category-space (fs2) model."""
    head = "category_logits" if candidates is None else "category_query"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
        loss={
            "log_hazard": hazard_loss,
            head: category_loss if candidates is None else query_loss(candidates),
            "log_count": count_loss,
        },
        loss_weights={"log_hazard": 1.0, head: 0.3, "log_count": 0.3},
    )


CUSTOM_OBJECTS = {
    "hazard_loss": hazard_loss,
    "category_loss": category_loss,
    "count_loss": count_loss,
}
