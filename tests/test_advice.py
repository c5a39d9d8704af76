"""Advice from per-class and per-length eval numbers, tied to a real audit of the training data: a class made small
gets "add N records" resting on its volume/balance findings, a big one gets none; a failing class with enough records
points at its conflicting answers; a failing length bucket points at max_length."""
from __future__ import annotations

import json
from statistics import median

import pytest

from datakit.audit import run_audit
from datakit.config import build_config
from tests.conftest import EXAMPLES
from trainkit.advice import AuditFacts, advise, class_target, lines_by_label

FAMILIES = ["volume", "balance", "duplicate", "near_duplicate", "length"]


def group(name, loss, records=5, tokens=500):
    return {"name": name, "records": records, "tokens": tokens, "loss": loss, "perplexity": 2.718281828 ** loss}


def evaluation(by_label, by_length=None, **extra):
    every = by_label or by_length
    tokens = sum(g["tokens"] for g in every)
    return {"loss": sum(g["loss"] * g["tokens"] for g in every) / tokens, "label_field": "category", "max_length": 512,
            "over_length": [], "by_label": by_label, "by_length": by_length or [group("<64", 1.0)]} | extra


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The 200 real Alpaca records: 'big' 100, 'mid' 95 with 3 planted conflicting answers, 'small' 5."""
    records = json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8"))
    for i, rec in enumerate(records):
        rec["category"] = "big" if i < 100 else "mid" if i < 195 else "small"
    for i in range(3):  # the same prompt as a 'mid' record, another answer
        records.append(records[150 + i] | {"output": records[10 + i]["output"]})  # 150+: 'mid' records
    path = tmp_path_factory.mktemp("advice") / "classes.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    run = run_audit(path, build_config(None, only=FAMILIES, label_field="category"))
    frame = run.dataset.valid
    counts = dict(zip(*frame.group_by("label").len().sort("label").to_dict(as_series=False).values()))
    return AuditFacts.of(run.report), counts, lines_by_label(frame["label"].to_list(), frame["line"].to_list())


def test_a_deliberately_small_class_that_fails_gets_add_n_records_and_the_big_one_none(audited):
    audit, counts, lines = audited
    assert counts["small"] == 5 and any(rule == "volume.class_too_small" and ex == "small" for rule, _, ex in audit.findings)
    e = evaluation([group("small", 3.0), group("big", 1.5, records=30, tokens=3000), group("mid", 1.6)])
    advice = advise(e, train_counts=counts, lines_of=lines, audit=audit)
    assert [a["subject"] for a in advice] == ["small"]
    (a,) = advice
    target = class_target("small", counts, audit.min_per_class)
    assert target == int(min(100, median([counts["big"], counts["mid"]])))  # the others' median, within 10-100
    assert a["kind"] == "add_records" and a["text"].startswith(f"add {target - 5} records of class 'small' (it has 5")
    facts = " | ".join(a["rests_on"])
    assert "volume.class_too_small: small" in facts and "balance.class_too_small: small" in facts
    assert "5 training record(s) of 'small' (category)" in facts and "10-100 records per class" in facts
    assert "eval loss 3.000" in facts


def test_the_big_class_failing_is_not_told_to_add_records(audited):
    audit, counts, lines = audited
    e = evaluation([group("small", 1.0), group("big", 3.0, records=30, tokens=3000), group("mid", 1.0)])
    (a,) = advise(e, train_counts=counts, lines_of=lines, audit=audit)
    assert a["subject"] == "big" and a["kind"] != "add_records" and not a["text"].startswith("add ")


def test_a_failing_class_with_enough_records_points_at_its_conflicting_answers(audited):
    audit, counts, lines = audited
    e = evaluation([group("small", 1.0), group("big", 1.0, records=30, tokens=3000), group("mid", 2.5)])
    (a,) = advise(e, train_counts=counts, lines_of=lines, audit=audit)
    assert a["subject"] == "mid" and a["kind"] == "inspect_findings"
    assert "duplicate.conflicting_output" in a["text"]
    assert any(f.startswith("duplicate.conflicting_output: ") and "of 'mid'" in f for f in a["rests_on"])


def test_a_failing_length_bucket_points_at_max_length(audited):
    audit, counts, lines = audited
    lengths = [group("<64", 1.0, tokens=2000), group("512-1023", 2.4, records=3, tokens=300)]
    e = evaluation([], by_length=lengths, over_length=[7, 9], label_field=None)
    (a,) = advise(e, train_counts=counts, lines_of=lines, audit=audit)
    assert a["kind"] == "max_length" and a["subject"] == "512-1023"
    assert "--max-length" in a["text"] and "max_length 512 tokens" in a["rests_on"]
    assert "2 eval record(s) over max_length, left out of the eval" in a["rests_on"]


def test_no_group_far_above_the_rest_gives_no_advice(audited):
    audit, counts, lines = audited
    e = evaluation([group("small", 1.1), group("big", 1.0, records=30, tokens=3000), group("mid", 1.05)])
    assert advise(e, train_counts=counts, lines_of=lines, audit=audit) == []


def test_a_class_too_small_to_have_eval_records_is_told_to_grow(audited):
    audit, counts, lines = audited
    e = evaluation([group("big", 1.0, records=30, tokens=3000), group("mid", 1.0)])  # 'small' held nothing out
    (a,) = advise(e, train_counts=counts, lines_of=lines, audit=audit)
    assert a["subject"] == "small" and a["kind"] == "add_records" and "too few to hold any out" in a["text"]
    assert "no eval record of this class" in a["rests_on"] and "volume.class_too_small: small" in a["rests_on"]
