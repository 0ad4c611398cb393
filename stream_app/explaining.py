"""A batch's alerts go out at its end, each with its explanation, all explained in one call.

The processor queues each alert as it fires (:class:`Pending`: its record without the
explanation, and the user's window as the alert saw it: a deadline that fires mid-batch must
not see the user's later events of the batch). :func:`emit` then scores every queued alert's
window without each of its last ``explain_events`` events in ONE scorer call
(``decay.scoring.occlusion``), puts the sentences (``decay.explanations``) in the alert,
keeps it in the user's state and hands it to the batch's output, in the order they fired.
Only alerts are explained, never plain events, and a batch without alerts calls nothing.
A user's record keeps the explanation of its newest alert and of those not yet confirmed
delivered (``plain_delivered``).

What an explanation reads is the alert's own window and time, so it does not depend on where
the batch boundaries fell; its id is the alert's, which the explanation does not enter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from decay.alerts import Alert
from decay.explanations import EVENTS, explain
from decay.scoring import AnyScorer, occlusion
from decay.state import StoredAlert, UserState
from decay.window import Window
from stream_app.batch import BatchOutput, OutAlert

_NO_EXPLANATION = b'"explanation":[]'


@dataclass(frozen=True, slots=True)
class Pending:
    """An alert that fired in the batch, waiting for its explanation."""

    partition: int
    user_id: str
    kind: str
    st: UserState
    cause_offset: int
    payload: bytes  # the alert's record, without its explanation
    window: Window  # the user's window when it fired
    at_ms: int  # the alert's event time: the explanation reads interest then


def explanations(scorer: AnyScorer, asks: Sequence[tuple[Window, int]], k: int) -> list[list[str]]:
    """Per (window, time): the sentences on which of the window's last ``k`` events moved
    interest at that time most; one scorer call for all (none when ``k`` is 0)."""
    if k < 1:
        return [[] for _ in asks]
    found = occlusion(scorer, asks, k)
    return [explain(w, occ, t) for (w, t), occ in zip(asks, found, strict=True)]


def explain_now(scorer: AnyScorer, st: UserState, now_ms: int, k: int = EVENTS) -> list[str]:
    """For the user's pages: which of the user's last ``k`` events move interest now most."""
    if not st.n_events:
        return []
    return explanations(scorer, [(st.window(), max(now_ms, st.last_ts_ms))], k)[0]


def with_explanation(payload: bytes, why: list[str]) -> bytes:
    if not why:
        return payload
    return replace(Alert.from_json(payload), explanation=why).to_json()


def plain_delivered(st: UserState, unconfirmed_from: int) -> None:
    """Before a new alert is kept in the user's record: its older alerts that were delivered
    (caused before ``unconfirmed_from``) keep their reasons, not their explanation. Bytes of
    state per user: the record keeps the newest alert's explanation, and whole every alert
    that may be sent again after a crash; the alerts topic has them all."""
    for i, kept in enumerate(st.alerts):
        if kept.cause_offset >= unconfirmed_from or _NO_EXPLANATION in kept.payload:
            continue
        plain = replace(Alert.from_json(kept.payload), explanation=[]).to_json()
        st.alerts[i] = StoredAlert(kept.cause_offset, plain)


def emit(
    pending: list[Pending],
    out: BatchOutput,
    scorer: AnyScorer,
    k: int,
    keep_alerts: int,
    committed: Mapping[int, int],
) -> None:
    """The queued alerts, explained, into the users' states and ``out.alerts``; empties
    ``pending``. ``committed``: each partition's committed offset (an alert caused at or
    after it is kept in the state until confirmed, to be sent again after a crash)."""
    if not pending:
        return
    whys = explanations(scorer, [(p.window, p.at_ms) for p in pending], k)
    for p, why in zip(pending, whys, strict=True):
        payload = with_explanation(p.payload, why)
        unconfirmed_from = committed.get(p.partition, 0)
        plain_delivered(p.st, unconfirmed_from)
        p.st.remember_alert(StoredAlert(p.cause_offset, payload), keep_alerts, unconfirmed_from)
        out.alerts.append(OutAlert(p.partition, p.user_id, p.kind, payload))
    pending.clear()
