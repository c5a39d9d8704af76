"""Unit tests of the empty, length, hygiene, duplicate and volume families on small hand-made files."""
from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.measure import ensure
from datakit.normalise import load
from schemas.config import AuditConfig
from tests.conftest import EXAMPLES, run_rule
from validators.base import RuleContext
from validators.duplicate import DuplicateRules
from validators.empty import EmptyRules, text_fields
from validators.hygiene import HygieneRules
from validators.length import LengthRules
from validators.volume import GENERAL_MINIMUM, VolumeRules


def dataset(tmp_path, records: list, label_field: str | None = None, **config):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    cfg = AuditConfig.model_validate({**config, "label_field": label_field})
    ds = load(path, label_field)
    return ds, RuleContext(config=cfg)


def run(rule, tmp_path, records, label_field=None, **config) -> pl.DataFrame:
    ds, ctx = dataset(tmp_path, records, label_field, **config)
    return run_rule(rule, ds, ctx.config)[0]


def found(frame: pl.DataFrame, code: str) -> list[tuple[int | None, str | None]]:
    return [(r["line"], r["field"]) for r in frame.filter(pl.col("rule") == code).iter_rows(named=True)]


def alpaca(instruction="Name a fruit.", output="An apple is a fruit.", **extra) -> dict:
    return {"instruction": instruction, "input": "", "output": output, **extra}


def sharegpt(*values: str, system: str | None = None) -> dict:
    turns = [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]
    return {"conversations": turns, **({"system": system} if system is not None else {})}


# empty.*

def test_empty_output_and_instruction_are_flagged_with_their_field(tmp_path):
    out = run(EmptyRules(), tmp_path, [alpaca(output=" \n\t"), alpaca(instruction="", output="Fine."), alpaca()])
    assert found(out, "empty.output") == [(1, "output")]
    assert found(out, "empty.instruction") == [(2, "instruction")]


def test_zero_width_only_answer_counts_as_empty(tmp_path):
    out = run(EmptyRules(), tmp_path, [alpaca(output="\u200b\ufeff ")])
    assert found(out, "empty.output") == [(1, "output")]


def test_instruction_empty_but_input_filled_is_not_empty(tmp_path):
    out = run(EmptyRules(), tmp_path, [{"instruction": "", "input": "Translate: hola", "output": "Hello."}])
    assert out.height == 0


def test_belle_field_names_are_reported_as_written(tmp_path):
    out = run(EmptyRules(), tmp_path, [{"question": "Write a poem.", "std_answer": ""}])
    assert found(out, "empty.output") == [(1, "std_answer")]


def test_empty_turn_points_at_the_source_turn_past_a_system_field(tmp_path):
    out = run(EmptyRules(), tmp_path, [sharegpt("Hi", "", "Still there?", "Yes.", system="Be kind."), sharegpt("Hi", "Hello!")])
    assert found(out, "empty.turn") == [(1, "conversations[1]")]


def test_question_only_records_are_left_to_format_no_response(tmp_path):
    assert run(EmptyRules(), tmp_path, [{"turns": ["What is AI?"]}]).height == 0


def test_empty_instruction_check_can_be_switched_off(tmp_path):
    out = run(EmptyRules(), tmp_path, [alpaca(instruction="")], empty={"check_instruction": False})
    assert out.height == 0


# length.*

def test_too_long_names_count_limit_and_tokenizer(tmp_path):
    out = run(LengthRules(), tmp_path, [alpaca(output="word " * 100), alpaca()], length={"max_tokens": 50})
    assert found(out, "length.too_long") == [(1, None)]
    message = out["message"][0]
    assert "over the limit of 50" in message and "cl100k" in message and "--max-tokens" in message


def test_record_at_the_limit_is_not_too_long(tmp_path):
    ds, ctx = dataset(tmp_path, [alpaca()])
    ensure(ds, ["tokens"], ctx.config)
    ctx.config.length.max_tokens = int(ds.frame["tokens"][0])
    assert run_rule(LengthRules(), ds, ctx.config)[0].height == 0


def test_short_open_answer_is_flagged(tmp_path):
    out = run(LengthRules(), tmp_path, [alpaca("Write an essay about the Roman Empire.", "Ok.")])
    assert found(out, "length.too_short") == [(1, "output")]


@pytest.mark.parametrize("instruction,answer", [
    ("Is this review positive or negative? I loved it.", "Positive"),
    ("Answer yes or no: is the sky green?", "No."),
    ("Which option is a mammal? (A) shark (B) whale", "B"),
    ("What is 17 + 25?", "42"),
    ("这句话的情感是正面还是负面？我很喜欢。", "正面"),
])
def test_label_like_short_answers_are_exempt(tmp_path, instruction, answer):
    assert run(LengthRules(), tmp_path, [alpaca(instruction, answer)]).height == 0


def test_empty_answer_is_not_also_too_short(tmp_path):
    assert run(LengthRules(), tmp_path, [alpaca(output="  ")]).height == 0


# hygiene.*

def test_html_tags_and_entities_are_flagged(tmp_path):
    out = run(HygieneRules(), tmp_path, [alpaca(output="It is <b>bold</b>."), alpaca(output="Salt &amp; pepper."),
                                         alpaca(instruction="Line one<br>Line two")])
    assert found(out, "hygiene.html") == [(1, "output"), (2, "output"), (3, "instruction")]


@pytest.mark.parametrize("text", ["if a < b then swap", "x<y and y>z", "List<String> names", "p = &count;",
                                  "Use `<b>` for bold", "```\n<div>x</div>\n```"])
def test_comparisons_generics_and_code_are_not_html(tmp_path, text):
    assert run(HygieneRules(), tmp_path, [alpaca(output=text)]).height == 0


def test_markup_asked_for_by_the_prompt_is_not_flagged(tmp_path):
    out = run(HygieneRules(), tmp_path, [alpaca("Write an HTML table with one cell.", "<table><tr><td>1</td></tr></table>")])
    assert out.height == 0


def test_control_and_zero_width_characters_are_flagged(tmp_path):
    out = run(HygieneRules(), tmp_path, [alpaca(output="a\u0007b"), alpaca(output="zero\u200bwidth"),
                                         alpaca(output="bom\ufeff inside"), alpaca(output="tab\tand\nnewline are fine")])
    assert found(out, "hygiene.control_chars") == [(1, "output"), (2, "output"), (3, "output")]


def test_emoji_joiner_is_not_a_control_character(tmp_path):
    assert run(HygieneRules(), tmp_path, [alpaca(output="A mage \U0001F9D9\u200d\u2642\ufe0f appears.")]).height == 0


def test_replacement_character_is_flagged_and_not_repaired(tmp_path):
    out = run(HygieneRules(), tmp_path, [alpaca(output="costs 5\ufffd")])
    assert found(out, "hygiene.replacement_char") == [(1, "output")]
    assert HygieneRules().repair("costs 5\ufffd", RuleContext()) == "costs 5\ufffd"


def test_template_markers_and_placeholders_are_flagged(tmp_path):
    out = run(HygieneRules(), tmp_path, [
        alpaca(output="### Response: Paris."), alpaca(instruction="### 回答：你好"), alpaca(output="<|im_end|>"),
        alpaca(output="[INST] hi [/INST]"), alpaca(output="I am {{name}}."), alpaca(output="Use {name} in f-strings.")])
    assert [line for line, _ in found(out, "hygiene.template_marker")] == [1, 2, 3, 4, 5]


def test_custom_template_marker_from_config(tmp_path):
    out = run(HygieneRules(), tmp_path, [alpaca(output="<<SYS>> hello")], hygiene={"template_markers": [r"<<SYS>>"]})
    assert found(out, "hygiene.template_marker") == [(1, "output")]


def test_unusable_marker_pattern_is_a_config_error():
    with pytest.raises(ValueError, match="look-around"):
        AuditConfig.model_validate({"hygiene": {"template_markers": [r"(?<=x)y"]}})


@pytest.mark.parametrize("text", ["cafÃ© au lait", "itâ€™s", "å¤§å®¶å¥½"])
def test_mojibake_is_flagged(tmp_path, text):
    assert found(run(HygieneRules(), tmp_path, [alpaca(output=text)]), "hygiene.mojibake") == [(1, "output")]


@pytest.mark.parametrize("text", ["café crème brûlée", "Ärger über Öl", "3\u00a0×\u00a042\u00a0=\u00a0126", "São Paulo",
                                  "«Voilà» dit-il", "naïve façade"])
def test_real_accented_text_is_not_mojibake(tmp_path, text):
    assert run(HygieneRules(), tmp_path, [alpaca(output=text)]).height == 0


def test_excerpt_shows_the_offending_text(tmp_path):
    out = run(HygieneRules(), tmp_path, [alpaca(output="x" * 100 + " <p>leaked</p> " + "y" * 100)])
    assert "<p>leaked</p>" in out["excerpt"][0] and len(out["excerpt"][0]) < 120


def test_hygiene_finds_nothing_on_the_clean_real_english_sample():
    ds = load(EXAMPLES / "alpaca_en_sample.json")
    assert run_rule(HygieneRules(), ds)[0].height == 0


def test_identity_placeholders_are_found_on_every_templated_answer():
    ds = load(EXAMPLES / "identity.json")
    out = run_rule(HygieneRules(), ds)[0]
    templated = ds.frame.filter(pl.col("response").str.contains(r"\{\{")).get_column("line").to_list()
    assert sorted(out["line"].to_list()) == templated and set(out["field"]) == {"output"}


REPAIRS = [
    ("<p>Hello&nbsp;world</p><br>Bye", "Hello world\nBye"),
    ("Tom &amp; Jerry", "Tom & Jerry"),
    ("&amp;lt;b&amp;gt;bold", "bold"),
    ("zero\u200bwidth\u0007", "zerowidth"),
    ("line\r\nnext\rlast", "line\nnext\nlast"),
    ("### Instruction:\nDo X\n### Response:\nY", "Do X\nY"),
    ("<|im_start|>assistant\nhi<|im_end|>", "assistant\nhi"),
    ("I am {{name}}.", "I am {{name}}."),
    ("Use `<b>` here: ```\n<i>x</i>\n``` ok", "Use `<b>` here: ```\n<i>x</i>\n``` ok"),
    ("<!DOCTYPE html><html><body><p>page</p></body></html>", "<!DOCTYPE html><html><body><p>page</p></body></html>"),
    ("中文<b>加粗</b>，标点：「你好」《书》。", "中文加粗，标点：「你好」《书》。"),
    ("### 回答：北京是首都。", "北京是首都。"),
]


@pytest.mark.parametrize("text,expected", REPAIRS)
def test_hygiene_repair_fixes_what_it_can(text, expected):
    assert HygieneRules().repair(text, RuleContext()) == expected


def test_repaired_text_is_no_longer_flagged_for_repairable_codes(tmp_path):
    ctx = RuleContext()
    repaired = [alpaca(output=HygieneRules().repair(t, ctx)) for t, _ in REPAIRS]
    codes = set(run(HygieneRules(), tmp_path, repaired)["rule"])
    assert codes <= {"hygiene.template_marker"}  # only the {{name}} placeholder, which fix cannot fill


CJK = st.characters(min_codepoint=0x3000, max_codepoint=0x9FFF) | st.sampled_from(list("，。：；！？「」『』《》（）【】、…—"))


@settings(max_examples=200, deadline=None)
@given(st.text(CJK, max_size=60))
def test_repair_never_changes_cjk_text(text):
    assert HygieneRules().repair(text, RuleContext()) == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=3) | st.sampled_from(
    ["<b>", "</p>", "&amp;", "&lt;", "&gt;", "&nbsp;", "\r\n", "\r", "\u200b", "\u200d", "### Response:", "<|im_end|>", "```",
     "`", "{{name}}", "<!DOCTYPE html>"]), max_size=20))
def test_repair_is_idempotent(pieces):
    ctx, text = RuleContext(), "".join(pieces)
    once = HygieneRules().repair(text, ctx)
    assert HygieneRules().repair(once, ctx) == once


# duplicate.*

def test_exact_duplicates_point_at_the_first_copy(tmp_path):
    a = alpaca("Give a sleep tip.", "Go to bed on time.")
    out = run(DuplicateRules(), tmp_path, [a, alpaca(), alpaca("GIVE a  sleep tip.", "go to bed on time."), a])
    rows = out.filter(pl.col("rule") == "duplicate.exact")
    assert rows["line"].to_list() == [3, 4] and rows["related_line"].to_list() == [1, 1]


def test_conflicting_outputs_point_at_the_first_answer(tmp_path):
    out = run(DuplicateRules(), tmp_path, [alpaca("Capital of Australia?", "Canberra."), alpaca("capital of australia?", "Sydney."),
                                           alpaca("Capital of Australia?", "Canberra.")])
    rows = out.filter(pl.col("rule") == "duplicate.conflicting_output")
    assert rows["line"].to_list() == [2] and rows["related_line"].to_list() == [1]
    assert found(out, "duplicate.exact") == [(3, None)]


def test_answers_differing_only_in_case_and_punctuation_are_one_answer(tmp_path):
    records = [alpaca("Capital of Australia?", "Canberra."), alpaca("Capital of Australia?", "canberra"),
               alpaca("Capital of Australia?", "\u201cCANBERRA!\u201d  "), alpaca("Capital of Australia?", "Sydney."),
               alpaca("What is 7/2?", "It is 3.5."), alpaca("What is 7/2?", "It is 35"),
               alpaca("列举两个城市。", "北京，上海。"), alpaca("列举两个城市。", "北京、上海")]
    ds, ctx = dataset(tmp_path, records)
    out, summary = run_rule(DuplicateRules(), ds, ctx.config)
    rows = out.filter(pl.col("rule") == "duplicate.conflicting_output")
    assert rows["line"].to_list() == [4, 6] and rows["detail"].to_list() == ["2 different answers"] * 2
    assert found(out, "duplicate.exact") == []  # not dropped by fix: a quote or a full stop may matter to someone
    assert summary["prompts_with_conflicting_outputs"] == 2


def test_same_question_with_different_tools_is_not_a_conflict(tmp_path):
    one = {"conversations": [{"from": "human", "value": "Book a flight."}, {"from": "gpt", "value": "I can only do maths."}],
           "tools": '[{"name": "calculate"}]'}
    two = {"conversations": [{"from": "human", "value": "Book a flight."}, {"from": "gpt", "value": "I can only send mail."}],
           "tools": '[{"name": "send_mail"}]'}
    assert run(DuplicateRules(), tmp_path, [one, two]).height == 0


def test_blank_prompts_are_not_grouped_as_conflicts(tmp_path):
    out = run(DuplicateRules(), tmp_path, [alpaca("", "First."), alpaca("", "Second.")])
    assert found(out, "duplicate.conflicting_output") == []


def test_duplicate_summary_counts_groups_and_the_largest(tmp_path):
    ds, ctx = dataset(tmp_path, [alpaca(), alpaca(), alpaca(), alpaca("Other?", "Yes, other."), alpaca("Other?", "Yes, other.")])
    summary = run_rule(DuplicateRules(), ds, ctx.config)[1]
    assert summary["duplicate_groups"] == 2 and summary["largest_group"] == {"copies": 3, "first_line": 1}


# volume.*

def test_too_few_records_against_the_general_minimum(tmp_path):
    out = run(VolumeRules(), tmp_path, [alpaca(f"Question {i}?", f"Answer number {i}.") for i in range(5)])
    rows = out.filter(pl.col("rule") == "volume.too_few")
    assert rows["line"].to_list() == [None] and rows["record_id"].to_list() == [None]
    assert f"fewer than {GENERAL_MINIMUM}" in rows["message"][0] and "reasoning 1000+" in rows["message"][0]


def test_task_type_sets_the_minimum(tmp_path):
    records = [alpaca(f"Question {i}?", f"Answer number {i}.") for i in range(60)]
    assert run(VolumeRules(), tmp_path, records).height == 0
    out = run(VolumeRules(), tmp_path, records, volume={"task_type": "classification"})
    assert "at least 100" in out["message"][0]


def test_small_classes_are_reported_per_class(tmp_path):
    records = [alpaca(f"Q{i}?", f"A{i}.", kind="big") for i in range(12)] + [alpaca("Q?", "A.", kind="tiny")]
    ds, ctx = dataset(tmp_path, records, "kind")
    out, summary = run_rule(VolumeRules(), ds, ctx.config)
    rows = out.filter(pl.col("rule") == "volume.class_too_small")
    assert rows["excerpt"].to_list() == ["tiny"] and rows["field"].to_list() == ["kind"]
    assert summary["classes"] == {"big": 12, "tiny": 1}


# shared

def test_text_fields_map_every_format_back_to_its_source_fields(tmp_path):
    ds, _ = dataset(tmp_path, [
        {"instruction": "Q", "input": "ctx", "output": "A", "system": "S", "history": [["h1", "a1"]]},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
        {"turns": ["t0", "t1"]},
    ])
    rows = list(ds.frame.iter_rows(named=True))
    assert [f for f, _, _ in text_fields(rows[0])] == ["system", "history[0][0]", "history[0][1]", "instruction", "input", "output"]
    assert [f for f, _, _ in text_fields(rows[1])] == ["messages[0]", "messages[1]"]
    assert [f for f, _, _ in text_fields(rows[2])] == ["turns[0]", "turns[1]"]
