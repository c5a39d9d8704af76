"""balance.*: class distribution, small classes, label spellings and missing labels, on hand-made and real data.

Expected counts on real data are computed here with plain `json` + `Counter`, independently of datakit.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from datakit.config import build_config
from datakit.normalise import load
from tests.conftest import EXAMPLES, audit_json, lines_for, run_rule
from validators.balance import BalanceRules

NBSP_QA = "closed\u00a0qa"


def write(tmp_path: Path, labels: list[str | None], field: str = "class") -> Path:
    """One distinct Alpaca record per label (None: the field is absent), line i+1 for labels[i]."""
    path = tmp_path / "d.jsonl"
    rows = []
    for i, label in enumerate(labels):
        rec = {"instruction": f"Question number {i} about topic {i * 7}?", "output": f"Answer number {i}, complete."}
        if label is not None:
            rec[field] = label
        rows.append(json.dumps(rec, ensure_ascii=False))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def check(path: Path, label_field: str | None = "class", **settings) -> tuple[list[dict], dict]:
    """Findings (as dicts) and summary of the balance family alone."""
    found, summary = run_rule(BalanceRules(), load(path, label_field), build_config(label_field=label_field, **settings))
    return found.to_dicts(), summary


def codes(found: list[dict]) -> Counter:
    return Counter(f["rule"] for f in found)


def test_an_80_15_5_split_is_unbalanced_and_names_the_largest_and_smallest(tmp_path):
    found, summary = check(write(tmp_path, ["a"] * 80 + ["b"] * 15 + ["c"] * 5))
    imbalanced = [f for f in found if f["rule"] == "balance.imbalanced"]
    assert len(imbalanced) == 1
    assert "unbalanced" in imbalanced[0]["message"] and "'a' has 80.0%" in imbalanced[0]["message"]
    assert "'c' 5.0%" in imbalanced[0]["message"] and "datakit balance" in imbalanced[0]["message"]
    assert summary["classes"] == {"a": 80, "b": 15, "c": 5}
    assert summary["imbalance_ratio"] == 16.0 and summary["verdict"].startswith("unbalanced")


def test_roughly_even_classes_are_not_flagged(tmp_path):
    found, summary = check(write(tmp_path, ["a"] * 34 + ["b"] * 33 + ["c"] * 33))
    assert found == []
    assert summary["verdict"].startswith("balanced enough")


def test_the_imbalance_limit_is_configurable(tmp_path):
    path = write(tmp_path, ["a"] * 40 + ["b"] * 20)
    assert "balance.imbalanced" not in codes(check(path)[0])
    assert codes(check(path, balance={"max_imbalance_ratio": 1.5})[0])["balance.imbalanced"] == 1


def test_a_class_under_the_minimum_is_flagged_and_one_at_it_is_not(tmp_path):
    found, _ = check(write(tmp_path, ["big"] * 25 + ["small"] * 3 + ["enough"] * 10))
    small = [f for f in found if f["rule"] == "balance.class_too_small"]
    assert [f["excerpt"] for f in small] == ["small"]
    assert "3 record(s), under the per-class minimum of 10" in small[0]["message"]


def test_a_label_spelt_with_a_non_breaking_space_is_a_variant_on_its_own_lines(tmp_path):
    labels = ["closed qa"] * 12 + [NBSP_QA] * 3 + ["open qa"] * 12 + ["Open QA"]
    found, summary = check(write(tmp_path, labels))
    variants = [f for f in found if f["rule"] == "balance.label_variant"]
    assert sorted(f["line"] for f in variants) == [13, 14, 15, 28]
    nbsp = next(f for f in variants if f["line"] == 13)
    assert "closed\\u00a0qa" in nbsp["message"] and "no-break space" in nbsp["message"]
    assert next(f for f in variants if f["line"] == 28)["detail"] == "canonical: open qa"
    assert summary["variants"] == {NBSP_QA: "closed qa", "Open QA": "open qa"}
    assert summary["shown"] == {NBSP_QA: "closed\\u00a0qa"}


def test_records_without_a_label_are_flagged_by_line(tmp_path):
    found, summary = check(write(tmp_path, ["a"] * 10 + [None, "  "] + ["b"] * 10))
    assert sorted(f["line"] for f in found if f["rule"] == "balance.missing_label") == [11, 12]
    assert summary["missing"] == 2 and summary["labelled"] == 20


def test_a_label_field_no_record_has_is_one_finding_naming_the_fields_seen(tmp_path):
    found, _ = check(write(tmp_path, ["a"] * 5, field="category"), label_field="class")
    assert len(found) == 1 and found[0]["line"] is None
    assert "no record has a non-empty 'class' field" in found[0]["message"]
    assert "instruction, output, category" in found[0]["message"]


def test_without_a_label_field_nothing_is_flagged_and_the_summary_shows_openings(tmp_path):
    path = tmp_path / "d.jsonl"
    prompts = ["Write a poem about rain."] * 3 + ["Explain gravity."] * 2 + ["如何学习数学？"]
    path.write_text("\n".join(json.dumps({"instruction": p + f" ({i})", "output": "An answer."}, ensure_ascii=False)
                              for i, p in enumerate(prompts)) + "\n", encoding="utf-8")
    found, summary = check(path, label_field=None)
    assert found == []
    assert summary["label_field"] is None
    assert summary["openings"] == {"write": 3, "explain": 2, "如何": 1}


def test_bundled_belle_sample_counts_every_class_as_written():
    expected = Counter(json.loads(line)["class"] for line in (EXAMPLES / "belle_sample.jsonl").open(encoding="utf-8")
                       if line.strip())
    found, summary = check(EXAMPLES / "belle_sample.jsonl")
    assert summary["classes"] == dict(expected)
    assert summary["classes"][NBSP_QA] == 15
    assert codes(found)["balance.label_variant"] == expected[NBSP_QA]


def test_cli_reports_alpaca_eval_sources_with_their_real_counts(tmp_path):
    expected = Counter(r["dataset"] for r in json.loads((EXAMPLES / "alpaca_eval_sample.json").read_text()))
    proc, report = audit_json(tmp_path, str(EXAMPLES / "alpaca_eval_sample.json"), "--label-field", "dataset",
                              "--only", "balance", "--no-html", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    summary = next(f["summary"] for f in report["families"] if f["family"] == "balance")
    assert summary["classes"] == dict(expected)
    assert lines_for(report, "balance.label_variant") == []
    # selfinstruct 84 vs vicuna 27: a ratio of 3.1, just over the limit of 3
    assert [f["detail"] for f in report["findings"] if f["rule"] == "balance.imbalanced"] == ["ratio 3.1 > 3"]


@pytest.mark.parametrize(("name", "field"), [("alpaca_eval/alpaca_eval_outputs.json", "dataset"),
                                             ("belle/eval_set.json", "class")])
def test_full_real_sets_are_counted_exactly(shared_data, tmp_path, name, field):
    text = (shared_data / name).read_text(encoding="utf-8")
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    proc, report = audit_json(tmp_path, str(shared_data / name), "--label-field", field, "--only", "balance",
                              "--no-html", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    summary = next(f["summary"] for f in report["families"] if f["family"] == "balance")
    assert summary["classes"] == dict(Counter(r[field] for r in records))
    if field == "class":
        assert summary["classes"][NBSP_QA] == 52
        assert len(lines_for(report, "balance.label_variant")) == 52
