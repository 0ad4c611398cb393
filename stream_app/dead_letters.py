"""The dead-letter record of a rejected message, cut to what the dead-letter topic accepts.

A record the broker accepted on the events topic can be as large as the topic allows; its
dead-letter copy carries headers on top, so it may not fit the dead-letter topic nor the
producer's request limit. Sending it as it came would fail, the batch with it, and every
restart would meet the same record again (a poison pill). So the copy keeps what fits: the
key is cut to ``MAX_KEY_BYTES`` (no valid user id is longer), the value to the room left, and
headers say what was cut and how large the original was.
"""

from __future__ import annotations

from typing import Final

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from stream_app.outbox import Outgoing
from stream_app.processor import Record

# A valid key is a user id of at most 256 characters (decay.events.MAX_ID_LEN): 1 KiB of UTF-8.
MAX_KEY_BYTES: Final = 1024
MAX_DETAIL_BYTES: Final = 1024
# Kafka's default message.max.bytes; the worker reads the topics' own limits at start.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_588

TRUNCATED: Final = "decay-truncated"
ORIGINAL_VALUE_BYTES: Final = "decay-original-value-bytes"
ORIGINAL_KEY_BYTES: Final = "decay-original-key-bytes"


def record_size(key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> int:
    """The size of a one-record batch, as the producer and the broker count it."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def dead_letter(
    topic: str, source_topic: str, rec: Record, reason: str, detail: str, max_bytes: int
) -> Outgoing:
    """The dead-letter message of ``rec`` (read from ``source_topic``), cut so that it is at
    most ``max_bytes`` as a record batch."""
    headers = (
        ("decay-reason", reason.encode()),
        ("decay-detail", detail.encode()[:MAX_DETAIL_BYTES]),
        ("decay-source-topic", source_topic.encode()),
        ("decay-source-partition", str(rec.partition).encode()),
        ("decay-source-offset", str(rec.offset).encode()),
    )
    origin = f"{source_topic}[{rec.partition}]@{rec.offset}"
    key, value = rec.key, rec.value or b""
    cut_key = key[:MAX_KEY_BYTES] if key is not None else None
    if cut_key == key and record_size(key, value, headers) <= max_bytes:
        return Outgoing(topic, key, value, headers, origin, best_effort=True)
    sizes = (
        (ORIGINAL_VALUE_BYTES, str(len(value)).encode()),
        (ORIGINAL_KEY_BYTES, str(len(key or b"")).encode()),
    )
    # The headers' size does not depend on the value's: measure them with an empty value.
    marked = (*headers, (TRUNCATED, b"key,value"), *sizes)
    room = max_bytes - record_size(cut_key, b"", marked)
    if room < 0:  # a topic limit below the headers: the key goes too; if it still does not
        cut_key = None  # fit, the broker refuses it and the outbox counts it as not sent
        room = max_bytes - record_size(None, b"", marked)
    # The varint of the value's length grows with the value: a few bytes' margin.
    kept = value[: max(room - 8, 0)]
    cut = [name for name, was_cut in (("key", cut_key != key), ("value", kept != value)) if was_cut]
    marked = (*headers, (TRUNCATED, ",".join(cut).encode()), *sizes)
    return Outgoing(topic, cut_key, kept, marked, origin, best_effort=True)
