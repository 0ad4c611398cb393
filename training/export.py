"""Export a trained model to ONNX (tf2onnx), check parity with TensorFlow, write the card.

tf2onnx turns the unmasked Keras RNN into one ONNX ``LSTM`` (or ``GRU``) op; we then feed it
``sequence_lens`` (the window lengths, at least 1), so onnxruntime stops at each window's end
instead of running over the padding. The output read at ``length - 1`` is unchanged by that
(the RNN is causal), which the parity check proves on 1,000 windows, empty and length-1 ones
included.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from decay.card import ModelCard, write_card
from decay.errors import DecayError
from decay.features import FeatureSpec

log = logging.getLogger(__name__)
OPSET = 17
_SOURCES = (
    "decay/features.py",
    "decay/category_codes.py",
    "decay/category_space.py",
    "decay/survival.py",
    "training/model.py",
    "training/train.py",
)


class ExportError(DecayError, RuntimeError):
    """The exported graph is not what serving expects, or disagrees with TensorFlow."""


@dataclass(frozen=True)
class Parity:
    n: int
    max_abs: float
    max_rel: float
    rtol: float
    atol: float


def code_version(sources: tuple[str, ...] = _SOURCES) -> str:
    """Package version plus a digest of the sources that define features and model."""
    try:
        pkg = version("decay")
    except PackageNotFoundError:
        pkg = "0"
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for rel in sources:
        path = root / rel
        if path.is_file():
            digest.update(path.read_bytes())
    return f"{pkg}+{digest.hexdigest()[:12]}"


def to_onnx(model: Any, spec: FeatureSpec) -> Any:
    """Keras model -> ``onnx.ModelProto`` with an RNN op fed ``sequence_lens``."""
    import tensorflow as tf
    import tf2onnx

    signature = (
        tf.TensorSpec((None, None, spec.n_features), tf.float32, name="x"),
        tf.TensorSpec((None,), tf.int32, name="lengths"),
        tf.TensorSpec((None, 1), tf.float32, name="elapsed_h"),
    )

    @tf.function(input_signature=signature)
    def serve(x: Any, lengths: Any, elapsed_h: Any) -> dict[str, Any]:
        out = model({"x": x, "lengths": lengths, "elapsed_h": elapsed_h}, training=False)
        return {k: tf.identity(v, name=k) for k, v in out.items()}

    proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=signature, opset=OPSET, output_path=None
    )
    from training.model import output_names

    _feed_sequence_lens(proto)
    _rename_outputs(proto, output_names(spec))
    return proto


def _feed_sequence_lens(proto: Any) -> None:
    from onnx import TensorProto, helper

    graph = proto.graph
    rnns = [n for n in graph.node if n.op_type in ("LSTM", "GRU")]
    loops = [n for n in graph.node if n.op_type in ("Loop", "Scan")]
    if len(rnns) != 1 or loops:
        kinds = sorted({n.op_type for n in graph.node})
        raise ExportError(f"expected one ONNX LSTM/GRU op and no Loop; graph has {kinds}")
    rnn = rnns[0]
    one = helper.make_tensor("decay_one_i32", TensorProto.INT32, [], [1])
    graph.initializer.append(one)
    graph.node.extend(
        [
            helper.make_node("Max", ["lengths", "decay_one_i32"], ["decay_seq_lens"]),
        ]
    )
    inputs = list(rnn.input) + [""] * (5 - len(rnn.input))
    if inputs[4]:
        raise ExportError("the RNN op already has sequence_lens")
    inputs[4] = "decay_seq_lens"
    del rnn.input[:]
    rnn.input.extend(inputs)
    _toposort(proto)


def _toposort(proto: Any) -> None:
    graph = proto.graph
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in known for i in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ExportError("graph has a cycle or a dangling input")
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _rename_outputs(proto: Any, names: tuple[str, ...]) -> None:
    """Give graph outputs their head names (tf2onnx may suffix them)."""
    graph = proto.graph
    for out in graph.output:
        for name in names:
            if out.name != name and out.name.split(":")[0] == name:
                old = out.name
                for node in graph.node:
                    for i, o in enumerate(node.output):
                        if o == old:
                            node.output[i] = name
                    for i, inp in enumerate(node.input):
                        if inp == old:
                            node.input[i] = name
                out.name = name
    got = {o.name for o in graph.output}
    if got != set(names):
        raise ExportError(f"unexpected ONNX outputs {sorted(got)}")


def parity_inputs(spec: FeatureSpec, n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Random right-padded windows of every length, empty and length-1 ones included."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, spec.seq_len + 1, size=n).astype(np.int32)
    lengths[: n // 10] = 0
    lengths[n // 10 : n // 5] = 1
    x = rng.normal(0, 1, size=(n, spec.seq_len, spec.n_features)).astype(np.float32)
    x[np.arange(spec.seq_len)[None, :] >= lengths[:, None]] = 0.0
    elapsed = rng.exponential(100.0, size=(n, 1)).astype(np.float32)
    elapsed[: n // 2] = 0.0
    return {"x": x, "lengths": lengths, "elapsed_h": elapsed}


def check_parity(
    model: Any,
    onnx_bytes: bytes,
    spec: FeatureSpec,
    n: int = 1000,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Parity:
    """Run TensorFlow and onnxruntime on the same inputs; raise unless allclose(rtol, atol)."""
    import onnxruntime as ort

    feeds = parity_inputs(spec, n)
    want = {k: np.asarray(v) for k, v in model(feeds, training=False).items()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, feeds), strict=True))
    max_abs = max_rel = 0.0
    for k, w in want.items():
        g = got[k].reshape(w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {k}")
        diff = np.abs(g.astype(np.float64) - w)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / np.maximum(np.abs(w), 1e-3)).max()))
    return Parity(n=n, max_abs=max_abs, max_rel=max_rel, rtol=rtol, atol=atol)


def export(
    model_dir: str | Path,
    out_path: str | Path,
    *,
    holdout_metrics: dict[str, Any] | None = None,
    parity_n: int = 1000,
) -> tuple[ModelCard, Parity]:
    """Export ``model_dir`` (from ``training.train``) to ``out_path`` with its card;
    ``card.json`` is written next to it."""

    from training.train import load

    trained = load(model_dir)
    spec = trained.spec
    proto = to_onnx(trained.model, spec)
    parity = check_parity(trained.model, proto.SerializeToString(), spec, parity_n)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    code = code_version()
    if spec.uses_space and trained.space is None:
        raise ExportError(f"a {spec.version} model needs its category space")
    card = ModelCard(
        feature_spec_version=spec.version,
        seq_len=spec.seq_len,
        cat_buckets=spec.cat_buckets,
        feature_names=spec.feature_names,
        bin_edges_h=spec.bin_edges_h,
        horizon_h=spec.horizon_h,
        input_names=tuple(i.name for i in proto.graph.input),
        output_names=tuple(o.name for o in proto.graph.output),
        arch=trained.config.arch,
        model_version=f"{trained.config.arch}-{spec.version}-{code.split('+')[-1]}",
        created_at=created,
        code_version=code,
        training_data=trained.summary,
        # only from an evaluation on data the model never saw (``export --metrics``)
        holdout_metrics=holdout_metrics or {},
        category_space={} if trained.space is None else trained.space.to_card(),
    )
    out = save_with_card(proto, card, out_path, Path(out_path).parent / "card.json")
    log.info("exported %s (%d bytes); parity %s", out, out.stat().st_size, parity)
    print(
        f"exported {out} ({out.stat().st_size / 1024:.0f} KiB); parity on {parity.n} inputs: "
        f"max abs {parity.max_abs:.2e}, max rel {parity.max_rel:.2e}",
        flush=True,
    )
    return card, parity


def save_with_card(proto: Any, card: ModelCard, out_path: str | Path, card_json: Path) -> Path:
    """Put ``card`` into the ONNX ``proto``, check the model, write it to ``out_path`` and the
    card as JSON to ``card_json`` too (for people and tools that do not read ONNX)."""
    import onnx

    write_card(proto, card)
    proto.producer_name = "decay"
    onnx.checker.check_model(proto)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, out)
    card_json.write_text(card.to_json() + "\n")
    return out
