"""The lapse model's loss in TensorFlow: twins of the numpy likelihoods of
:func:`decay.btyd.window_loglik` and :func:`decay.lifetime.window_loglik` (``tests/train``
checks that they agree), per landmark row, with ``params`` [R, 4] = (k0, b0, p, kappa)."""

from __future__ import annotations

from typing import Any


def tf_window_loglik(
    params: Any, x: Any, tx: Any, d: Any, n: Any, tau: Any, w: Any, beta_dropout: bool
) -> Any:
    """TensorFlow twin of :func:`decay.btyd.window_loglik`; ``params`` per row [R, 4]."""
    import tensorflow as tf

    k = params[:, 0] + x
    beta = params[:, 1] + tx
    p = params[:, 2]

    def log_s(t: Any) -> Any:  # log S(t) = log(p + (1 - p) (beta / (beta + t))^k)
        return tf.reduce_logsumexp(
            tf.stack([tf.math.log(p), tf.math.log1p(-p) - k * tf.math.log1p(t / beta)]), axis=0
        )

    if beta_dropout:
        a = p * params[:, 3]
        b = (1.0 - p) * params[:, 3]

        def lbeta(u: Any, v: Any) -> Any:
            return tf.math.lgamma(u) + tf.math.lgamma(v) - tf.math.lgamma(u + v)

        log_e1 = lbeta(a, b + n + 1.0) - lbeta(a, b)
        log_e2 = lbeta(a + 1.0, b + n) - lbeta(a, b)
    else:
        log_e1 = (n + 1.0) * tf.math.log1p(-p)
        log_e2 = tf.math.log(p) + n * tf.math.log1p(-p)
    kn = k + n
    some = (
        tf.math.lgamma(kn)
        - tf.math.lgamma(k)
        + k * tf.math.log(beta)
        + tf.reduce_logsumexp(
            tf.stack(
                [log_e1 - kn * tf.math.log(beta + d + w), log_e2 - kn * tf.math.log(beta + d + tau)]
            ),
            axis=0,
        )
    )
    return tf.where(n > 0, some, log_s(d + w)) - log_s(d)


def tf_lapse_before_first(k: Any, beta: Any, mu: Any, t: Any) -> Any:
    """TensorFlow twin of :func:`decay.lifetime.lapse_before_first` (same nodes)."""
    import tensorflow as tf

    from decay.lifetime import _NODES, _WEIGHTS

    nodes = tf.constant(_NODES, k.dtype)
    weights = tf.constant(_WEIGHTS, k.dtype)
    t = tf.maximum(t, 0.0)
    r0 = 1e-6 * tf.minimum(tf.minimum(beta / tf.maximum(k, 1e-12), 1.0 / mu), tf.maximum(t, 1e-30))
    head = -tf.math.expm1(-k * tf.math.log1p(tf.minimum(r0, t) / beta))
    lo, hi = tf.math.log(r0), tf.math.log(tf.maximum(t, r0))
    half = ((hi - lo) / 2.0)[:, None]
    y = ((lo + hi) / 2.0)[:, None] + half * nodes[None, :]
    k2, b2, m2 = k[:, None], beta[:, None], mu[:, None]
    log_g = -m2 * tf.exp(y) + tf.math.log(k2 / b2) - (k2 + 1.0) * tf.math.log1p(tf.exp(y) / b2) + y
    return head + tf.reduce_sum(tf.exp(log_g) * weights[None, :] * half, axis=1)


def tf_exp_window_loglik(params: Any, x: Any, tx: Any, d: Any, n: Any, tau: Any, w: Any) -> Any:
    """TensorFlow twin of :func:`decay.lifetime.window_loglik`; the rate is ``params[:, 2]``."""
    import tensorflow as tf

    k = params[:, 0] + x
    beta = params[:, 1] + tx
    mu = params[:, 2]

    def log_s(k_: Any, b_: Any, t: Any) -> Any:
        return tf.math.log(tf.maximum(1.0 - tf_lapse_before_first(k_, b_, mu, t), 1e-30))

    b2 = beta + d + tau
    kn = k + n
    some = (
        tf.math.lgamma(kn)
        - tf.math.lgamma(k)
        + k * tf.math.log(beta)
        - kn * tf.math.log(b2)
        - mu * (d + tau)
        + log_s(kn, b2, tf.maximum(w - tau, 0.0))
    )
    return tf.where(n > 0, some, log_s(k, beta, d + w)) - log_s(k, beta, d)
