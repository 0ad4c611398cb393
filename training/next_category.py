"""Next-category predictors over a user's session history (small Keras models, CPU, seconds).

Both read :func:`training.category_space.history_features` of their category rows and have
the same hidden layer; they differ in the category representation, in and out:

- ``embedding``: rows are the category space's unit vectors; the head outputs a query vector
  q in that space and a category's score is q · e(category). Any category with a name can be
  scored, also one that never occurred in training.
- ``hashed``: rows are one-hot buckets (``decay.features.category_bucket``); the head outputs
  one logit per bucket, and a category gets its bucket's logit (ties between names of one
  bucket broken by training popularity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.category_space import bucket_rows

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
HIDDEN = 64
KEY_DIMS = 32


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch: int = 256
    learning_rate: float = 3e-3
    seed: int = 0


def _fit(model: Any, x: F32, y: I64, cfg: TrainConfig) -> None:
    import tensorflow as tf

    model.compile(
        optimizer=tf.keras.optimizers.Adam(cfg.learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch, shuffle=True, verbose=0)


class EmbeddingHead:
    """A two-tower scorer: the history tower maps features to a query q, the category tower
    maps a category's row e to a key k(e) = e W and a bias e · w; score = q · k(e) + e · w.
    Both towers read only the row, so a category never seen in training gets a score."""

    def __init__(self, x: F32, y: I64, candidates: F32, cfg: TrainConfig) -> None:
        import tensorflow as tf

        tf.keras.utils.set_random_seed(cfg.seed)
        self._tf = tf
        dims = candidates.shape[1]
        inputs = tf.keras.Input((x.shape[1],))
        hidden = tf.keras.layers.Dense(HIDDEN, activation="relu")(inputs)
        # plus a linear path: "more of what this user already looks at" needs no hidden layer
        query = tf.keras.layers.Add()(
            [tf.keras.layers.Dense(KEY_DIMS)(hidden), tf.keras.layers.Dense(KEY_DIMS)(inputs)]
        )
        self._key = tf.keras.layers.Dense(KEY_DIMS, use_bias=False)
        self._bias = tf.keras.layers.Dense(1, use_bias=False)
        self._key.build((None, dims))
        self._bias.build((None, dims))
        table = tf.constant(candidates)  # training categories only: y indexes these rows
        key, bias = self._key, self._bias
        logits = tf.keras.layers.Lambda(
            lambda q: tf.matmul(q, key(table), transpose_b=True) + tf.transpose(bias(table))
        )(query)
        _fit(tf.keras.Model(inputs, logits), x, y, cfg)
        self._query = tf.keras.Model(inputs, query)

    def scores(self, x: F32, candidates: F32) -> F32:
        q = np.asarray(self._query(x, training=False), np.float32)
        keys = np.asarray(self._key(candidates), np.float32)
        bias = np.asarray(self._bias(candidates), np.float32)[:, 0]
        return q @ keys.T + bias


class HashedHead:
    """Predicts a bucket; a name's score is its bucket's logit, ties broken by popularity."""

    def __init__(self, x: F32, y_bucket: I64, buckets: int, cfg: TrainConfig) -> None:
        import tensorflow as tf

        tf.keras.utils.set_random_seed(cfg.seed)
        inputs = tf.keras.Input((x.shape[1],))
        hidden = tf.keras.layers.Dense(HIDDEN, activation="relu")(inputs)
        logits = tf.keras.layers.Dense(buckets)(hidden)
        self._model = tf.keras.Model(inputs, logits)
        _fit(self._model, x, y_bucket, cfg)
        self.buckets = buckets

    def scores(self, x: F32, names: Sequence[str], popularity: F32) -> F32:
        logits = np.asarray(self._model(x, training=False), np.float32)
        cols = bucket_rows(names, self.buckets).argmax(axis=1)
        tiebreak = 1e-6 * np.log1p(popularity) / max(float(np.log1p(popularity.max())), 1.0)
        return logits[:, cols] + tiebreak.astype(np.float32)


def top_k_accuracy(scores: F32, target: I64, k: int = 5) -> float:
    """Share of rows whose target column is among the row's k highest scores. Ties count
    against the target: it needs fewer than k other columns scoring at least as high."""
    if scores.shape[0] == 0:
        return float("nan")
    own = scores[np.arange(scores.shape[0]), target]
    at_least = (scores >= own[:, None]).sum(axis=1) - 1  # other columns not below the target
    return float(np.mean(at_least < k))
