"""The user page's data, with each scorer: its clock, the curve through the deadline and the
dormant alert, the period it covers, and the alerts' related categories and explanations."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from decay.scoring import AnyScorer, ExponentialDecayScorer
from decay.state import StoredAlert, UserState, decode_state
from stream_app.onnx_scorer import OnnxScorer
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.queries import user_clock
from stream_app.rollout import load_scorer, shipped_model
from stream_app.store import MemoryStore
from stream_app.time_axis import date_ticks
from stream_app.ui import user_page
from stream_app.user_view import parse_ms, user_view

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 867_758_400_000  # 1997-07-01 12:00 UTC: replayed history, decades behind the wall clock
WALL = 1_780_000_000_000
THRESHOLD = 0.2


def scorers() -> list[AnyScorer]:
    from decay.settings import Settings

    lapse = load_scorer(Settings(model_path=shipped_model("cdnow-lapse.onnx")))
    return [ExponentialDecayScorer(48 * 3600.0), OnnxScorer(shipped_model()), lapse]


def replay(scorer: AnyScorer) -> tuple[Processor, MemoryStore]:
    """User "a": 80 purchases (quantities 1-3) over 80 days, then silence while "b" moves the
    partition's clock on for a year: "a" goes dormant."""
    store = MemoryStore()
    proc = Processor(
        ProcessorConfig(grace_ms=HOUR, threshold=THRESHOLD), scorer, store, lambda: WALL
    )
    events = [
        {"user_id": "a", "ts": T0 + i * DAY, "type": "purchase", "category": "🎵 music",
         "price": 10.0, "quantity": 1 + i % 3}
        for i in range(80)
    ] + [{"user_id": "b", "ts": T0 + d * DAY, "type": "view"}
         for d in range(80, 445, 5)]  # fmt: skip
    records = [
        Record(0, i, e["user_id"].encode(), json.dumps({"event_id": f"e{i}", **e}).encode())
        for i, e in enumerate(sorted(events, key=lambda e: e["ts"]))
    ]
    for i in range(0, len(records), 50):
        out = proc.process(records[i : i + 50])
        for (p, k), v in out.writes.items():
            store.put(p, k, v)
    return proc, store


@pytest.mark.parametrize("scorer", scorers(), ids=lambda s: type(s).__name__)
def test_a_dormant_users_curve_crosses_the_threshold_where_the_alert_fired(
    scorer: AnyScorer,
) -> None:
    proc, store = replay(scorer)
    raw = store.get(0, "a")
    assert raw is not None
    st = decode_state(raw)
    # the scorer's own window and threshold (the lapse model's: 10 events, its card's 0.125)
    kept, threshold = proc.max_events, proc.threshold
    assert st.dormant_since_ms and st.n_total == 80 and st.n_events == kept
    clock = user_clock(0, proc.newest_event_ms(0), WALL)
    assert clock.event_time and clock.now_ms == T0 + 440 * DAY
    view = user_view("a", st, scorer, threshold, clock)
    crossing = view.curve.at(st.dormant_since_ms)
    assert crossing == pytest.approx(threshold, abs=2e-3)
    assert view.curve.ts[-1] >= clock.now_ms > st.dormant_since_ms  # drawn through it, to now
    assert view.interest_now == view.curve.at(clock.now_ms)
    page = user_page("a", st, scorer, threshold, clock)
    # the sim-trained hazard model's open last bin brings the curve back after 60 days
    if isinstance(scorer, OnnxScorer):
        assert view.rebound_ms is not None and view.rebound_ms > st.dormant_since_ms
        assert 'class="note rebound"' in page and view.interest_now > threshold
    else:
        assert view.rebound_ms is None and view.interest_now < threshold
    assert view.start_ms == st.first_ts_ms == T0  # the whole period, from first seen
    dormant = [m for m in view.marks if m.kind == "dormant"]
    assert dormant[0].ts_ms == st.dormant_since_ms and dormant[0].value == crossing
    assert "the event time of partition 0" in page and f"{80 - kept} earlier events" in page
    assert "🎵 music" in page and "The window's events in detail" in page


def test_an_active_users_interest_is_read_on_event_time_and_the_curve_runs_to_the_deadline() -> (
    None
):
    scorer = OnnxScorer(shipped_model())
    proc, store = replay(scorer)
    st = decode_state(store.get(0, "b") or b"")
    clock = user_clock(0, proc.newest_event_ms(0), WALL)
    view = user_view("b", st, scorer, THRESHOLD, clock)
    assert st.deadline_ms > clock.now_ms == st.last_ts_ms
    assert view.interest_now == pytest.approx(st.peak_score, abs=1e-3) and view.interest_now > 0.5
    assert view.end_ms == st.deadline_ms
    assert view.curve.at(st.deadline_ms) == pytest.approx(THRESHOLD, abs=2e-3)
    # read at the wall clock instead, the replayed user would be at 0 (with a model whose
    # curve keeps falling: the hazard model's climbs back, see above)
    lapse = scorers()[2]
    proc, store = replay(lapse)
    st = decode_state(store.get(0, "b") or b"")
    now = user_view("b", st, lapse, THRESHOLD, user_clock(0, proc.newest_event_ms(0), WALL))
    wall = user_view("b", st, lapse, THRESHOLD, user_clock(0, None, WALL))
    assert now.interest_now > 0.5 and wall.interest_now < 0.01
    assert "the wall clock" in wall.clock.words() and "event time" in now.clock.words()


def test_a_partition_not_yet_active_reads_its_clock_from_the_store() -> None:
    proc, store = replay(ExponentialDecayScorer(48 * 3600.0))
    fresh = Processor(ProcessorConfig(), proc.scorer, store, lambda: WALL)
    assert fresh.newest_event_ms(0) == proc.newest_event_ms(0) == T0 + 440 * DAY
    assert fresh.newest_event_ms(1) is None


def test_related_categories_and_explanations_are_shown_when_alerts_carry_them() -> None:
    scorer = ExponentialDecayScorer(48 * 3600.0)
    proc, store = replay(scorer)
    st: UserState = decode_state(store.get(0, "a") or b"")
    plain = user_page("a", st, scorer, THRESHOLD, user_clock(0, proc.newest_event_ms(0), WALL))
    assert 'class="related"' not in plain
    # the dormant alert says which events moved its score (stream_app.explaining)
    assert json.loads(st.alerts[-1].payload)["explanation"] and 'class="explanation"' in plain
    alert = json.loads(st.alerts[-1].payload) | {
        "related": [{"category": "jazz & <blues>", "score": 0.42}],
        "explanation": "the 3 purchases in music on Sep 2 raised interest most",
    }
    st.alerts.append(StoredAlert(0, json.dumps(alert).encode()))
    page = user_page("a", st, scorer, THRESHOLD, user_clock(0, proc.newest_event_ms(0), WALL))
    assert "related categories still strong: jazz &amp; &lt;blues&gt; (0.42)" in page
    assert "why: the 3 purchases in music on Sep 2 raised interest most" in page


def test_date_ticks_are_round_dates_within_the_span() -> None:
    def ms(*args: int) -> int:
        return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)

    months = date_ticks(ms(1997, 1, 23), ms(1998, 6, 30), most=10)
    assert [label for _, label in months] == [
        "1997-03", "1997-05", "1997-07", "1997-09", "1997-11", "1998-01", "1998-03", "1998-05",
    ]  # fmt: skip
    days = date_ticks(ms(2024, 1, 3, 12), ms(2024, 1, 9), most=8)
    assert [label for _, label in days][:2] == ["2024-01-04", "2024-01-05"]
    assert all(ms(2024, 1, 3, 12) <= t <= ms(2024, 1, 9) for t, _ in days) and len(days) <= 8
    hours = date_ticks(ms(2024, 1, 3), ms(2024, 1, 3, 5))
    assert hours[0][1] == "01-03 00:00" and len(hours) == 6
    assert parse_ms("1997-07-01T12:00:00.000Z") == T0
