"""trainkit's default eval split is leakage-free: a near-duplicate cluster, a shared prompt or a copied record of the
audit gate never has members on both sides; with labels every class keeps its share of the eval records."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from datakit.audit import run_audit
from datakit.config import build_config
from tests.conftest import EXAMPLES
from tests.planted import _edited
from trainkit.data import holdout


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The 200 real Alpaca records with 30 near copies (a word dropped and one doubled) and 10 exact copies planted,
    each with a label; audited as the gate audits (only the families the grouping reads, to stay quick)."""
    rng = random.Random(3)
    base = json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8"))
    for i, rec in enumerate(base):
        rec["category"] = ("small", "big", "big", "big")[i % 4]
    near = [rec | {"output": _edited(rec["output"], rng)} for rec in rng.sample(base, 30)]
    copies = [dict(rec) for rec in rng.sample(base, 10)]
    records = base + near + copies
    rng.shuffle(records)
    path = tmp_path_factory.mktemp("split") / "planted.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    run = run_audit(path, build_config(None, only=["near_duplicate", "duplicate"], label_field="category"))
    return run


def _sides(frame_train, frame_eval, groups):
    return ({int(groups[i]) for i in frame_train["id"].to_list()}, {int(groups[i]) for i in frame_eval["id"].to_list()})


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
def test_no_group_of_the_audit_straddles_train_and_eval(planted, seed):
    frame, groups = planted.dataset.valid, planted.leak_groups
    sizes = np.bincount(groups[frame["id"].to_numpy()])
    assert (sizes > 1).sum() >= 35, "the planted copies and near copies were not grouped by the audit"
    train, evaluation, why = holdout(frame, seed, groups)
    assert train.height + evaluation.height == frame.height
    assert sorted(train["line"].to_list() + evaluation["line"].to_list()) == frame["line"].to_list()
    in_train, in_eval = _sides(train, evaluation, groups)
    assert not in_train & in_eval
    assert 18 <= evaluation.height <= 30
    assert "kept whole" in why and "datakit split" not in why


def test_a_random_split_of_the_same_records_would_straddle(planted):
    """The check above can fail: holding out records one by one (no groups) puts some planted pair on both sides."""
    frame, groups = planted.dataset.valid, planted.leak_groups
    straddles = 0
    for seed in range(4):
        train, evaluation, _ = holdout(frame, seed)
        in_train, in_eval = _sides(train, evaluation, groups)
        straddles += len(in_train & in_eval)
    assert straddles > 0


def test_every_label_keeps_its_share_of_the_eval_records(planted):
    frame, groups = planted.dataset.valid, planted.leak_groups
    _, evaluation, why = holdout(frame, 0, groups)
    labels = evaluation["label"].to_list()
    assert labels.count("small") >= 3 and labels.count("big") >= 10
    assert "the same share of each label" in why


def test_records_that_all_share_one_prompt_get_no_eval_split_and_say_why():
    import polars as pl

    from datakit.normalise import load

    frame = load(EXAMPLES / "alpaca_en_sample.json").valid
    one_group = np.zeros(frame["id"].max() + 1, dtype=np.int64)  # as if every record shared its prompt
    train, evaluation, why = holdout(frame, 0, one_group)
    assert evaluation is None and train.height == frame.height and "no eval split" in why and "--eval" in why
    assert isinstance(train, pl.DataFrame)
