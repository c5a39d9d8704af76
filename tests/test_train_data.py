"""Training data in: the automatic eval hold-out is deterministic, class weights are read strictly and keep the loss scale."""
from __future__ import annotations

import json

import pytest

from datakit.normalise import load
from tests.conftest import EXAMPLES
from trainkit.data import WeightsError, holdout, normalised_weights, read_class_weights


def test_holdout_is_the_same_for_the_same_seed_and_loses_no_record():
    frame = load(EXAMPLES / "alpaca_en_sample.json").valid
    train_a, eval_a, _ = holdout(frame, seed=7)
    _, eval_b, _ = holdout(frame, seed=7)
    assert eval_a["line"].to_list() == eval_b["line"].to_list()
    assert eval_a.height == 20 and train_a.height == 180
    assert sorted(train_a["line"].to_list() + eval_a["line"].to_list()) == frame["line"].to_list()
    assert holdout(frame, seed=8)[1]["line"].to_list() != eval_a["line"].to_list()


def test_too_few_records_get_no_eval_split_and_say_why():
    frame = load(EXAMPLES / "alpaca_en_sample.json").valid.head(12)
    train, evaluation, why = holdout(frame, seed=0)
    assert evaluation is None and train.height == 12 and "no eval split" in why


def test_class_weights_file_names_its_label_field(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"by": "class", "weights": {"open qa": 1.0, "closed\u00a0qa": 4.0}}))
    assert read_class_weights(p) == ({"open qa": 1.0, "closed\u00a0qa": 4.0}, "class")
    p.write_text(json.dumps({"a": 2, "b": 0.5}))
    assert read_class_weights(p) == ({"a": 2.0, "b": 0.5}, None)


@pytest.mark.parametrize("content,match", [('{"a": -1}', "positive"), ('{"a": "x"}', "positive"), ("[1, 2]", "JSON object"),
                                           ("{", "not valid JSON")])
def test_bad_class_weights_file_is_a_one_line_user_error(tmp_path, content, match):
    p = tmp_path / "w.json"
    p.write_text(content)
    with pytest.raises(WeightsError, match=match):
        read_class_weights(p)


def test_weights_are_rescaled_to_mean_one_over_training_tokens():
    weights, missing = normalised_weights({"rare": 4.0, "common": 1.0}, ["rare", "common", "common", None], [10, 10, 10, 10])
    mean = (weights["rare"] * 10 + weights["common"] * 20 + weights[""] * 10) / 40
    assert mean == pytest.approx(1.0)
    assert weights["rare"] / weights["common"] == pytest.approx(4.0)
    assert missing == ["(none)"]
