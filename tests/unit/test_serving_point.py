"""A lapse model's serving point: the settings win over the card's, the card's over its
training horizon; an impossible one is refused."""

import dataclasses

import pytest
from pydantic import ValidationError

from decay.settings import Settings
from stream_app.lapse_scorer import ModelMismatchError, ServingPoint
from tests.unit.test_lapse_card import CARD

SERVED = dataclasses.replace(CARD, serving={"horizon_h": 1680.0, "threshold": 0.125})


def test_the_cards_serving_point_is_served_unless_the_settings_say_otherwise() -> None:
    assert ServingPoint.of(CARD) == ServingPoint(168.0, None, "the card")
    assert ServingPoint.of(SERVED) == ServingPoint(1680.0, 0.125, "the card's serving point")
    assert ServingPoint.of(SERVED, horizon_h=24.0) == ServingPoint(24.0, 0.125, "settings")
    assert ServingPoint.of(SERVED, threshold=0.3) == ServingPoint(1680.0, 0.3, "settings")


@pytest.mark.parametrize("serving", [{"horizon_h": -1.0}, {"threshold": 1.5}, {"horizon_h": "x"}])
def test_a_card_with_an_impossible_serving_point_is_refused(serving: dict[str, object]) -> None:
    with pytest.raises(ModelMismatchError, match="serving"):
        ServingPoint.of(dataclasses.replace(CARD, serving=serving))


@pytest.mark.parametrize(
    ("field", "value"), [("interest_horizon_days", 0), ("threshold", 1.0), ("window_events", 0)]
)
def test_the_serving_settings_are_validated(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})
    assert Settings().dormancy_threshold == 0.2


def test_the_worker_serves_the_shipped_cdnow_model_at_its_cards_point() -> None:
    from stream_app.processor import Processor, ProcessorConfig
    from stream_app.rollout import load_scorer, shipped_model
    from stream_app.store import MemoryStore

    path = shipped_model("cdnow-lapse.onnx")
    scorer = load_scorer(Settings(model_path=path))
    assert (scorer.serving.horizon_h, scorer.threshold) == (1680.0, 0.125)  # type: ignore[union-attr]
    assert scorer.window_events == 10  # type: ignore[union-attr]
    proc = Processor(ProcessorConfig(), scorer, MemoryStore(), lambda: 0)
    assert (proc.threshold, proc.max_events) == (0.125, 10)
    mine = load_scorer(Settings(model_path=path, interest_horizon_days=30, threshold=0.3))
    assert (mine.serving.horizon_h, mine.threshold) == (720.0, 0.3)  # type: ignore[union-attr]
    window_model = load_scorer(Settings())
    proc = Processor(ProcessorConfig(threshold=0.25), window_model, MemoryStore(), lambda: 0)
    assert (proc.threshold, proc.max_events) == (0.25, 64)
