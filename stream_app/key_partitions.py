"""The partitions Kafka's default partitioner gives many keys at once.

aiokafka's ``murmur2`` is pure Python: about 4 µs a key here, which a batch paid for each of
its alerts and scores (stream_app.producer_batches), one score per event when every score is
published. This is the same hash (Kafka's ``Utils.murmur2``: MurmurHash2, seed 0x9747b28c)
computed with numpy over all keys of one length at a time, in uint32 arithmetic, which wraps
as Java's int does; tests/unit/test_key_partitions.py checks it against aiokafka's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_SEED = np.uint32(0x9747B28C)
_M = np.uint32(0x5BD1E995)


def murmur2_many(keys: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """Kafka's murmur2 of each key."""
    out = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, rows in by_length.items():
        out[rows] = _same_length([keys[i] for i in rows], length)
    return out


def partitions_for(keys: Sequence[bytes], partitions: int) -> npt.NDArray[np.int64]:
    """Each key's partition of ``partitions``, as stream_app.queries.partition_for gives it."""
    return (murmur2_many(keys) & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions


def _same_length(keys: list[bytes], length: int) -> npt.NDArray[np.uint32]:
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    h = np.full(len(keys), _SEED ^ np.uint32(length & 0xFFFFFFFF), dtype=np.uint32)
    whole = length // 4
    if whole:
        words = np.ascontiguousarray(data[:, : whole * 4]).view("<u4")
        for j in range(whole):
            k = words[:, j] * _M
            k ^= k >> np.uint32(24)
            k *= _M
            h *= _M
            h ^= k
    tail = data[:, whole * 4 :].astype(np.uint32)
    if tail.shape[1]:
        for j in range(tail.shape[1] - 1, -1, -1):  # the last byte first, as Kafka's does
            h ^= tail[:, j] << np.uint32(8 * j)
        h *= _M
    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    return h
