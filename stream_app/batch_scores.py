"""One scorer call for a batch's applied events, whichever kind of scorer it is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast, overload

from decay.scoring import AnyScorer, Scorer, Scores, StepScorer
from decay.state import UserState
from decay.window import Window
from stream_app.batch import Step

UserKey = tuple[int, str]


def users_of(steps: Sequence[Step]) -> dict[UserKey, list[int]]:
    """Each user's steps (their positions, in order); the users in order of their first."""
    of_user: dict[UserKey, list[int]] = {}
    for i, s in enumerate(steps):
        idx = of_user.get(s.ukey)
        if idx is None:
            of_user[s.ukey] = [i]
        else:
            idx.append(i)
    return of_user


def score_steps(
    scorer: AnyScorer,
    incremental: bool,
    steps: list[Step],
    of_user: Mapping[UserKey, list[int]],
    cache: Mapping[UserKey, UserState],
    windows: Mapping[UserKey, Window],
    threshold: float,
) -> Scores:
    """The scores right after each step, in steps' order (``of_user``: users_of(steps)). A
    window scorer gets every step's window at once; an incremental one (``incremental``: the
    scorer is a StepScorer) each user's events in order (see step_rounds)."""
    if incremental:
        return step_rounds(cast(StepScorer, scorer), steps, of_user, cache, windows, threshold)
    for ukey in of_user:  # a step model's state misses this event now: never resume from it
        cache[ukey].model_state = b""
    return cast(Scorer, scorer).score([s.window for s in steps], threshold)


def step_rounds(
    scorer: StepScorer,
    steps: list[Step],
    of_user: Mapping[UserKey, list[int]],
    cache: Mapping[UserKey, UserState],
    windows: Mapping[UserKey, Window],
    threshold: float,
) -> Scores:
    """The batch's events through an incremental scorer: each user's events in order, from
    the model state in its ``UserState`` (the scorer steps them in rounds, one model call per
    round); then the scores of every step's new state. ``windows``: each user's window as
    loaded, before this batch's events: a user whose stored state is not this model's (a
    rollout) starts from it."""
    users = [cache[ukey] for ukey in of_user]
    begun = scorer.resume([st.model_state for st in users], Loaded(windows, list(of_user)))
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


class Loaded(Sequence[Window | None]):
    """The users' windows as loaded (None: a new user), each made when read: ``resume`` reads
    only those of users whose stored state is not the model's."""

    def __init__(self, windows: Mapping[UserKey, Window], users: list[UserKey]) -> None:
        self._windows = windows
        self._users = users

    def __len__(self) -> int:
        return len(self._users)

    @overload
    def __getitem__(self, i: int) -> Window | None: ...

    @overload
    def __getitem__(self, i: slice) -> list[Window | None]: ...

    def __getitem__(self, i: int | slice) -> Window | list[Window | None] | None:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        return self._windows.get(self._users[i])


def served_threshold(scorer: AnyScorer, configured: float) -> float:
    """The scorer's own dormancy threshold (a lapse model's serving point), else ours."""
    own = getattr(scorer, "threshold", None)
    return configured if own is None else float(own)


def kept_events(scorer: AnyScorer, configured: int | None) -> int:
    """Events kept per user: the configured number, else what the scorer reads."""
    return configured if configured is not None else int(getattr(scorer, "window_events", 64))
