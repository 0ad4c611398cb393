"""Explanations by occlusion: the windows without each event (decay.scoring), one scorer call
for many, the grouping into sentences (decay.explanations), and alerts that carry them."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from decay.alerts import Alert
from decay.events import EventType
from decay.explanations import DAY_MS, Group, explain, groups, sentences
from decay.scoring import ExponentialDecayScorer, Occlusion, Scores, occlusion, without_event
from decay.window import NO_CATEGORY, Window
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.store import MemoryStore

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_714_608_000_000  # 2024-05-02 00:00 UTC
H_S = 24 * 3600.0


class CountingScorer:
    """The baseline scorer, with a log of the calls made to it (method, windows)."""

    def __init__(self) -> None:
        self.inner = ExponentialDecayScorer(H_S)
        self.calls: list[tuple[str, int]] = []

    @property
    def version(self) -> str:
        return self.inner.version

    def score(self, windows: Sequence[Window], threshold: float) -> Scores:
        self.calls.append(("score", len(windows)))
        return self.inner.score(windows, threshold)

    def interest(self, peak: float, half_life_s: float, silent_s: float) -> float:
        return self.inner.interest(peak, half_life_s, silent_s)

    def curves(
        self, windows: Sequence[Window], silent_s: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        self.calls.append(("curves", len(windows)))
        return self.inner.curves(windows, silent_s)


def window(events: list[tuple[int, str, str | None]], n_total: int | None = None) -> Window:
    """(ts, type, category) per event, oldest first."""
    names = tuple(dict.fromkeys(c for _, _, c in events if c is not None))
    return Window(
        ts=np.array([t for t, _, _ in events], dtype=np.int64),
        types=np.array([int(EventType[k.upper()]) for _, k, _ in events], dtype=np.uint8),
        cats=np.array(
            [NO_CATEGORY if c is None else names.index(c) for _, _, c in events], dtype=np.uint8
        ),
        prices=np.zeros(len(events), dtype=np.float32),
        categories=names,
        n_total=len(events) if n_total is None else n_total,
        first_ts_ms=events[0][0],
    )


SHOP = window(
    [
        (T0 - DAY + 5 * HOUR, "view", "coffee"),
        (T0 + 9 * HOUR, "cart", "running shoes"),
        (T0 + 10 * HOUR, "cart", "running shoes"),
        (T0 + 11 * HOUR, "cart", "running shoes"),
        (T0 + DAY + 8 * HOUR, "view", "cookware"),
    ]
)


def test_an_event_left_out_of_a_window() -> None:
    first = without_event(SHOP, 0)
    assert first.ts.tolist() == SHOP.ts[1:].tolist() and first.n_total == 4
    assert first.first_ts_ms == int(SHOP.ts[1])  # the whole history: first seen moves on
    assert first.categories == SHOP.categories and first.cats.tolist() == SHOP.cats[1:].tolist()
    last = without_event(SHOP, 4)
    assert last.last_ts_ms == int(SHOP.ts[3]) and last.types.tolist() == SHOP.types[:4].tolist()
    longer = window([(int(t), "view", None) for t in SHOP.ts], n_total=40)
    assert without_event(longer, 0).first_ts_ms == longer.first_ts_ms  # seen before the window
    assert without_event(longer, 0).n_total == 39


def test_occlusion_scores_every_window_without_each_event_in_one_call() -> None:
    scorer = CountingScorer()
    at = SHOP.last_ts_ms + 2 * DAY
    single = window([(T0, "view", None)])
    found = occlusion(scorer, [(SHOP, at), (single, at), (SHOP, at + DAY)], k=3)
    assert scorer.calls == [("curves", 2 * (1 + 3))]  # both windows, each whole and 3 less
    occ = found[0]
    assert occ is not None and found[1] is None and found[2] is not None
    # the baseline reads only the silence: the last event alone moved interest, by the
    # silence it ended (the events before it change nothing)
    assert occ.first == 2 and occ.interest == pytest.approx(2.0**-2)
    without_last = 2.0 ** (-(at - int(SHOP.ts[3])) / 1000 / H_S)
    assert occ.deltas.tolist() == pytest.approx([0.0, 0.0, 2.0**-2 - without_last])
    assert found[2].interest == pytest.approx(2.0**-3)
    assert occlusion(scorer, [(SHOP, at)], k=0) == [None] and len(scorer.calls) == 1


def occluded(effects: list[float], first: int = 0) -> Occlusion:
    return Occlusion(T0 + 3 * DAY, 0.3, first, 0.3 - np.array(effects))


def test_events_are_grouped_by_type_category_and_day() -> None:
    found = groups(SHOP, occluded([-0.01, 0.05, 0.07, 0.09, 0.02]))
    assert found[0] == Group("cart", "running shoes", T0, 3, pytest.approx(0.21))
    assert [(g.kind, g.category, g.events) for g in found[1:]] == [
        ("view", "cookware", 1),
        ("view", "coffee", 1),
    ]
    assert found[-1].day_ms == T0 - DAY
    # an event that raised interest and one that lowered it are not one group; an event
    # without an effect is in none
    mixed = groups(SHOP, occluded([0.0, 0.05, -0.07, 0.09, 0.02]))
    assert [(g.kind, g.events, round(g.effect, 2)) for g in mixed] == [
        ("cart", 2, 0.14), ("view", 1, 0.02), ("cart", 1, -0.07),
    ]  # fmt: skip
    # only the last two occluded: the others are no group
    assert [g.events for g in groups(SHOP, occluded([0.1, 0.2], first=3))] == [1, 1]


def test_the_sentences_say_what_raised_and_lowered_interest_and_by_how_much() -> None:
    at = T0 + 3 * DAY
    words = explain(SHOP, occluded([-0.04, 0.05, 0.07, 0.09, 0.02]), at)
    assert words == [
        "the 3 cart events in running shoes on May 2 raised interest most (+0.21)",
        "the view event in cookware on May 3 also raised it (+0.02)",
        "the view event in coffee on May 1 lowered it most (-0.04)",
    ]
    assert explain(SHOP, occluded([-0.04, 0.0, 0.0, 0.001, -0.002]), at) == [
        "the view event in coffee on May 1 lowered interest most (-0.04)"
    ]
    assert sentences([], at, 10) == ["none of the last 10 events moved interest by 0.005 or more"]
    later = T0 + 300 * DAY  # another year: the day says which
    assert sentences([Group("purchase", None, T0, 2, 0.1)], later, 2) == [
        "the 2 purchase events on May 2, 2024 raised interest most (+0.10)"
    ]
    first = window([(T0 + HOUR, "view", "books")])
    assert explain(first, None, at) == [
        "the view event in books on May 2 is the only event the score rests on"
    ]
    assert explain(window([(T0, "view", None)], n_total=5), None, at) == []  # nothing to say
    assert DAY_MS == DAY


def test_an_alert_recorded_before_explanations_still_reads() -> None:
    old = {
        "alert_id": "a1", "kind": "dormant", "user_id": "u", "category": None, "score": 0.2,
        "peak_score": 0.9, "half_life_hours": 20.0, "event_time": "2024-05-02T00:00:00.000Z",
        "emitted_at": "2024-05-02T00:00:00.000Z", "model_version": "m", "reasons": ["quiet"],
    }  # fmt: skip
    alert = Alert.from_json(json.dumps(old).encode())
    assert alert.explanation == [] and json.loads(alert.to_json())["explanation"] == []


def rec(offset: int, user: str, ts: int, kind: str = "view", category: str = "tea") -> Record:
    value = {"event_id": f"{user}-{offset}", "user_id": user, "ts": ts, "type": kind,
             "category": category}  # fmt: skip
    return Record(0, offset, user.encode(), json.dumps(value).encode())


def test_a_deadline_that_fires_mid_batch_is_explained_by_the_window_it_fired_on() -> None:
    """User a goes dormant (deadline 48 h after its last event, threshold 0.25) when b's
    event moves the clock on, then comes back in the same batch: the dormant alert's
    explanation reads a's window as it was then, whatever the batch size, and the batch's
    alerts are explained in one scorer call."""
    records = [
        rec(0, "a", T0, "cart", "tea"),
        rec(1, "a", T0 + HOUR, "view", "tea"),
        rec(2, "b", T0 + 3 * DAY),
        rec(3, "a", T0 + 3 * DAY + HOUR, "purchase", "mugs"),
    ]
    results = []
    for size in (1, 4):
        scorer = CountingScorer()
        store = MemoryStore()
        proc = Processor(ProcessorConfig(grace_ms=HOUR, threshold=0.25), scorer, store,
                         lambda: T0 + 9 * DAY)  # fmt: skip
        outs = []
        for i in range(0, len(records), size):
            outs.append(proc.process(records[i : i + size]))
            for (p, k), v in outs[-1].writes.items():
                store.put(p, k, v)
        results.append([json.loads(a.payload) for out in outs for a in out.alerts])
        explained = sum(1 for out in outs if out.alerts)
        assert [c for c, _ in scorer.calls].count("curves") == explained
    assert results[0] == results[1]
    dormant, back = results[0]
    assert dormant["kind"] == "dormant" and back["kind"] == "reengaged"
    assert dormant["explanation"] == [
        "the view event in tea on May 2 raised interest most (+0.01)"
    ]  # 0.25 at the deadline, 2^(-49/24) = 0.243 had the user's last event not come
    assert back["explanation"][0].startswith("the purchase event in mugs on May 5 raised")
