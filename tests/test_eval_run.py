"""The end of a training run and `trainkit eval`, on the tiny model: the eval loss per label in run_report.json and on
the page, advice for a class made deliberately small and none for the big one, and the eval command's own report
(with base-vs-adapter answers) written through the real CLI."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.trainkit_helpers import alpaca_sample, identity_records, write_jsonl
from trainkit import train


@pytest.fixture(scope="module")
def labelled_run(tiny_model, tmp_path_factory):
    """72 identity records (class 'who', short answers the model learns fast) and 12 Alpaca records (class 'task',
    different and longer): the small class is the one the model fails."""
    tmp = tmp_path_factory.mktemp("labelled-run")
    records = [r | {"kind": "who"} for r in identity_records(72)] + [r | {"kind": "task"} for r in alpaca_sample(12)]
    data = write_jsonl(tmp / "labelled.jsonl", records)
    result = train(data, tiny_model, tmp / "run", method="full", max_steps=60, learning_rate=3e-3, label_field="kind",
                   allow_findings=True, compare_base=2, progress=False)
    return result, json.loads((result.run_dir / "run_report.json").read_text())


def test_the_run_report_has_the_eval_loss_per_label_and_it_adds_up(labelled_run):
    _, report = labelled_run
    e = report["evaluation"]
    by = {g["name"]: g for g in e["by_label"]}
    assert set(by) == {"who", "task"}
    assert sum(g["records"] for g in by.values()) == e["records"] == report["records"]["eval"]
    assert e["loss"] == pytest.approx(sum(g["loss"] * g["tokens"] for g in by.values()) / e["tokens"], rel=1e-6)
    assert by["task"]["loss"] > by["who"]["loss"]
    assert len(report["eval_lines"]) == report["records"]["eval"]
    assert e["worst"] and all("answer" in w for w in e["worst"])
    compared = e["compare_base"]
    assert len(compared) == 2 and e["base_answers_with"].startswith("base model")
    assert any(c["base"] != c["adapter"] for c in compared)


def test_advice_names_the_small_class_with_a_count_and_not_the_big_one(labelled_run):
    result, report = labelled_run
    advice = report["evaluation"]["advice"]
    assert result.advice == [a["text"] for a in advice]  # what `trainkit train` prints
    about = {a["subject"]: a for a in advice if a["kind"] in ("add_records", "inspect_findings", "inspect_records")}
    assert "task" in about and "who" not in about
    task = about["task"]
    assert task["kind"] == "add_records"
    who = 72 - sum(1 for g in report["evaluation"]["by_label"] if g["name"] == "who" for _ in range(g["records"]))
    have = 12 - next(g["records"] for g in report["evaluation"]["by_label"] if g["name"] == "task")
    assert task["text"].startswith(f"add {who - have} records of class 'task' (it has {have}; aim for {who})")
    assert f"{have} training record(s) of 'task' (kind)" in task["rests_on"]
    assert any("volume table: 10-100 records per class" in fact for fact in task["rests_on"])
    assert any(fact.startswith("eval loss") and "of the other eval records" in fact for fact in task["rests_on"])


def test_the_run_page_shows_the_eval_sections_and_no_raw_dicts(labelled_run):
    result, _ = labelled_run
    page = result.report.read_text()
    for section in ("Which data to add", "Where the model is weak", "Records with the highest eval loss", "The plan",
                    "The audit of the training data", "Loss and learning rate"):
        assert section in page
    assert "add " in page and "task" in page and 'id="by-label"' in page and page.count("<svg") >= 2
    assert "Base model and trained model, side by side" in page  # --compare-base 2 at the end of training
    assert "{'" not in page and '{"' not in page  # no Python or JSON dict printed on the page
    assert "<script" not in page


def test_trainkit_eval_writes_its_report_with_base_and_adapter_answers(labelled_run):
    result, report = labelled_run
    proc = run_cli("eval", result.run_dir, "--compare-base", "2", "--worst", "2", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    assert "eval loss" in proc.stdout and "advice:" in proc.stdout
    written = json.loads((result.run_dir / "eval_report.json").read_text())
    e = written["evaluation"]
    assert e["records"] == report["evaluation"]["records"]
    assert e["loss"] == pytest.approx(report["evaluation"]["loss"], rel=1e-3)  # the same records, the saved adapter
    assert len(e["compare_base"]) == 2 and all({"base", "adapter", "reference"} <= set(c) for c in e["compare_base"])
    assert any(c["base"] != c["adapter"] for c in e["compare_base"])
    page = (result.run_dir / "eval_report.html").read_text()
    assert "Base model and trained model, side by side" in page and "<script" not in page


def test_trainkit_eval_on_a_folder_that_is_no_run_is_one_line(tmp_path):
    proc = run_cli("eval", tmp_path, tool="trainkit")
    assert proc.returncode == 2 and "not a trainkit run folder" in proc.stderr and "Traceback" not in proc.stderr
