"""The scores topic's messages, built a batch at a time, are byte for byte what json.dumps
of the message's fields gives (the contract of docs: its separators, escapes and numbers)."""

import json
import math
import random

import numpy as np

from decay import alerts as al
from stream_app.alerting import ScoreRow, score_messages


def dumped(row: ScoreRow, version: str) -> bytes:
    """The message as json.dumps writes it: the reference the batch builder must match."""
    _, user_id, event_id, ts_ms, peak, half_life_s, deadline_ms = row
    payload = {
        "user_id": user_id,
        "event_id": event_id,
        "event_time": al.rfc3339(ts_ms),
        "score": peak,
        "half_life_hours": half_life_s / 3600.0,
        "deadline": al.rfc3339(deadline_ms) if deadline_ms else None,
        "model_version": version,
    }
    return json.dumps(payload).encode()


def test_rfc3339_many_is_rfc3339_value_by_value() -> None:
    rng = random.Random(11)
    cut = 2**33 * 1000  # below it the numpy path; a value at or past it sends all to rfc3339
    values = [rng.randrange(0, cut) for _ in range(20_000)]
    values += [0, 1, 999, 1000, 86_399_999, *range(cut - 100_000, cut, 997), cut - 1]
    expected = [al.rfc3339(v) for v in values]
    assert al.rfc3339_many(values) == expected
    # The numpy path itself, not the fallback: the same strings from numpy's formatter.
    stamps = np.asarray(values, dtype=np.int64).astype("datetime64[ms]")
    assert [s + "Z" for s in np.datetime_as_string(stamps).tolist()] == expected
    assert al.rfc3339_many([cut, 2**34 * 1000]) == [al.rfc3339(cut), al.rfc3339(2**34 * 1000)]
    assert al.rfc3339_many([]) == []
    assert al.rfc3339_many([-1, 5]) == [al.rfc3339(-1), al.rfc3339(5)]  # before 1970


def test_score_messages_are_json_dumps_byte_for_byte() -> None:
    rng = random.Random(5)
    names = ["u1", "ü-ser", 'quo"te\\', "tab\tline\n", "日本", "e" * 200]
    rows: list[ScoreRow] = []
    for i in range(3000):
        peak = rng.choice([rng.random(), 0.0, 1.0, 1e-9, float("nan"), float("inf"), 1, 3.5e20])
        rows.append(
            (
                rng.randrange(8),
                rng.choice(names) + str(i),
                rng.choice(names) + f"-{i}",
                rng.randrange(631_152_000_000, 4_102_444_800_000),
                peak,
                rng.choice([rng.random() * 1e7, 3600, float("inf")]),
                rng.choice([0, rng.randrange(631_152_000_000, 2**34 * 1000)]),
            )
        )
    out = score_messages(rows, 'lstm-"v1"')
    assert [m.payload for m in out] == [dumped(r, 'lstm-"v1"') for r in rows]
    assert [(m.partition, m.user_id, m.kind) for m in out] == [(r[0], r[1], "score") for r in rows]
    assert score_messages([], "v") == []


def test_a_score_message_parses_to_its_fields() -> None:
    row: ScoreRow = (2, "u7", "ev-1", 1_734_567_890_123, 0.25, 7200.0, 1_734_600_000_000)
    (msg,) = score_messages([row], "m1")
    parsed = json.loads(msg.payload)
    assert parsed == {
        "user_id": "u7",
        "event_id": "ev-1",
        "event_time": "2024-12-19T00:24:50.123Z",
        "score": 0.25,
        "half_life_hours": 2.0,
        "deadline": "2024-12-19T09:20:00.000Z",
        "model_version": "m1",
    }
    (none,) = score_messages([(*row[:6], 0)], "m1")
    assert json.loads(none.payload)["deadline"] is None
    assert not math.isnan(parsed["score"])
