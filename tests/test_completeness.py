"""completeness.*: answers cut off mid-structure (code fence, bracket, quote, list) or mid-sentence (a dangling last
word; no closing punctuation where the dataset's own prose answers have one), English and Chinese, on hand-made
and real data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.config import build_config
from datakit.normalise import load
from tests.conftest import EXAMPLES, SHARED_DATA, audit_json, run_rule
from validators.completeness import CompletenessRules

FINISHED_EN = [f"Step {i} of the guide explains one idea clearly. It ends with a full stop like every answer here."
               for i in range(24)]
FINISHED_ZH = [f"第{i}个回答把问题讲清楚了。它和这里的每个回答一样，以句号结尾。" for i in range(24)]


def write(tmp_path: Path, answers: list[str], name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"instruction": f"Question {i}?", "input": "", "output": a}, ensure_ascii=False) + "\n"
                            for i, a in enumerate(answers)), encoding="utf-8")
    return path


def check(tmp_path: Path, answers: list[str], **settings) -> tuple[list[dict], dict]:
    rows, summary = run_rule(CompletenessRules(), load(write(tmp_path, answers)), build_config(**settings))
    return rows.to_dicts(), summary


def flagged(tmp_path: Path, answers: list[str]) -> list[tuple[int, str]]:
    return [(r["line"], r["rule"]) for r in check(tmp_path, answers)[0]]


def test_an_unclosed_code_fence_is_flagged_and_a_closed_one_is_not(tmp_path):
    cut = "Here is the function:\n\n```python\ndef area(r):\n    return 3.14 * r"
    closed = "Here is the function:\n\n```python\ndef area(r):\n    return 3.14 * r * r\n```"
    inline_pair = "Use this:\n\n```public int zero(){ return 0; }```"
    rows, _ = check(tmp_path, [cut, closed, inline_pair])
    assert [(r["line"], r["rule"], r["field"]) for r in rows] == [(1, "completeness.unclosed_code_fence", "output")]
    assert "```python" in rows[0]["message"]


def test_a_bracket_or_quote_running_to_the_end_is_flagged_in_english_and_chinese(tmp_path):
    answers = ["The elements are: 42. 钼（Molybdenum, Mo）\n43. 锝（Technetium",
               'He looked up and said "we will meet again at noon',
               "他说：“我们明天中午在老地方见",
               "The price (before tax was set by the shop"]
    assert flagged(tmp_path, answers) == [(1, "completeness.unclosed_bracket"), (2, "completeness.unclosed_quote"),
                                          (3, "completeness.unclosed_quote"), (4, "completeness.unclosed_bracket")]


def test_stray_closers_smileys_inch_marks_and_earlier_slips_are_not_cut_offs(tmp_path):
    answers = ["Options: 1) red 2) blue. Pick one.", "I'm sad it rained :( but we went anyway.",
               'He is 5\'10" tall and plays guard.', "The ratio (a:b is 2. Then we add the rest.\nThat is all.",
               "See the [docs](https://example.com/guide) for more."]
    assert flagged(tmp_path, answers) == []


def test_a_list_that_stops_mid_item_is_flagged(tmp_path):
    answers = ["The top novels:\n1. Beloved.\n2. Dune.\n10.",
               "Steps:\n1. Wash the cloth.\n2. Dry it.\n3. Fold it along the",
               "1. 洗净。\n2. 晾干。\n3. 叠好后放入",
               "Names:\n1. Apple\n2. Banana\n3. Cherry"]
    assert flagged(tmp_path, answers) == [(1, "completeness.truncated_list"), (2, "completeness.truncated_list"),
                                          (3, "completeness.truncated_list")]


def test_an_answer_ending_on_a_word_no_sentence_ends_with_is_flagged(tmp_path):
    answers = ["Its memory serves as a reminder of the importance of",
               "这个方法很有效，因为",
               "这种做法可以节约时间以及",
               "他的性格很温和", "Take vitamin A", "That is what I was looking for"]
    rows = check(tmp_path, answers)[0]
    assert [(r["line"], r["rule"]) for r in rows] == [(1, "completeness.dangling_word"), (2, "completeness.dangling_word"),
                                                      (3, "completeness.dangling_word"), (6, "completeness.dangling_word")]
    assert [r["message"].split(",")[0] for r in rows] == [
        "the answer ends on 'of'", "the answer ends on '因为'", "the answer ends on '以及'", "the answer ends on 'for'"]


def test_missing_end_punctuation_is_flagged_where_the_dataset_normally_has_it(tmp_path):
    cut_en = "Once you have an account set up, you can choose which coin you want to buy. While Bitcoin"
    cut_zh = "如果句子的时态是现在或将来，它打印动词。如果句子的时态是过去式，它会打印另一句话并且提示用户"
    rows, summary = check(tmp_path, FINISHED_EN + FINISHED_ZH + [cut_en, cut_zh, "Best regards,\nJohn Smith"])
    assert [(r["line"], r["rule"]) for r in rows] == [(49, "completeness.no_end_punctuation"),
                                                      (50, "completeness.no_end_punctuation")]
    assert "96% of this dataset's prose answers" in rows[0]["message"] and "While Bitcoin" in rows[0]["excerpt"]
    assert summary["prose_answers"] == 50 and summary["ending_with_closing_punctuation"] == 48
    assert summary["no_end_punctuation"].startswith("judged: 96.0% of 50 prose answers")


def test_cut_structures_that_leave_a_plausible_end_are_flagged(tmp_path):
    answers = ["1.保持冷静。\n2.按下警铃。\n3.不要",  # Chinese list marks without a space
               "1. Mount Everest - the highest mountain in the world.\n2. K2 - Located in the Karakoram Range, on",
               "| 特征 | 有人驾驶 | 无人驾驶 |\n|---|---|---|\n| 成本 | 高 | 低 |\n|安全| 更高，因为需要为乘员提供",
               '标语：\n1、"一杯咖啡，一个好开始"\n2、"来一']
    assert flagged(tmp_path, answers) == [(1, "completeness.truncated_list"), (2, "completeness.truncated_list"),
                                          (3, "completeness.truncated_table"), (4, "completeness.unclosed_quote")]


def test_whole_lists_tables_and_quoted_items_are_not_cut_offs(tmp_path):
    answers = ["1.保持冷静。\n2.按下警铃。\n3.等待救援。", "1. Buy milk.\n2. Call mom",
               "| a | b |\n|---|---|\n| 1 | 2 |", '1、"一杯咖啡"\n2、"来一杯茶"', "Use a pipe: | grep x"]
    assert flagged(tmp_path, answers) == []


def test_short_or_comma_joined_endings_count_as_prose_when_cut(tmp_path):
    """A clause after a comma, a number closing words, a new paragraph that stops at once, verse lines running on: each
    is judged against the dataset's usual full stop; enumerations, list entries and formulas are not."""
    cut = ["Based on the specialties of the business mentioned, it", "In the United States, a clerk earns about $31,000",
           "现在，我们可以用乘法和除法计算式子的其余部", "The report covers every region.\n\nThe ancient",
           "这是一份以生物和数学为重点的课程表。您",
           "The sun shines brightly in the sky,\nOn blooming flowers that never die,\nThe warmth it"]
    whole = ["China, US, Brazil, Japan, Canada", "Ice cubes, cold water, shade", "8. Once approved, merge the request",
             "x = 5 + 3 = 8", "The war ended in 1918.", "苹果，香蕉，橙子", "- Domesticated"]
    rows = flagged(tmp_path, FINISHED_EN + FINISHED_ZH + cut + whole)
    assert rows == [(49 + i, "completeness.no_end_punctuation") for i in range(len(cut))]


def test_a_dataset_whose_answers_rarely_close_is_not_flagged_wholesale(tmp_path):
    verse = [f"The river {i} runs beneath the hill of stone and the wind goes soft over the quiet morning field"
             for i in range(30)]
    code = [f"```python\nprint({i})\n```" for i in range(30)]
    labels = ["positive", "negative", "neutral"] * 10
    for answers in (verse, code, labels):
        rows, summary = check(tmp_path, answers)
        assert rows == []
        assert summary["no_end_punctuation"].startswith("not judged")


def test_calibration_needs_enough_prose_answers_and_takes_its_thresholds_from_config(tmp_path):
    answers = FINISHED_EN[:10] + [("They all agree that the project should start next week. A small team will take it on "
                                  "first and report back within a month")]
    rows, summary = check(tmp_path, answers)
    assert rows == [] and summary["no_end_punctuation"].startswith("not judged: 11 prose answers")
    rows, summary = check(tmp_path, answers, completeness={"min_prose_answers": 5})
    assert [(r["line"], r["rule"]) for r in rows] == [(11, "completeness.no_end_punctuation")]
    assert check(tmp_path, answers, completeness={"min_prose_answers": 5, "min_closed_share": 0.95})[0] == []


def test_cli_audit_reports_completeness_and_its_calibration(tmp_path):
    path = write(tmp_path, FINISHED_EN + [("The answer was going well, and every step was explained with care, until the export "
                                          "cut it off right in the middle of the"),
                                          "```\ncode that never ends"])
    proc, report = audit_json(tmp_path, path, "--only", "completeness")
    assert proc.returncode == 0, proc.stderr
    assert "completeness · end punctuation judged: 96.0% of 25 prose answers" in " ".join(proc.stdout.split())
    page = next(tmp_path.glob("report-*.html")).read_text(encoding="utf-8")
    assert "prose answers" in page and "records by rule" in page and "judged: 96.0% of 25 prose answers" in page
    assert sorted((f["rule"], f["line"]) for f in report["findings"]) == [
        ("completeness.dangling_word", 25), ("completeness.unclosed_code_fence", 26)]
    summary = next(f["summary"] for f in report["families"] if f["family"] == "completeness")
    assert summary["records_by_rule"]["completeness.dangling_word"] == 1
    assert summary["prose_answers"] == 25 and summary["ending_with_closing_punctuation"] == 24


REVIEWED = {  # every finding on the real sets, each looked at: all cut-offs but the three marked (complete, no full stop)
    "alpaca_en_sample.json": [125, 180], "alpaca_eval_sample.json": [4, 47, 263], "belle_sample.jsonl": [51],
    "alpaca_zh_sample.json": [44],
    "glaive_toolcall_en_sample.json": [52], "identity.json": [37], "messages_sample.jsonl": [37],  # 37: '...不断进化' no 。
    "alpaca_eval_outputs.json": [10, 139, 249, 291, 787], "eval_set.json": [201, 519, 680],  # 680: 是…的 sentence without 。
    "alpaca_en_demo.json": [125, 180, 270, 346, 464, 731, 783, 899], "alpaca_zh_demo.json": [44, 493, 632, 807, 947, 990],
    "glaive_toolcall_en_demo.json": [52, 244], "glaive_toolcall_zh_demo.json": [237],
    "v1_sft_demo.jsonl": [37, 175, 230, 320, 396],
    "seed_tasks.jsonl": [102],  # 102: 'This is standard Arabic' without a full stop
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json*")) + sorted(SHARED_DATA.glob("*/*.json*")), ids=lambda p: p.name)
def test_real_sets_flag_few_records_and_those_were_looked_at(path):
    if not path.exists() or path.name == "dataset_info.json":
        pytest.skip("not a record file here")
    ds = load(path)
    rows, _ = run_rule(CompletenessRules(), ds)
    assert rows["record_id"].n_unique() <= 0.03 * ds.valid.height
    assert sorted(rows["line"].to_list()) == REVIEWED.get(path.name, [])
