"""A worker whose scorer raises once it has scored ``FAIL_AFTER`` windows, and which then takes
``CRASH_DELAY_S`` seconds to stop: run as a script by the integration tests to check that an
exception inside the agent loses nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from faust import Worker

from decay.scoring import Scorer, Scores
from decay.settings import Settings
from decay.window import Window
from stream_app.app import create_app
from stream_app.rollout import load_scorer


class InjectedFault(RuntimeError):
    pass


@dataclass
class FailingScorer:
    inner: Scorer
    fail_after: int
    scored: list[int] = field(default_factory=lambda: [0])

    @property
    def version(self) -> str:
        return self.inner.version

    def score(self, windows: Sequence[Window], threshold: float) -> Scores:
        self.scored[0] += len(windows)
        if self.scored[0] > self.fail_after:
            raise InjectedFault(f"injected after {self.scored[0]} windows")
        return self.inner.score(windows, threshold)

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
        return self.inner.interest(peak, half_life_s, silent_s)

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:  # the alerts' explanations and the pages
        return self.inner.curves(windows, silent_s)


def main() -> None:
    settings = Settings()
    scorer = FailingScorer(load_scorer(settings), int(os.environ["FAIL_AFTER"]))
    built = create_app(settings, scorer=scorer)
    # A worker that takes its time to stop (a loaded machine): its timers go on meanwhile.
    delay = float(os.environ.get("CRASH_DELAY_S", "0"))
    crash = built.app.crash

    async def slow_crash(reason: BaseException) -> None:
        await asyncio.sleep(delay)
        await crash(reason)

    built.app.crash = slow_crash  # type: ignore[method-assign]
    Worker(built.app, loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
