"""The lapse model's incremental step: one event + the stored state -> new state + heads.

The state of a user is the LSTM's ``(h, c)`` and the counters of
:class:`decay.lapse_state.Counters`. One step reads the new event's feature row (computed by
``decay.features.event_features`` from the event and the counters), runs the trained model's
own LSTM cell once, and the heads on the new ``h`` and the counters' static features: O(1)
per event. Training runs the same cell over the whole history (``training.lapse``), so both
give the same ``params`` after every event (``tests/train``: step by step == whole history).

ONNX graph (``to_onnx``): inputs ``event`` [B, F], ``h`` [B, U], ``c`` [B, U], ``static``
[B, 3]; outputs ``h_next``, ``c_next``, ``params`` [B, 4] = (k0, b0, p, kappa) of
:mod:`decay.btyd` (``k = k0 + x``, ``beta = b0 + t_x``). Plain ops: no ``Loop``, no ``Scan``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from decay.card import ModelCard
from decay.lapse_state import COUNTERS, STATIC
from training.export import OPSET, ExportError, code_version, save_with_card
from training.lapse import LapseConfig, LapseModel, build

log = logging.getLogger(__name__)
STEP_INPUTS = ("event", "h", "c", "static")
STEP_OUTPUTS = ("h_next", "c_next", "params")
SOURCES = (
    "decay/features.py",
    "decay/btyd.py",
    "decay/lifetime.py",
    "decay/lapse_state.py",
    "training/landmarks.py",
    "training/lapse.py",
    "training/lapse_loss.py",
    "training/lapse_step.py",
)


def step_model(model: Any, n_features: int) -> Any:
    """A Keras model of one step that shares the trained model's layers (and weights)."""
    import keras
    from keras import layers

    rnn = model.get_layer("rnn")
    if rnn.__class__.__name__ != "LSTM":
        raise ExportError("the incremental step is built for the LSTM encoder only")
    units = rnn.cell.units
    event = keras.Input((n_features,), name="event")
    h = keras.Input((units,), name="h")
    c = keras.Input((units,), name="c")
    static = keras.Input((len(STATIC),), name="static")
    out, (h2, c2) = rnn.cell(event, [h, c])
    trunk = model.get_layer("trunk")(layers.Concatenate()([out, static]))
    raw = model.get_layer("raw")(trunk)
    params = model.get_layer("params")(layers.Concatenate()([raw, static]))
    return keras.Model(
        inputs={"event": event, "h": h, "c": c, "static": static},
        outputs={"h_next": h2, "c_next": c2, "params": params},
    )


def whole_history_states(model: Any, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The LSTM's ``h`` after each event of right-padded histories: [B, N, U]."""
    import keras

    rnn = model.get_layer("rnn")
    seq = keras.Model(model.input["x"], rnn.output)
    return np.asarray(seq.predict(x, verbose=0, batch_size=1024))


def to_onnx(result: LapseModel) -> Any:
    """The step model as an ``onnx.ModelProto``."""
    import tensorflow as tf
    import tf2onnx

    if result.config.gap_stats:
        # the stored counters (decay.lapse_state) carry no sums of the gaps
        raise ExportError("the incremental step has no gap statistics: train without gap_stats")
    if result.config.shared_rate:
        raise ExportError("the incremental step reads the rate prior from the encoder's heads")
    step = step_model(result.model, result.spec.n_features)
    units = result.config.units
    signature = (
        tf.TensorSpec((None, result.spec.n_features), tf.float32, name="event"),
        tf.TensorSpec((None, units), tf.float32, name="h"),
        tf.TensorSpec((None, units), tf.float32, name="c"),
        tf.TensorSpec((None, len(STATIC)), tf.float32, name="static"),
    )

    @tf.function(input_signature=signature)
    def serve(event: Any, h: Any, c: Any, static: Any) -> dict[str, Any]:
        out = step({"event": event, "h": h, "c": c, "static": static}, training=False)
        return {k: tf.identity(v, name=k) for k, v in out.items()}

    proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=signature, opset=OPSET, output_path=None
    )
    kinds = {n.op_type for n in proto.graph.node}
    if kinds & {"Loop", "Scan", "LSTM"}:
        raise ExportError(f"the step graph should be plain ops; it has {sorted(kinds)}")
    _name_outputs(proto)
    return proto


def _name_outputs(proto: Any) -> None:
    graph = proto.graph
    for out in graph.output:
        base = out.name.split(":")[0]
        if base in STEP_OUTPUTS and out.name != base:
            for node in graph.node:
                for i, o in enumerate(node.output):
                    if o == out.name:
                        node.output[i] = base
            out.name = base
    got = {o.name for o in graph.output}
    if got != set(STEP_OUTPUTS):
        raise ExportError(f"unexpected ONNX outputs {sorted(got)}")


def card(result: LapseModel, proto: Any, holdout_metrics: dict[str, Any] | None) -> ModelCard:
    spec, cfg = result.spec, result.config
    code = code_version(SOURCES)
    return ModelCard(
        feature_spec_version=spec.version,
        seq_len=0,  # no window: the state carries the whole history
        cat_buckets=spec.cat_buckets,
        feature_names=spec.feature_names,
        bin_edges_h=(),
        horizon_h=spec.horizon_h,
        input_names=tuple(i.name for i in proto.graph.input),
        output_names=tuple(o.name for o in proto.graph.output),
        arch=f"{cfg.arch}-btyd-step",
        model_version=f"{cfg.arch}-btyd-{spec.version}-{code.split('+')[-1]}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code,
        training_data=result.summary,
        holdout_metrics=holdout_metrics or {},
        state_layout={
            "h": cfg.units,
            "c": cfg.units,
            "counters": list(COUNTERS),
            "static": list(STATIC),
            "unit_h": cfg.unit_h,
            "dropout": cfg.dropout,
            "params": ["k0", "b0", "p", "kappa"],
            "heads": "k = k0 + n_events - 1, beta = b0 + t_x; interest, P(alive), expected "
            "count and deadline by decay.btyd (decay.lifetime for dropout 'exp')",
        },
    )


def export(
    result: LapseModel, out_path: str | Path, holdout_metrics: dict[str, Any] | None = None
) -> ModelCard:
    """Write the step model with its card (and ``<name>.card.json`` next to it)."""
    proto = to_onnx(result)
    model_card = card(result, proto, holdout_metrics)
    out = Path(out_path)
    save_with_card(proto, model_card, out, out.with_suffix(".card.json"))
    log.info("exported the lapse step model to %s", out)
    return model_card


def save(result: LapseModel, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_weights(out / "weights.weights.h5")
    spec = result.spec
    meta = {
        "spec": {
            "version": spec.version,
            "cat_buckets": spec.cat_buckets,
            "horizon": spec.horizon_h,
        },
        "config": asdict(result.config),
        "summary": result.summary,
    }
    (out / "lapse.json").write_text(json.dumps(meta, indent=2, default=float))
    return out


def load(model_dir: str | Path) -> LapseModel:
    from decay.features import FeatureSpec

    meta = json.loads((Path(model_dir) / "lapse.json").read_text())
    s = meta["spec"]
    spec = FeatureSpec(
        version=s["version"], cat_buckets=int(s["cat_buckets"]), horizon_h=s["horizon"]
    )
    cfg = LapseConfig(**meta["config"])
    model = build(spec, cfg)
    model.load_weights(Path(model_dir) / "weights.weights.h5")
    return LapseModel(model=model, spec=spec, config=cfg, summary=meta["summary"])
