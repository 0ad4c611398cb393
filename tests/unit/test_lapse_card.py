"""A step model's card: the worker serves the state layout it knows and refuses any other."""

import dataclasses

import pytest

from decay.card import ModelCard
from decay.features import FeatureSpec
from stream_app.lapse_scorer import (
    ModelMismatchError,
    UnknownStateLayoutError,
    check_step_card,
    is_step_model,
)

SPEC = FeatureSpec()
LAYOUT = {
    "h": 16,
    "c": 16,
    "counters": ["n_events", "first_ts_ms", "last_ts_ms", "amount_sum"],
    "static": ["log_repeats", "log_recency", "log_mean_amount"],
    "unit_h": 168.0,
    "dropout": "fixed",
    "params": ["k0", "b0", "p", "kappa"],
    "heads": "k = k0 + n_events - 1, beta = b0 + t_x",
}
CARD = ModelCard(
    feature_spec_version=SPEC.version,
    seq_len=0,
    cat_buckets=SPEC.cat_buckets,
    feature_names=SPEC.feature_names,
    bin_edges_h=(),
    horizon_h=168.0,
    input_names=("event", "h", "c", "static"),
    output_names=("h_next", "c_next", "params"),
    arch="lstm-btyd-step",
    model_version="lstm-btyd-fs1-test",
    created_at="2026-12-01T00:00:00+00:00",
    code_version="test",
    state_layout=LAYOUT,
)


def test_the_known_layout_is_served() -> None:
    check_step_card(CARD, SPEC)
    assert is_step_model(CARD)
    assert not is_step_model(dataclasses.replace(CARD, arch="lstm-hazard", state_layout={}))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"gru_h": 16}, "unknown ['gru_h']"),
        ({"c": 8}, "one unit count"),
        ({"counters": ["n_events", "last_ts_ms"]}, "counters"),
        ({"static": ["log_repeats"]}, "static"),
        ({"dropout": "weibull"}, "dropout 'weibull'"),
        ({"params": ["k0", "b0", "p"]}, "params"),
        ({"unit_h": 0}, "unit_h"),
    ],
)
def test_an_unknown_state_layout_is_refused_saying_what_differs(
    change: dict[str, object], says: str
) -> None:
    card = dataclasses.replace(CARD, state_layout={**LAYOUT, **change})
    with pytest.raises(UnknownStateLayoutError, match="state layout this worker does not know"):
        check_step_card(card, SPEC)
    with pytest.raises(UnknownStateLayoutError, match=says.replace("[", r"\[").replace("]", r"\]")):
        check_step_card(card, SPEC)
    missing = {k: v for k, v in LAYOUT.items() if k != "counters"}
    with pytest.raises(UnknownStateLayoutError, match=r"missing \['counters'\]"):
        check_step_card(dataclasses.replace(CARD, state_layout=missing), SPEC)


def test_a_step_model_of_other_features_is_refused() -> None:
    with pytest.raises(ModelMismatchError, match="category buckets 8 != 16"):
        check_step_card(dataclasses.replace(CARD, cat_buckets=8), SPEC)
    with pytest.raises(ModelMismatchError, match="graph lacks"):
        check_step_card(dataclasses.replace(CARD, output_names=("h_next", "params")), SPEC)
