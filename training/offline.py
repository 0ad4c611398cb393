"""Offline scores of a whole event log: for each event, the user's interest right after it.

The training side's view of what the stream must compute: windows come from the vectorised
training path (``decay.features.prepare_events`` / ``gather_windows``), not from the stream's
per-user state, and the ONNX graph runs in one session here. The parity test replays the same
log through a worker and compares its scores topic with this, event by event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from decay import survival
from decay.card import card_of_session
from decay.features import FeatureSpec, gather_windows, prepare_events


def score_log(
    events: pd.DataFrame, model: str | Path, threshold: float, chunk: int = 4096
) -> pd.DataFrame:
    """One row per event: ``event_id``, ``user_id``, ``score`` (peak interest),
    ``half_life_hours`` and ``deadline_hours`` (silence until dormancy)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    card = card_of_session(session)
    spec = FeatureSpec(bin_edges_h=tuple(card.bin_edges_h), horizon_h=float(card.horizon_h))
    table = prepare_events(events, spec)
    order = np.lexsort(
        (events["ts"].to_numpy(np.int64), pd.factorize(events["user_id"].astype(str), sort=True)[0])
    )
    ids = events["event_id"].astype(str).to_numpy()[order]  # the table's (user, ts) order
    positions = np.arange(table.ts.shape[0], dtype=np.int64)
    users = table.user_of
    peaks, halves, deadlines = [], [], []
    for i in range(0, positions.shape[0], chunk):
        last = positions[i : i + chunk]
        x, lengths = gather_windows(table, users[i : i + chunk], last)
        elapsed = np.zeros((last.shape[0], 1), dtype=np.float32)
        log_hazard = session.run(["log_hazard"], {"x": x, "lengths": lengths, "elapsed_h": elapsed})
        rate = np.exp(log_hazard[0].astype(np.float64))
        edges, horizon = spec.bin_edges_h, spec.horizon_h
        peaks.append(survival.peak_interest(rate, edges, horizon))
        halves.append(survival.half_life(rate, edges, horizon))
        deadlines.append(survival.deadline(rate, edges, horizon, threshold))
    return pd.DataFrame(
        {
            "event_id": ids,
            "user_id": table.users[users].astype(str),
            "score": np.concatenate(peaks) if peaks else np.zeros(0),
            "half_life_hours": np.concatenate(halves) if halves else np.zeros(0),
            "deadline_hours": np.concatenate(deadlines) if deadlines else np.zeros(0),
        }
    )
