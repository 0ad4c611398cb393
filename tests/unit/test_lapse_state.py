"""The lapse step model's stored per-user state: the record codec and the counters."""

import numpy as np

from decay.lapse_state import Counters, advance, pack_states, state_dtype, unpack_states

TAG = 0xDECA


def test_record_is_48_plus_8_bytes_a_unit_and_round_trips() -> None:
    assert state_dtype(16).itemsize == 176
    st = unpack_states([b"", b""], TAG, 16)
    st["h"] = np.arange(32, dtype=np.float32).reshape(2, 16)
    st["n_events"], st["last_ts_ms"], st["amount_sum"] = [3, 9], [5, 7], [0.1, 2.5]
    blobs = pack_states(st)
    assert [len(b) for b in blobs] == [176, 176]
    back = unpack_states(blobs, TAG, 16)
    assert back.tobytes() == st.tobytes()


def test_a_foreign_or_empty_record_is_a_new_users_state() -> None:
    st = unpack_states([b""], TAG, 8)
    st["n_events"], st["h"] = 4, 0.5
    ours = pack_states(st)[0]
    other_model = pack_states(unpack_states([b""], TAG + 1, 8))[0]
    other_units = pack_states(unpack_states([b""], TAG, 16))[0]
    got = unpack_states([ours, other_model, other_units, b"junk"], TAG, 8)
    assert got["n_events"].tolist() == [4, 0, 0, 0]
    assert got["tag"].tolist() == [TAG] * 4 and np.all(got["h"][1:] == 0.0)
    assert np.all(got["h"][0] == 0.5)


def test_counters_advance_as_training_counts_and_older_events_are_not_stepped() -> None:
    st = unpack_states([b""], TAG, 4)
    ref = Counters()
    for ts, amount in ((1000, 5.0), (3000, 0.0), (3000, 2.0)):
        assert advance(st, np.array([ts]), np.array([amount])).tolist() == [True]
        ref = ref.add(ts, amount)
    got = (int(st["n_events"][0]), int(st["first_ts_ms"][0]), int(st["last_ts_ms"][0]))
    assert got == (ref.n_events, ref.first_ts_ms, ref.last_ts_ms)
    assert float(st["amount_sum"][0]) == ref.amount_sum
    # older than the last event: counted (and the earliest now), not stepped
    assert advance(st, np.array([500]), np.array([-1.0])).tolist() == [False]
    assert (int(st["n_events"][0]), int(st["first_ts_ms"][0])) == (4, 500)
    assert int(st["last_ts_ms"][0]) == 3000 and float(st["amount_sum"][0]) == 7.0
