"""Category columns of the feature rows: hashed buckets (spec fs1) or category-space rows (fs2).

A spec's categories are given here as ``(buckets, dims)``: ``dims == 0`` means fs1 (one-hot of
``crc32(name) % buckets``), ``dims > 0`` fs2 (rows of :func:`category_table`, built from an
injected :class:`CategoryRows`). In both, a missing category and the training cleaner's name
for one, ``"unknown"``, are the same thing.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from decay.window import NO_CATEGORY

UNKNOWN_CATEGORY: Final = "unknown"
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Categories = tuple[int, int]  # (buckets, dims) of a feature spec


@functools.lru_cache(maxsize=4096)  # a few dozen names, asked for on every event
def category_bucket(name: str | None, buckets: int) -> int:
    """Stable bucket of a category name (crc32, never Python's salted ``hash``)."""
    text = UNKNOWN_CATEGORY if name is None else name
    return zlib.crc32(text.encode("utf-8")) % buckets


class CategoryRows(Protocol):
    """Category names -> rows [n, k] in the model's category space (``fs2``)."""

    @property
    def dims(self) -> int: ...

    def rows(self, names: Sequence[str]) -> F32: ...


def category_table(names: Sequence[str], rows: CategoryRows) -> F32:
    """``fs2``'s category columns: row 0 the missing category, row 1 + i ``names[i]``.

    A missing category is the origin of the space: every name is a unit vector, so none is
    there, and the category part of the input then adds nothing. (An indicator column was
    tried first: in the simulator only ``other`` events lack a category, so it learned "an
    other event", and on CDNOW, where no purchase has one, the model raised 338 dormant
    alerts instead of 28,502.)"""
    table = np.zeros((len(names) + 1, rows.dims), np.float32)
    if names:
        table[1:] = rows.rows(names)
    return table


def _bucket_table(categories: tuple[str, ...], buckets: int) -> I64:
    """Bucket per category index of a window (256 entries: NO_CATEGORY and any index past the
    names count as a missing category)."""
    table = np.full(256, category_bucket(None, buckets), dtype=np.int64)
    names = categories[:NO_CATEGORY]
    table[: len(names)] = [category_bucket(name, buckets) for name in names]
    return table


def code_tables(
    lists: Sequence[tuple[str, ...]], spec: Categories, rows: CategoryRows | None
) -> tuple[I64, F32 | None]:
    """Per distinct category list of the batch, a 256-entry code per category index; fs1:
    buckets; fs2: rows of one :func:`category_table` of the batch's names (returned too)."""
    buckets, dims = spec
    if dims == 0:
        return np.stack([_bucket_table(c, buckets) for c in lists]), None
    if rows is None or rows.dims != dims:
        raise ValueError(f"the category space needs rows of {dims} dims")
    index: dict[str, int] = {UNKNOWN_CATEGORY: 0}  # the cleaner's name for a missing one
    codes = np.zeros((len(lists), 256), np.int64)  # 0: the missing category
    for i, cats in enumerate(lists):
        names = cats[:NO_CATEGORY]
        codes[i, : len(names)] = [index.setdefault(n, len(index)) for n in names]
    return codes, category_table(list(index)[1:], rows)


def log_categories(
    values: npt.NDArray[np.object_], spec: Categories, rows: CategoryRows | None
) -> tuple[npt.NDArray[np.int16], F32 | None, tuple[str, ...]]:
    """Per event: its category code (fs1: bucket; fs2: index into the names, -1: missing),
    fs2's :func:`category_table` (whose row is code + 1) and names."""
    cat_codes, cat_names = pd.factorize(values)
    buckets, dims = spec
    if dims == 0:
        table = np.array(
            [category_bucket(str(c), buckets) for c in cat_names]
            + [category_bucket(None, buckets)],
            dtype=np.int16,
        )
        return table[cat_codes], None, ()  # code -1 (missing) picks the last: "unknown"
    if rows is None or rows.dims != dims:
        raise ValueError(f"the category space needs rows of {dims} dims")
    names = [str(c) for c in cat_names]
    kept = [n for n in names if n != UNKNOWN_CATEGORY]
    index = {n: i for i, n in enumerate(kept)}
    remap = np.array([index.get(n, -1) for n in names] + [-1], dtype=np.int16)
    return remap[cat_codes], category_table(kept, rows), tuple(kept)
