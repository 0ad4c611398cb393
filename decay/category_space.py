"""The category space: sentence embeddings of names reduced to a few dimensions (PCA).

PCA is fitted at training on the embeddings of the training catalogue's category names and
travels with the model as its card's ``category_space`` entry (mean and components, a few
KiB), so the worker projects a name it has never seen with the same map: a new category gets
a representation next to its relatives, where a hashed bucket gets a random slot shared with
unrelated names.

Where a name's raw 384-d vector comes from is one injected :class:`NameVectors` (``vectors(
names) -> {name: vector}``): the encoder itself here (:class:`EncodedNames`), the worker's
cache of name embeddings in its state table once that exists. :class:`SpaceRows` puts the
two together and keeps each name's projected row, so a batch asks for a name once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from decay.embeddings import MODEL_ID, EmbeddingCache, load_encoder

F32 = npt.NDArray[np.float32]
MAX_CACHED = 65_536  # projected rows kept in memory; the cache is cleared past it


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
        if components.ndim != 2 or components.shape[0] != card["dims"]:
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


class NameVectors(Protocol):
    """Raw encoder vectors (384-d, unit) of category names, one per distinct name asked."""

    def vectors(self, names: Sequence[str]) -> dict[str, np.ndarray]: ...


class EncodedNames:
    """:class:`NameVectors` straight from the pinned encoder, each name encoded once."""

    def __init__(self, cache: EmbeddingCache | None = None) -> None:
        self._cache = cache or EmbeddingCache(load_encoder())

    def vectors(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        distinct = list(dict.fromkeys(names))
        return dict(zip(distinct, self._cache.vectors(distinct), strict=True))


class SpaceRows:
    """Category names -> their rows in a :class:`CategorySpace` [n, k] (unit vectors)."""

    def __init__(
        self,
        space: CategorySpace,
        names: NameVectors,
        known: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """``known``: raw vectors already at hand (training's catalogue), projected now."""
        self.space = space
        self._names = names
        self._rows: dict[str, F32] = {}
        if known:
            projected = space.project(np.stack(list(known.values())))
            self._rows.update(zip(known, projected, strict=True))

    @property
    def dims(self) -> int:
        return self.space.dims

    def rows(self, names: Sequence[str]) -> F32:
        new = [n for n in dict.fromkeys(names) if n not in self._rows]
        if new:
            if len(self._rows) + len(new) > MAX_CACHED:
                self._rows.clear()
            raw = self._names.vectors(new)
            projected = self.space.project(np.stack([raw[n] for n in new]))
            self._rows.update(zip(new, projected, strict=True))
        if not names:
            return np.zeros((0, self.dims), np.float32)
        return np.stack([self._rows[n] for n in names])
