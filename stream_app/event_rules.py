"""Pass 2 of a batch (``stream_app.processor``): event by event in order, the alert rules
(``stream_app.alerting``) and the deadline schedule, from the scores of the batch's one scorer
call. Deadlines are checked after every event, so the alerts do not depend on where the batch
boundaries fell.

The rules that cannot fire on an event are not called (most users are not dormant, and have
no category strong enough to drop), and the scores are converted for the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence

import numpy as np

from decay.engagement import may_decay
from decay.rows import Snapshot
from decay.scoring import Scores
from decay.state import UserState
from stream_app import alerting
from stream_app.alerting import AlertSpec
from stream_app.batch import BatchOutput, ProcessorConfig, Step, UserKey
from stream_app.category_vectors import CategoryVectors
from stream_app.partitions import PartitionState

_INF = float("inf")
_NO_WATERMARK = -(2**62)  # PartitionState.watermark before any event

# Fires the partition's due deadlines (partition, its state, the offset that caused it).
Fire = Callable[[int, PartitionState, int], None]
# Queues an alert (the user's state and key, the offset that caused it, what to say).
Emit = Callable[[UserState, UserKey, int, AlertSpec], None]


class EventRules:
    """One batch's pass 2 over its processor's partitions; ``fire`` and ``emit`` are the
    processor's (they read and queue what the batch holds)."""

    def __init__(
        self,
        config: ProcessorConfig,
        partitions: Mapping[int, PartitionState],
        vectors: CategoryVectors,
        version: str,
        fire: Fire,
        emit: Emit,
    ) -> None:
        self.config = config
        self.partitions = partitions
        self.vectors = vectors
        self.version = version
        self.fire = fire
        self.emit = emit

    def run(
        self,
        steps: Sequence[Step],
        of_user: Mapping[UserKey, list[int]],
        cache: Mapping[UserKey, UserState],
        windows: MutableMapping[UserKey, Snapshot],
        scores: Scores,
        out: BatchOutput,
    ) -> None:
        """``of_user``: each user's steps (batch_scores.users_of); ``windows``: each user's
        window as pass 2 has reached it (a deadline that fires mid-batch must not see the
        user's later events of the batch)."""
        # Converted once per batch (numpy scalars one at a time are slow); to float32 as in
        # batch.f32: the same rounding, value by value.
        peaks = scores.peak.astype(np.float32).tolist()
        half_lives = scores.half_life_s.astype(np.float32).tolist()
        deadlines = scores.deadline_s.astype(np.float64).tolist()
        rules, grace = self.config.engagement, self.config.grace_ms
        parts, fire = self.partitions, self.fire
        bounds = replaced_below(steps, of_user, grace)
        rows: list[alerting.ScoreRow] = []  # the score messages, built at the end at once
        for step, peak, half_life, deadline_s, bound in zip(
            steps, peaks, half_lives, deadlines, bounds, strict=True
        ):
            ukey = step.ukey
            st, part = cache[ukey], parts[step.partition]
            if part.loading is not None and part.adopt(
                ukey[1], st.deadline_ms, st.dormant_since_ms
            ):
                fire(step.partition, part, step.offset)  # not read yet
            windows[ukey] = step
            if alerting.count_session(st, step, rules):  # the user's newest event
                self._newest(ukey, st, step, (peak, half_life, deadline_s, bound), part, rows)
            max_ts = step.max_ts
            if max_ts > part.max_ts:
                part.max_ts = max_ts
            else:
                max_ts = part.max_ts
            heap = part.heap  # due: its watermark (part.watermark) passed the first deadline
            if heap and heap[0][0] <= (max_ts - grace if max_ts else _NO_WATERMARK):
                fire(step.partition, part, step.offset)
        out.scores += alerting.score_messages(rows, self.version)

    def _newest(
        self,
        ukey: UserKey,
        st: UserState,
        step: Step,
        score: tuple[float, float, float, float],
        part: PartitionState,
        rows: list[alerting.ScoreRow],
    ) -> None:
        """The user's newest event: re-engagement, its score, category drops, the deadline
        (``score``: peak, half-life, seconds to the deadline, and replaced_below's bound);
        its score message's row into ``rows``."""
        peak, half_life, deadline_s, bound = score
        if st.dormant_since_ms:
            back = alerting.reengaged(st, step)
            if back is not None:
                self.emit(st, ukey, step.offset, back)
        before = st.peak_score
        st.peak_score = peak
        st.half_life_s = half_life
        c = self.config
        if may_decay(st.engagement, c.engagement):
            for drop in alerting.category_drops(st, step, c.engagement):
                self.emit(st, ukey, step.offset, self.vectors.relate(drop, st))
        if -_INF < deadline_s < _INF and not st.dormant_since_ms:  # finite: a deadline
            st.deadline_ms = step.last_ts_ms + int(deadline_s * 1000)
            part.schedule(ukey[1], st.deadline_ms, push=st.deadline_ms <= bound)
        else:
            st.deadline_ms = 0
            part.cancel(ukey[1])
        if c.publish_scores and (
            c.score_min_change == 0 or abs(peak - before) > c.score_min_change
        ):
            rows.append(alerting.score_row(ukey, st, step))


def replaced_below(
    steps: Sequence[Step], of_user: Mapping[UserKey, list[int]], grace_ms: int
) -> list[float]:
    """Per step: a deadline it sets above this is replaced by the user's next newest event
    of the batch before it could fire (the partition's watermark there, grace_ms behind its
    newest event, bounds every check in between), so it needs no entry in the heap (inf: the
    user's last such event of the batch, or not a newest one)."""
    bounds = [_INF] * len(steps)
    for idx in of_user.values():
        if len(idx) == 1:
            continue
        later = _INF
        for i in reversed(idx):
            s = steps[i]
            if s.event.ts_ms >= s.last_ts_ms:  # the newest: it sets or cancels the deadline
                bounds[i] = later
                later = s.max_ts - grace_ms
    return bounds
