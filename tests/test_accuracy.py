"""accuracy.*: hedged answers and answers that only defer, English and Chinese; opinion, guess and probability
prompts, quoted speech, dialogue lines and full answers with a caveat are not flagged; on hand-made and real data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.config import build_config
from datakit.normalise import load
from tests.conftest import EXAMPLES, SHARED_DATA, audit_json, run_rule
from validators.accuracy import AccuracyRules


def write(tmp_path: Path, pairs: list[tuple[str, str]], name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    rows = [json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False) + "\n" for q, a in pairs]
    path.write_text("".join(rows), encoding="utf-8")
    return path


def found(tmp_path: Path, pairs: list[tuple[str, str]], **settings) -> list[dict]:
    rows, _ = run_rule(AccuracyRules(), load(write(tmp_path, pairs)), build_config(**settings))
    return rows.to_dicts()


def test_hedged_answers_are_flagged_in_english_and_chinese(tmp_path):
    rows = found(tmp_path, [("When was the Eiffel Tower built?", "In 1889, but I could be wrong."),
                            ("Who wrote Hamlet?", "If I remember correctly, it was Shakespeare."),
                            ("Capital of Australia?", "I’m not sure, maybe Sydney."),
                            ("劳动合同到期不续签有补偿吗？", "好像是这样的，应该是吧。"),
                            ("这个药能和酒一起吃吗？", "我也不太确定，可能不行。")])
    assert [(r["line"], r["rule"], r["severity"], r["field"]) for r in rows] == [
        (n, "accuracy.hedged", "warning", "output") for n in range(1, 6)]
    assert [r["detail"] for r in rows] == ["I could be wrong", "If I remember correctly", "I'm not sure", "好像是这样; 应该是吧",
                                           "我也不太确定"]


def test_a_confident_answer_and_hedge_words_inside_other_words_are_not_flagged(tmp_path):
    assert found(tmp_path, [("Capital of Australia?", "Canberra. The IIRC-7 standard is unrelated; I'm not surely wrong."),
                            ("劳动合同到期不续签有补偿吗？", "根据《劳动合同法》第四十六条，用人单位应当支付经济补偿。")]) == []


def test_an_answer_that_only_defers_is_flagged_but_a_full_answer_with_a_caveat_is_not(tmp_path):
    rows = found(tmp_path, [("我可以起诉我的房东吗？", "建议咨询律师。"),
                            ("Can I break my lease early?", "It depends. You should consult a lawyer."),
                            ("My knee hurts after running. What should I do?",
                             ("Rest it for a few days, ice it for 15 minutes at a time, and keep it raised. Start again with "
                             "short, easy runs. If the pain lasts more than a week, consult a doctor.")),
                            ("房东不退押金怎么办？", ("先和房东书面沟通，保留租赁合同、付款记录和房屋交接照片；协商不成可以向当地消费者协会投诉，"
                                                   "或者向法院提起小额诉讼。如果金额较大，建议咨询律师。"))])
    assert [(r["line"], r["rule"], r["detail"]) for r in rows] == [(1, "accuracy.deferral", "建议咨询律师"),
                                                                  (2, "accuracy.deferral", "consult a lawyer")]


def test_prompts_asking_for_an_opinion_a_guess_or_a_probability_are_not_flagged(tmp_path):
    assert found(tmp_path, [("What do you think: will it rain tomorrow?", "I'm not sure, but probably yes."),
                            ("Guess my favourite colour.", "I have no idea. Blue?"),
                            ("What is the probability that a fair coin lands heads twice?", "I'm not sure, maybe 1/4."),
                            ("你觉得这部电影会火吗？", "我也不太确定，好像是吧。"),
                            ("预测一下明年的房价。", "我不太确定，大概是吧。")]) == []


def test_quoted_speech_code_and_the_lines_of_a_written_dialogue_are_not_the_answers_own(tmp_path):
    assert found(tmp_path, [("Write a story opening.", 'She frowned. "I\'m not sure," she said, and opened the door.'),
                            ("创造一个对话。", "A：你听说过这件事吗？\nB：我听说过，但我也不太确定细节。\nA：那我们去查一查。"),
                            ("Show a log line.",
                             "The log says:\n```\nWARN: I could be wrong about the cache\n```\nIt is a warning."),
                            ("Write a dialogue.", "Tom: Is the shop open?\nAnna: I'm not sure, let me check.")]) == []


def test_phrase_lists_come_from_config(tmp_path):
    pairs = [("Is it safe?", "Methinks it is."), ("Who won?", "I'm not sure.")]
    rows = found(tmp_path, pairs, accuracy={"hedges": ["methinks"]})
    assert [(r["line"], r["detail"]) for r in rows] == [(1, "Methinks")]


def test_cli_audit_reports_accuracy_with_its_summary(tmp_path):
    path = write(tmp_path, [("When was it built?", "In 1889, but I could be wrong."), ("我可以起诉房东吗？", "建议咨询律师。"),
                            ("Who wrote Hamlet?", "Shakespeare wrote it around 1600.")])
    proc, report = audit_json(tmp_path, path, "--only", "accuracy", "--no-html")
    assert proc.returncode == 0, proc.stderr
    assert "accuracy · hedged answers 1, deferring answers 1; most common:" in proc.stdout
    assert sorted((f["rule"], f["line"]) for f in report["findings"]) == [("accuracy.deferral", 2), ("accuracy.hedged", 1)]
    summary = next(f["summary"] for f in report["families"] if f["family"] == "accuracy")
    assert summary["answers_checked"] == 3
    assert summary["records_by_rule"] == {"accuracy.hedged": 1, "accuracy.deferral": 1}
    assert {"phrase": "i could be wrong", "rule": "accuracy.hedged", "count": 1} in summary["most_common_phrases"]


REVIEWED = {  # every finding on the real sets, each looked at: a real non-answer ('I'm not sure. When was the last time...')
    "alpaca_eval_sample.json": [18], "alpaca_eval_outputs.json": [52],
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json*")) + sorted(SHARED_DATA.glob("*/*.json*")), ids=lambda p: p.name)
def test_real_sets_flag_few_records_and_those_were_looked_at(path):
    if not path.exists() or path.name == "dataset_info.json":
        pytest.skip("not a record file here")
    ds = load(path)
    rows, _ = run_rule(AccuracyRules(), ds)
    assert rows["record_id"].n_unique() <= 0.03 * ds.valid.height
    assert sorted(rows["line"].to_list()) == REVIEWED.get(path.name, [])
