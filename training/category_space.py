"""The category space: sentence embeddings of names reduced to a few dimensions.

PCA is fitted at training on the embeddings of the training catalogue (category names and
item titles) and travels with the model as its card's ``category_space`` entry (mean and
components, a few KiB), so the worker projects a name it has never seen with the same map:
a new category gets a representation next to its relatives, where a hashed bucket gets a
random slot shared with unrelated names.

Also here: the history features a next-category predictor reads, the same function for both
representations (embedding rows or one-hot buckets), so the bench compares only the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from decay.embeddings import MODEL_ID
from decay.features import category_bucket

F32 = npt.NDArray[np.float32]
DECAYS = (0.5, 0.85)  # weights of older sessions in the two running averages


@dataclass(frozen=True)
class CategorySpace:
    """x -> unit((x - mean) @ components.T): k dimensions, cosine preserved where it matters."""

    encoder: str
    mean: F32  # [384]
    components: F32  # [k, 384]

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def project(self, vectors: F32) -> F32:
        reduced = (np.asarray(vectors, np.float32) - self.mean) @ self.components.T
        norms = np.linalg.norm(reduced, axis=1, keepdims=True)
        return (reduced / np.maximum(norms, 1e-12)).astype(np.float32)

    def to_card(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "dims": self.dims,
            "mean": [round(float(v), 7) for v in self.mean],
            "components": [[round(float(v), 7) for v in row] for row in self.components],
        }

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> CategorySpace:
        if card.get("encoder") != MODEL_ID:
            raise ValueError(f"category space of encoder {card.get('encoder')!r}, not {MODEL_ID}")
        components = np.asarray(card["components"], np.float32)
        if components.shape[0] != card["dims"]:
            raise ValueError("category space: dims and components disagree")
        return cls(MODEL_ID, np.asarray(card["mean"], np.float32), components)


def fit_space(vectors: F32, dims: int) -> CategorySpace:
    """PCA of ``vectors`` [n, 384] (n > dims) by SVD of the centred rows."""
    x = np.asarray(vectors, np.float64)
    if not 0 < dims < x.shape[0]:
        raise ValueError(f"dims must be in 1..{x.shape[0] - 1}, got {dims}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return CategorySpace(MODEL_ID, mean.astype(np.float32), vt[:dims].astype(np.float32))


def bucket_rows(names: Sequence[str], buckets: int) -> F32:
    """The hashed representation: one-hot rows of ``decay.features.category_bucket``."""
    out = np.zeros((len(names), buckets), np.float32)
    out[np.arange(len(names)), [category_bucket(n, buckets) for n in names]] = 1.0
    return out


def history_features(reps: F32) -> F32:
    """For a user's sessions' category rows ``reps`` [S, d]: the features before session i,
    for i in 1..S-1, as rows [S-1, 3d]: the last session's row and two running averages
    (recent-weighted) of all earlier ones."""
    s, d = reps.shape
    out = np.zeros((max(s - 1, 0), 3 * d), np.float32)
    avg = [np.zeros(d, np.float32) for _ in DECAYS]
    for i in range(1, s):
        for j, w in enumerate(DECAYS):
            avg[j] = reps[i - 1] if i == 1 else w * avg[j] + (1 - w) * reps[i - 1]
        out[i - 1] = np.concatenate([reps[i - 1], *avg])
    return out
