"""How large the worker's record batches to a topic are (stream_app.producer_batches)."""

from __future__ import annotations

from stream_app.producer_batches import (
    MAX_BATCH_BYTES,
    UNKNOWN_LIMIT_BATCH_BYTES,
    record_batch_bytes,
)


def test_a_topic_takes_batches_up_to_its_own_limit_at_most_a_megabyte() -> None:
    limits = {"alerts": 524_288, "changelog": 8_000_000}
    assert record_batch_bytes(limits, "alerts") == 524_288
    assert record_batch_bytes(limits, "changelog") == MAX_BATCH_BYTES == 1_000_000


def test_a_topic_whose_limit_is_unknown_gets_the_producers_own_batch_size() -> None:
    # e.g. no DescribeConfigs permission: a megabyte guessed there could be refused whole,
    # again after every restart
    assert record_batch_bytes({}, "alerts") == UNKNOWN_LIMIT_BATCH_BYTES == 16_384
