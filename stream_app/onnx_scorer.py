"""The LSTM scorer: a model.onnx (with its card) behind the ``Scorer`` protocol.

No TensorFlow here: onnxruntime runs the graph (one session, one thread, one ``run`` per
batch), ``decay.features`` encodes the windows exactly as training did, and
``decay.survival`` turns the predicted hazard into peak interest, half-life and the dormancy
deadline. A model whose feature encoding differs from this code's is refused at load time.

Two feature specs are served (``decay.features``): ``fs1`` (hashed category buckets, a
``category_logits`` head over them) and ``fs2`` (the category-space rows of the card's PCA, a
``category_query`` head in that space). For fs2 a name's raw vector comes from one injected
:class:`decay.category_space.NameVectors` (the pinned encoder unless given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from decay import survival
from decay.card import CardError, ModelCard, card_of_session
from decay.category_space import CategorySpace, EncodedNames, NameVectors, SpaceRows
from decay.embeddings import EncoderUnavailable
from decay.errors import DecayError
from decay.features import VERSIONS, FeatureSpec, encode_windows, space_spec
from decay.scoring import HOUR_S, Scores
from decay.window import Window

INPUTS = ("x", "lengths", "elapsed_h")
OUTPUTS = ("log_hazard", "category_logits", "log_count")  # fs1
SPACE_OUTPUTS = ("log_hazard", "category_query", "log_count")  # fs2


class ModelMismatchError(DecayError, RuntimeError):
    """The model was trained for another feature encoding (or is not a decay model)."""


def check_features(
    card: ModelCard, spec: FeatureSpec, names: Sequence[str], seq_len: int | None = None
) -> None:
    """Raise :class:`ModelMismatchError` unless the card's encoding is ``spec``'s (and its
    window ``seq_len``, when given) and its graph has the inputs and outputs ``names``."""
    problems = []
    if card.feature_spec_version != spec.version:
        problems.append(f"feature spec {card.feature_spec_version!r} != {spec.version!r}")
    if seq_len is not None and card.seq_len != seq_len:
        problems.append(f"seq_len {card.seq_len} != {seq_len}")
    if card.cat_buckets != spec.cat_buckets:
        problems.append(f"category buckets {card.cat_buckets} != {spec.cat_buckets}")
    if int(card.category_space.get("dims", 0)) != spec.category_dims:
        problems.append(f"category space of {card.category_space.get('dims', 0)} dims")
    if tuple(card.feature_names) != spec.feature_names:
        problems.append("feature names differ")
    missing = [n for n in names if n not in (*card.input_names, *card.output_names)]
    if missing:
        problems.append(f"graph lacks {missing}")
    if problems:
        raise ModelMismatchError(
            f"model {card.model_version!r} does not match this worker's features: "
            + "; ".join(problems)
        )


def check_card(card: ModelCard, spec: FeatureSpec) -> None:
    """Raise :class:`ModelMismatchError` unless the card's encoding is ``spec``'s."""
    outputs = SPACE_OUTPUTS if spec.uses_space else OUTPUTS
    check_features(card, spec, (*INPUTS, *outputs), spec.seq_len)


def serving_spec(card: ModelCard, ours: FeatureSpec) -> FeatureSpec:
    """The encoding this worker uses for ``card``'s model: ``ours`` (window length, buckets)
    in the card's spec version, with the card's bins and horizon (and category space)."""
    if card.feature_spec_version not in VERSIONS:
        raise ModelMismatchError(
            f"model {card.model_version!r} has feature spec {card.feature_spec_version!r}; "
            f"this worker serves {', '.join(VERSIONS)}"
        )
    model = {"bin_edges_h": tuple(card.bin_edges_h), "horizon_h": float(card.horizon_h)}
    if card.feature_spec_version == ours.version:
        return FeatureSpec(
            version=ours.version,
            seq_len=ours.seq_len,
            cat_buckets=ours.cat_buckets,
            category_dims=ours.category_dims,
            **model,  # type: ignore[arg-type]
        )
    if card.feature_spec_version != "fs2" or not card.category_space:
        raise ModelMismatchError(
            f"model {card.model_version!r}: feature spec {card.feature_spec_version!r} "
            f"!= {ours.version!r}"
        )
    dims = int(card.category_space.get("dims", 0))
    return space_spec(dims, seq_len=ours.seq_len, **model)


def category_rows(card: ModelCard, names: NameVectors | None) -> SpaceRows:
    """The card's category space over ``names`` (the pinned encoder when None)."""
    try:
        space = CategorySpace.from_card(card.category_space)
        return SpaceRows(space, names or EncodedNames())
    except (ValueError, KeyError, EncoderUnavailable) as exc:
        raise ModelMismatchError(
            f"model {card.model_version!r} reads categories in a category space: {exc}"
        ) from exc


def open_model(model: str | bytes, name: str | Path) -> tuple[Any, ModelCard]:
    """An onnxruntime session of ``model`` (a path or the file's bytes) on one thread (the
    worker scores one batch at a time; more threads only contend), and its card."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    try:
        return session, card_of_session(session)
    except CardError as exc:
        raise ModelMismatchError(f"{name}: {exc}") from exc


class OnnxScorer:
    """Scores windows with an exported decay model."""

    def __init__(
        self, path: str | Path, spec: FeatureSpec | None = None, names: NameVectors | None = None
    ) -> None:
        self._session, card = open_model(str(path), path)
        # the model's own bins and horizon; the encoding is ours (checked equal below)
        self.spec = serving_spec(card, spec or FeatureSpec())
        check_card(card, self.spec)
        self.card = card
        self._rows = category_rows(card, names) if self.spec.uses_space else None
        self._outputs = SPACE_OUTPUTS if self.spec.uses_space else OUTPUTS

    @property
    def version(self) -> str:
        return self.card.model_version

    def predict(
        self, windows: Sequence[Window], elapsed_h: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Raw heads for a batch: ``log_hazard`` [B, M], ``category_logits`` [B, K] (fs1) or
        ``category_query`` [B, k] (fs2), ``log_count`` [B, 1]."""
        x, lengths = encode_windows(windows, self.spec, self._rows)
        x = x[:, : max(int(lengths.max(initial=0)), 1)]  # no need to feed all the padding
        if elapsed_h is None:
            elapsed = np.zeros((len(windows), 1), dtype=np.float32)
        else:
            elapsed = np.asarray(elapsed_h, dtype=np.float32).reshape(-1, 1)
        feeds = {"x": x, "lengths": lengths, "elapsed_h": elapsed}
        got = self._session.run(list(self._outputs), feeds)
        return dict(zip(self._outputs, got, strict=True))

    def category_scores(self, query: npt.NDArray[np.float64], names: Sequence[str]) -> Any:
        """fs2: scores q · e(name) [B, n] of any category names for the queries [B, k]."""
        if self._rows is None:
            raise ModelMismatchError(f"model {self.version!r} has no category space")
        return np.asarray(query, np.float64) @ self._rows.rows(names).T.astype(np.float64)

    def score(self, windows: Sequence[Window], threshold: float) -> Scores:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if not windows:
            empty = np.zeros(0)
            return Scores(peak=empty, half_life_s=empty, deadline_s=empty)
        out = self.predict(windows)
        rate = np.exp(out["log_hazard"].astype(np.float64))
        edges, horizon = self.spec.bin_edges_h, self.spec.horizon_h
        probs = query = None
        if self._rows is None:
            logits = out["category_logits"].astype(np.float64)
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        else:
            query = out["category_query"].astype(np.float64)
        return Scores(
            peak=survival.peak_interest(rate, edges, horizon),
            half_life_s=survival.half_life(rate, edges, horizon) * HOUR_S,
            deadline_s=survival.deadline(rate, edges, horizon, threshold) * HOUR_S,
            category_probs=probs,
            category_query=query,
            expected_events=np.exp(out["log_count"][:, 0].astype(np.float64)),
        )

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Exact interest curves from the full hazard (not the two stored parameters)."""
        if not windows:
            return np.zeros((0, np.atleast_2d(silent_s).shape[1]))
        rate = np.exp(self.predict(windows)["log_hazard"].astype(np.float64))
        silent_h = np.broadcast_to(
            np.atleast_2d(silent_s) / HOUR_S, (len(windows), np.atleast_2d(silent_s).shape[1])
        )
        return survival.interest(rate, self.spec.bin_edges_h, self.spec.horizon_h, silent_h)

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
        """From the two stored parameters: an exponential through the peak and the half-life
        (exact at both; the deadline itself comes from the full hazard in ``score``)."""
        if not math.isfinite(half_life_s) or half_life_s <= 0:
            return peak if math.isinf(half_life_s) else 0.0
        return peak * 2.0 ** (-max(silent_s, 0.0) / half_life_s)
