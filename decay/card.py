"""The model card: typed, travels inside the ONNX file as ``metadata_props``.

Each field is stored under ``decay.<field>`` as JSON text. Reading needs only onnxruntime
(the worker's runtime); writing takes an ``onnx.ModelProto`` (training side). No TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from decay.errors import DecayError

PREFIX = "decay."
OPTIONAL = (
    "training_data",
    "holdout_metrics",
    "state_layout",
    "serving",
    "category_space",
)  # older cards may lack them


class CardError(DecayError, ValueError):
    """The ONNX file carries no card, or one that cannot be read."""


@dataclass(frozen=True)
class ModelCard:
    feature_spec_version: str
    seq_len: int
    cat_buckets: int
    feature_names: tuple[str, ...]
    bin_edges_h: tuple[float, ...]
    horizon_h: float
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    arch: str
    model_version: str
    created_at: str
    code_version: str
    training_data: dict[str, Any] = field(default_factory=dict)
    holdout_metrics: dict[str, Any] = field(default_factory=dict)
    # the per-user state an incremental step model reads and writes (empty: a window model)
    state_layout: dict[str, Any] = field(default_factory=dict)
    # the recommended serving point (horizon_h, threshold), chosen on the training period only
    serving: dict[str, Any] = field(default_factory=dict)
    # feature spec fs2: the PCA of the name embeddings (``decay.category_space``), else empty
    category_space: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        return {PREFIX + k: json.dumps(v, sort_keys=True) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelCard:
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = PREFIX + f.name
            if key not in meta:
                if f.name in OPTIONAL:
                    continue
                raise CardError(f"model card lacks {key!r}")
            try:
                value = json.loads(meta[key])
            except ValueError as exc:
                raise CardError(f"model card field {key!r} is not JSON: {exc}") from exc
            values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def write_card(model: Any, card: ModelCard) -> None:
    """Replace the card in an ``onnx.ModelProto`` (in place); other metadata is kept."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in card.to_metadata().items():
        model.metadata_props.add(key=key, value=value)


def read_card(path: str | Path) -> ModelCard:
    """The card of an ONNX file on disk (needs only onnxruntime)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return card_of_session(session)


def card_of_session(session: Any) -> ModelCard:
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if not any(k.startswith(PREFIX) for k in meta):
        raise CardError("this ONNX file carries no decay model card")
    return ModelCard.from_metadata(meta)
