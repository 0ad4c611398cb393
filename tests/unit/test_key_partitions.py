"""stream_app.key_partitions against aiokafka's murmur2, the hash Kafka's default partitioner
uses: every key length from 0 to 40, random bytes and user ids, and partition counts."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2

from stream_app.key_partitions import murmur2_many, partitions_for
from stream_app.queries import partition_for


def test_the_hash_is_kafkas_for_every_length() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(41) for _ in range(25)]
    keys += [f"user-{i}".encode() for i in range(2000)] + ["üser-é".encode(), b""]
    rng.shuffle(keys)
    assert murmur2_many(keys).tolist() == [murmur2(k) for k in keys]


def test_the_partitions_are_the_default_partitioners() -> None:
    keys = [f"u{i * 7919}".encode() for i in range(3000)] + [b"\xff" * 9, b"\x80\x00\x01"]
    for count in (1, 3, 4, 12, 1000):
        assert partitions_for(keys, count).tolist() == [partition_for(k, count) for k in keys]
    assert partitions_for([], 4).tolist() == []
