"""spelling.*: English (codespell's list) and Chinese (curated 错别字) misspellings in answers, info in prompts; never in
code, links, quotes, identifiers, names, other languages or proofreading tasks; fix repairs only unambiguous ones."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.config import build_config
from datakit.normalise import load
from tests.conftest import EXAMPLES, SHARED_DATA, audit_json, run_cli, run_rule
from validators.base import RuleContext
from validators.spelling import SpellingRules, zh_entries

CHINESE_SETS = [EXAMPLES / "alpaca_zh_sample.json", EXAMPLES / "belle_sample.jsonl", EXAMPLES / "identity.json",
                SHARED_DATA / "llamafactory" / "alpaca_zh_demo.json", SHARED_DATA / "belle" / "eval_set.json",
                SHARED_DATA / "llamafactory" / "glaive_toolcall_zh_demo.json"]


def write(tmp_path: Path, records: list[dict], name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"input": ""} | r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def found(tmp_path: Path, records: list[dict], **settings) -> list[dict]:
    rows, _ = run_rule(SpellingRules(), load(write(tmp_path, records)), build_config(**settings))
    return rows.to_dicts()


def one(instruction: str, output: str) -> dict:
    return {"instruction": instruction, "output": output}


def test_english_misspellings_in_an_answer_are_flagged_with_their_correction(tmp_path):
    rows = found(tmp_path, [one("How do I reset my password?", "You will recieve an email; the link is seperate from it.")])
    assert [(r["rule"], r["severity"], r["field"], r["line"]) for r in rows] == [("spelling.misspelling", "warning", "output", 1)]
    assert rows[0]["detail"] == "recieve -> receive; seperate -> separate"
    assert "recieve" in rows[0]["excerpt"]


def test_chinese_typos_in_an_answer_are_flagged_with_their_correction(tmp_path):
    rows = found(tmp_path, [one("介绍一下这个团队。", "这个团队一如继往地努力，成绩名列前矛，大家迫不急待地迎接新挑战。")])
    assert [r["rule"] for r in rows] == ["spelling.misspelling"]
    assert rows[0]["detail"] == "一如继往 -> 一如既往; 名列前矛 -> 名列前茅; 迫不急待 -> 迫不及待"


def test_a_misspelling_with_several_possible_corrections_is_ambiguous(tmp_path):
    rows = found(tmp_path, [one("Is it going to rain?", "I cannot tell wether it will rain.")])
    assert [(r["rule"], r["detail"]) for r in rows] == [("spelling.ambiguous", "wether -> weather / whether")]


def test_misspellings_in_a_prompt_are_info_only(tmp_path):
    rows = found(tmp_path, [one("What is the diffrence between a list and a tuple?", "A tuple cannot be changed.")])
    assert [(r["rule"], r["severity"], r["field"]) for r in rows] == [("spelling.prompt", "info", "instruction")]
    assert found(tmp_path, [one("What is the diffrence?", "None.")], spelling={"check_prompts": False}) == []


def test_a_capitalised_word_is_checked_at_a_sentence_start_and_taken_for_a_name_elsewhere(tmp_path):
    rows = found(tmp_path, [one("q", "Teh answer is short.\n1. Recieve the parcel.")])
    assert rows[0]["detail"] == "Teh -> The; Recieve -> Receive"
    assert found(tmp_path, [one("q", "The horse American Pharoah won in 2015.")]) == []


def test_code_links_quotes_identifiers_and_other_languages_are_never_flagged(tmp_path):
    answer = ("Call `recieve()` or run:\n```python\nteh = recieve_data(seperate)\n```\n"
              "    indented = recieve\n"
              "See https://example.com/recieve or mail recieve@example.com. The variable self.heigh, the method "
              "recieveData, the flag --seperate and the file notes.recieve are identifiers. He wrote \"I recieve\" and "
              "'teh' on purpose. En français: la branche de la médecine.")
    assert found(tmp_path, [one("Show some code.", answer)]) == []


def test_a_record_whose_task_is_to_find_or_fix_mistakes_is_not_checked(tmp_path):
    rows = found(tmp_path, [one("Correct the spelling: I recieve mail.", "I receive mail. (recieve -> receive)"),
                            one("找出句中的错别字：他一如继往。", "一如继往应为一如既往。"),
                            one("Describe your morning.", "I recieve mail.")])
    assert [r["line"] for r in rows] == [3]


def test_config_adds_words_and_ignores_others(tmp_path):
    records = [one("q", "Please recieve it."), one("q", "请先按装驱动程序。"), one("q", "The colour is nice.")]
    rows = found(tmp_path, records, spelling={"ignore_words": ["recieve"], "zh_typos": {"按装驱动": "安装驱动"},
                                              "extra_en": {"colour": "color"}})
    assert [(r["line"], r["detail"]) for r in rows] == [(2, "按装驱动 -> 安装驱动"), (3, "colour -> color")]


def test_repair_fixes_only_unambiguous_misspellings_keeps_case_and_is_idempotent():
    ctx = RuleContext(config=build_config())
    rule = SpellingRules()
    text = "Teh parcel: you will recieve it. Recieve it `recieve`, wether or not 一如继往; NASA's ACII stays."
    fixed = rule.repair(text, ctx)
    assert fixed == "The parcel: you will receive it. Receive it `recieve`, wether or not 一如既往; NASA's ACII stays."
    assert rule.repair(fixed, ctx) == fixed


def test_fix_repairs_answers_leaves_prompts_and_keeps_every_record(tmp_path):
    path = write(tmp_path, [one("Teh question: how do I reset it?", "You will recieve an email."),
                            one("Rain?", "I cannot tell wether it will rain."),
                            one("团队？", "他们一如继往地努力。")])
    dry = run_cli("fix", path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "spelling.misspelling" in dry.stdout and "rec{+e+}i[-e-]ve" in dry.stdout
    clean, rejected = tmp_path / "clean.jsonl", tmp_path / "rejected.jsonl"
    proc = run_cli("fix", path, "-o", clean, "--rejected", rejected)
    assert proc.returncode == 0, proc.stderr
    kept = [json.loads(x) for x in clean.read_text(encoding="utf-8").splitlines()]
    assert [r["output"] for r in kept] == ["You will receive an email.", "I cannot tell wether it will rain.", "他们一如既往地努力。"]
    assert kept[0]["instruction"] == "Teh question: how do I reset it?"  # prompts keep their typos
    assert rejected.read_text(encoding="utf-8") == ""


def test_cli_audit_reports_spelling_with_its_summary(tmp_path):
    path = write(tmp_path, [one("q", "You will recieve it."), one("q", "Again, recieve it."), one("q", "一如继往。"),
                            one("Fix the typos: teh cat", "the cat")])
    proc, report = audit_json(tmp_path, path, "--only", "spelling", "--no-html", "--markdown", tmp_path / "summary.md")
    assert proc.returncode == 0, proc.stderr
    assert "spelling · answers with a misspelling: 3 fixable by `datakit fix`" in proc.stdout
    assert "most common: recieve -&gt; receive \\(2\\)" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert sorted((f["rule"], f["line"]) for f in report["findings"]) == [
        ("spelling.misspelling", 1), ("spelling.misspelling", 2), ("spelling.misspelling", 3)]
    summary = next(f["summary"] for f in report["families"] if f["family"] == "spelling")
    assert summary["records_checked"] == 4 and summary["records_skipped_as_proofreading"] == 1
    assert summary["records_by_rule"]["spelling.misspelling"] == 3
    assert summary["most_common"][0] == {"misspelling": "recieve", "correction": "receive", "rule": "spelling.misspelling",
                                         "count": 2}
    rules = run_cli("rules").stdout
    assert "spelling.misspelling" in rules and "spelling.prompt" in rules


def test_chinese_list_is_well_formed_and_no_wrong_form_occurs_in_real_chinese_text():
    entries = zh_entries()
    assert len(entries) >= 100 and all(w != r and len(w) == len(r) for w, r in entries.items())
    for path in [p for p in CHINESE_SETS if p.exists()]:
        ds = load(path).valid
        for text in ds["prompt"].fill_null("").to_list() + ds["response"].fill_null("").to_list():
            assert not [w for w in entries if w in text], path


REVIEWED = {  # every finding on the real sets, each looked at: all real misspellings (answers, then prompts)
    "alpaca_en_demo.json": ([546], []), "seed_tasks.jsonl": ([144, 146], [62, 159, 166, 170]),
    "alpaca_eval_sample.json": ([], [77]),
    "alpaca_eval_outputs.json": ([], [227, 229, 233, 239, 284, 407, 435, 626]),  # 626: 'santa claus' written lower-case
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json*")) + sorted(SHARED_DATA.glob("*/*.json*")), ids=lambda p: p.name)
def test_real_sets_flag_few_records_and_only_real_misspellings(path):
    if not path.exists() or path.name == "dataset_info.json":
        pytest.skip("not a record file here")
    ds = load(path)
    rows, _ = run_rule(SpellingRules(), ds)
    answers = rows.filter(rows["rule"] != "spelling.prompt")
    assert answers["record_id"].n_unique() <= 0.03 * ds.valid.height
    prompts = rows.filter(rows["rule"] == "spelling.prompt")
    assert (sorted(answers["line"].to_list()), sorted(prompts["line"].to_list())) == REVIEWED.get(path.name, ([], []))
