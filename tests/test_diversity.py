"""diversity.*: dominant openings (English and Chinese), fill-in templates and low distinct-n, on hand-made and real data."""
from __future__ import annotations

import json
from pathlib import Path

from datakit.config import build_config
from datakit.normalise import load
from tests.conftest import EXAMPLES, audit_json, run_rule
from validators.diversity import DiversityRules

VARIED = [
    "Explain why the sky looks blue during the day.", "Write a haiku about autumn leaves falling.",
    "What is the capital city of Australia?", "Summarise the plot of Hamlet in three sentences.",
    "List five uses for a paperclip.", "Translate 'good morning' into Spanish.",
    "Give me a recipe for pancakes without eggs.", "Which planet has the most moons?",
    "Describe the water cycle for a ten year old.", "Compare Python lists and tuples.",
    "为什么天空是蓝色的？", "推荐三本关于历史的书。",
]


def write(tmp_path: Path, prompts: list[str]) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"instruction": p, "output": f"A complete answer number {i}."}, ensure_ascii=False)
                              for i, p in enumerate(prompts)) + "\n", encoding="utf-8")
    return path


def check(path: Path, **settings) -> tuple[list[dict], dict]:
    found, summary = run_rule(DiversityRules(), load(path), build_config(**settings))
    return found.to_dicts(), summary


def rules(found: list[dict]) -> list[str]:
    return sorted(f["rule"] for f in found)


def test_varied_prompts_raise_nothing(tmp_path):
    found, summary = check(write(tmp_path, VARIED))
    assert found == []
    assert summary["prompts"] == len(VARIED)


def test_one_opening_on_most_prompts_is_flagged_with_its_lines(tmp_path):
    subjects = ["bake bread", "tie a tie", "change a tyre", "learn chess", "plant tulips", "fix a leak"]
    prompts = [f"How do I {s}?" for s in subjects] + VARIED[:6]
    found, summary = check(write(tmp_path, prompts))
    leading = [f for f in found if f["rule"] == "diversity.leading_phrase"]
    assert len(leading) == 1
    assert leading[0]["excerpt"] == "how do" and leading[0]["related_line"] == 1
    assert "50% of prompts (6 of 12) open with 'how do'" in leading[0]["message"]
    assert summary["leading_phrases"][0] == {"phrase": "how do", "count": 6, "share": 0.5}


def test_chinese_openings_are_counted_as_whole_phrases(tmp_path):
    prompts = ["如何学习数学？", "如何做蛋糕？", "如何提高写作能力？", "如何保持健康？", "如何学好英语？", "如何种花？"] + VARIED[:6]
    found, _ = check(write(tmp_path, prompts))
    assert [f["excerpt"] for f in found if f["rule"] == "diversity.leading_phrase"] == ["如何"]


def test_a_phrase_on_few_records_or_under_the_limit_is_not_judged(tmp_path):
    few = ["How do I bake bread?", "How do I tie a tie?", "Name a colour.", "Name a fruit."]
    assert check(write(tmp_path, few))[0] == []
    under = [f"How do I {s}?" for s in ["bake bread", "tie a tie", "learn chess", "fix a leak", "knit"]] + VARIED
    assert "diversity.leading_phrase" not in rules(check(write(tmp_path, under))[0])  # 5 of 17 = 29%
    assert "diversity.leading_phrase" in rules(check(write(tmp_path, under), diversity={"max_leading_share": 0.2})[0])


def test_a_fill_in_template_is_flagged_but_distinct_prompts_with_one_verb_are_not(tmp_path):
    words = ["cat", "house", "river", "window", "bread", "music", "garden", "winter"]
    templated = [f'Translate "{w}" into French.' for w in words] + VARIED
    found, summary = check(write(tmp_path, templated))
    template = [f for f in found if f["rule"] == "diversity.repeated_template"]
    assert len(template) == 1 and template[0]["excerpt"] == "translate ‹q› into ‹e›."  # quoted text and names masked
    assert summary["templates"][0]["count"] == 9  # VARIED's "Translate 'good morning' into Spanish." fills it too
    one_verb = ["Translate this poem about the sea into plain prose.", "Translate the menu below for a tourist.",
                "Translate a joke so that it stays funny.", "Translate the legal notice and keep its tone.",
                "Translate these song lyrics while keeping the rhyme.", "Translate my grandmother's letter for a child.",
                "Translate the error message for a beginner."] + VARIED
    assert "diversity.repeated_template" not in rules(check(write(tmp_path, one_verb))[0])


def test_prompts_that_repeat_the_same_words_have_low_distinct_2(tmp_path):
    prompts = [f"please tell me about the thing and the other thing number {i % 3}" for i in range(200)]
    found, summary = check(write(tmp_path, prompts))
    low = [f for f in found if f["rule"] == "diversity.low_distinct"]
    assert len(low) == 1 and summary["distinct_2"] < 0.3
    assert low[0]["detail"].startswith(f"distinct-2 {summary['distinct_2']} < 0.3")


def test_real_instruction_data_is_varied():
    for name in ("alpaca_eval_sample.json", "alpaca_en_sample.json", "alpaca_zh_sample.json", "belle_sample.jsonl"):
        found, summary = check(EXAMPLES / name)
        assert rules(found) == [], name
        assert 0.6 <= summary["distinct_2"] <= 0.95, (name, summary["distinct_2"])


def test_cli_flags_the_opening_that_dominates_fastchats_dummy_conversations(tmp_path):
    proc, report = audit_json(tmp_path, str(EXAMPLES / "sharegpt_sample.json"), "--only", "diversity", "--no-html",
                              "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    leading = [f for f in report["findings"] if f["rule"] == "diversity.leading_phrase"]
    assert [(f["excerpt"], f["detail"].split(";")[0]) for f in leading] == [("what is", "24 of 60 prompts")]


def test_full_fastchat_dummy_set_is_templated_and_repetitive(shared_data, tmp_path):
    proc, report = audit_json(tmp_path, str(shared_data / "fastchat" / "dummy_conversation.json"), "--only", "diversity",
                              "--no-html", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    found = [f["rule"] for f in report["findings"]]
    assert found.count("diversity.low_distinct") == 1 and found.count("diversity.repeated_template") >= 2
    summary = next(f["summary"] for f in report["families"] if f["family"] == "diversity")
    assert summary["distinct_2"] < 0.1 and summary["prompts"] == 500
