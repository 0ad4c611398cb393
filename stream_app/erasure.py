"""Removing users: an erase request (with its confirmation alert) and the expiry sweep."""

from __future__ import annotations

from collections.abc import Mapping

from decay import alerts as al
from decay.state import StateError, decode_state
from stream_app.batch import BatchOutput, OutAlert, StateStore
from stream_app.partitions import PartitionState, erased_key, pack_erased


def erased_what(raw: bytes | None) -> str:
    """What an erasure removed, for its confirmation."""
    if raw is None:
        return "no state held for this user"
    try:
        st = decode_state(raw)
    except StateError:
        return "state erased on request (it was unreadable)"
    span = f"{al.rfc3339(st.first_ts_ms)} to {al.rfc3339(st.last_ts_ms)}" if st.n_events else ""
    return (
        f"state erased on request: {st.n_total} events, the last {st.n_events} of them "
        f"({span}) kept with {len(st.alerts)} alerts"
    )


def erase_user(
    store: StateStore,
    part: PartitionState | None,
    where: tuple[int, int],
    key: str,
    erased_at: int,
    now_ms: int,
    version: str,
    hold_ms: int,
) -> BatchOutput:
    """Delete the state of ``key`` (a tombstone in the changelog), keep a marker that drops
    its events produced up to ``erased_at`` that come later, and confirm on the alerts topic.
    ``where``: the erase request's partition and offset."""
    partition, offset = where
    out = BatchOutput()
    raw = store.get(partition, key)
    if part is not None:
        part.cancel(key)
        part.users -= raw is not None
        erased_at = max(erased_at, part.erased.get(key, erased_at))
        part.erased[key] = erased_at
    if raw is not None:
        out.deletes.append((partition, key))
    out.writes[(partition, erased_key(key))] = pack_erased(erased_at)
    confirmation = al.Alert(
        alert_id=al.alert_id(al.ERASED, key, offset),
        kind=al.ERASED,
        user_id=key,
        category=None,
        score=0.0,
        peak_score=0.0,
        half_life_hours=0.0,
        event_time=al.rfc3339(now_ms),
        emitted_at=al.rfc3339(now_ms),
        model_version=version,
        reasons=[
            erased_what(raw),
            f"events of this user produced up to {al.rfc3339(erased_at)} that arrive "
            f"later are dropped (for {hold_ms / 86_400_000:g} days)",
        ],
    )
    out.alerts.append(OutAlert(partition, key, al.ERASED, confirmation.to_json()))
    out.counts["erased" if raw is not None else "erase_unknown"] += 1
    return out


def expire_users(
    store: StateStore, partitions: Mapping[int, PartitionState], grace_ms: int, ttl_ms: int
) -> BatchOutput:
    """Delete the users silent for longer than ``ttl_ms`` of event time (the partition's
    watermark minus their last event)."""
    out = BatchOutput()
    for n, part in partitions.items():
        cutoff = part.watermark(grace_ms) - ttl_ms
        for user_id, value in store.scan(n):
            if user_id.startswith("\x00"):
                continue
            try:
                last = decode_state(value).last_ts_ms
            except StateError:
                last = cutoff - 1  # undecodable state is of no use to anyone: drop it
            if last < cutoff:
                out.deletes.append((n, user_id))
                part.cancel(user_id)
                part.users -= 1
    out.counts["expired"] += len(out.deletes)
    return out
