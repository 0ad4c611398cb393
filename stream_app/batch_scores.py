"""One scorer call for a batch's applied events, whichever kind of scorer it is."""

from __future__ import annotations

from collections.abc import Mapping

from decay.scoring import AnyScorer, Scores, StepScorer
from decay.state import UserState
from decay.window import Window
from stream_app.batch import Step

UserKey = tuple[int, str]


def score_steps(
    scorer: AnyScorer,
    steps: list[Step],
    cache: Mapping[UserKey, UserState],
    windows: Mapping[UserKey, Window],
    threshold: float,
) -> Scores:
    """The scores right after each step, in steps' order. A window scorer gets every step's
    window at once; an incremental one each user's events in order (see step_rounds)."""
    if isinstance(scorer, StepScorer):
        return step_rounds(scorer, steps, cache, windows, threshold)
    for s in steps:  # a step model's state misses this event now: never resume from it
        cache[(s.partition, s.event.user_id)].model_state = b""
    return scorer.score([s.window for s in steps], threshold)


def step_rounds(
    scorer: StepScorer,
    steps: list[Step],
    cache: Mapping[UserKey, UserState],
    windows: Mapping[UserKey, Window],
    threshold: float,
) -> Scores:
    """The batch's events through an incremental scorer: each user's events in order, from
    the model state in its ``UserState`` (the scorer steps them in rounds, one model call per
    round); then the scores of every step's new state. ``windows``: each user's window as
    loaded, before this batch's events: a user whose stored state is not this model's (a
    rollout) starts from it."""
    of_user: dict[UserKey, list[int]] = {}
    for i, s in enumerate(steps):
        of_user.setdefault((s.partition, s.event.user_id), []).append(i)
    users = [cache[ukey] for ukey in of_user]
    begun = scorer.resume([st.model_state for st in users], [windows.get(k) for k in of_user])
    after = scorer.step(begun, [[steps[i].event for i in idx] for idx in of_user.values()])
    states: list[bytes] = [b""] * len(steps)  # each step's state right after its event
    for st, idx, new in zip(users, of_user.values(), after, strict=True):
        if len(idx) == 1:  # most users have one event in a batch
            states[idx[0]] = new[0]
        else:
            for i, state in zip(idx, new, strict=True):
                states[i] = state
        st.model_state = new[-1]
    return scorer.scores(states, threshold)


def served_threshold(scorer: AnyScorer, configured: float) -> float:
    """The scorer's own dormancy threshold (a lapse model's serving point), else ours."""
    own = getattr(scorer, "threshold", None)
    return configured if own is None else float(own)


def kept_events(scorer: AnyScorer, configured: int | None) -> int:
    """Events kept per user: the configured number, else what the scorer reads."""
    return configured if configured is not None else int(getattr(scorer, "window_events", 64))
