"""datakit convert: Alpaca, ShareGPT and OpenAI messages round-trip without loss where the formats allow, refuse
clearly where they do not, and register the result with LLaMA-Factory."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import datakit
from datakit.convert import INPUT_MARKER
from datakit.io.read import read_raw
from datakit.normalise import load
from tests.conftest import EXAMPLES, SHARED_DATA, audit_json, run_cli


def records(path: Path) -> list:
    return [r.obj for r in read_raw(path).records]


def rejected(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


@pytest.mark.parametrize("name", ["alpaca_en_sample.json", "alpaca_zh_sample.json", "identity.json"])
@pytest.mark.parametrize("via", ["sharegpt", "openai"])
def test_alpaca_round_trip_gives_back_the_same_records(tmp_path, name, via):
    datakit.convert(EXAMPLES / name, via, tmp_path / "conv.json")
    result = datakit.convert(tmp_path / "conv.json", "alpaca", tmp_path / "back.json")
    assert result.refused == 0
    assert (tmp_path / "back.json").read_bytes() == (EXAMPLES / name).read_bytes()


@pytest.mark.parametrize("name", ["sharegpt_sample.json", "glaive_toolcall_en_sample.json"])
def test_sharegpt_round_trip_through_openai_keeps_tool_calls(tmp_path, name):
    datakit.convert(EXAMPLES / name, "openai", tmp_path / "openai.json")
    datakit.convert(tmp_path / "openai.json", "sharegpt", tmp_path / "back.json")
    assert records(tmp_path / "back.json") == records(EXAMPLES / name)


def test_tool_calls_become_openai_tool_calls_and_tool_messages(tmp_path):
    datakit.convert(EXAMPLES / "glaive_toolcall_en_sample.json", "openai", tmp_path / "openai.json")
    first = records(tmp_path / "openai.json")[0]
    call = next(m for m in first["messages"] if m.get("tool_calls"))
    assert call["content"] is None and call["tool_calls"][0]["function"]["name"] == "search_recipes"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"ingredients": ["chicken", "bell peppers", "rice"]}
    assert any(m["role"] == "tool" for m in first["messages"]) and "tools" in first
    ds = load(tmp_path / "openai.json")
    assert ds.frame["valid"].all() and ds.read_findings.height == 0


def test_tool_call_records_are_refused_for_alpaca_with_a_reason_and_the_rest_converted(tmp_path):
    result = datakit.convert(EXAMPLES / "glaive_toolcall_en_sample.json", "alpaca", tmp_path / "alpaca.json")
    rows = rejected(tmp_path / "alpaca.rejected.jsonl")
    assert result.refused == len(rows) > 0 and result.converted + result.refused == 60
    assert all(r["reasons"][0]["rule"] == "convert.not_representable" and "tool" in r["reasons"][0]["message"] for r in rows)
    originals = records(EXAMPLES / "glaive_toolcall_en_sample.json")
    assert all(r["record"] == originals[r["line"] - 1] for r in rows)
    assert len(records(tmp_path / "alpaca.json")) == result.converted


def test_multi_turn_conversations_go_to_history_and_the_command_says_so(tmp_path):
    proc = run_cli("convert", EXAMPLES / "sharegpt_sample.json", "--to", "alpaca", "-o", tmp_path / "alpaca.json")
    assert proc.returncode == 0, proc.stderr
    assert "history" in proc.stdout
    first = records(tmp_path / "alpaca.json")[0]
    assert first == {"id": "identity_0", "instruction": "Have a nice day!", "input": "", "output": "You too!",
                     "history": [["Who are you?", ("I am Vicuna, a language model trained by researchers from Large "
                                                   "Model Systems Organization (LMSYS).")]]}
    _, report = audit_json(tmp_path, tmp_path / "alpaca.json", "--only", "format")
    assert report["findings"] == []


def test_typed_content_becomes_text_and_per_turn_fields_dropped_for_alpaca_are_reported(tmp_path):
    datakit.convert(EXAMPLES / "messages_sample.jsonl", "sharegpt", tmp_path / "sg.jsonl")
    turn = records(tmp_path / "sg.jsonl")[0]["conversations"][0]
    assert turn == {"from": "human", "value": "hi", "loss_weight": 0.0}
    result = datakit.convert(EXAMPLES / "messages_sample.jsonl", "alpaca", tmp_path / "alpaca.jsonl")
    assert result.dropped_turn_fields == {"loss_weight": 120}
    assert any("loss_weight" in note for note in result.notes)


def test_alpaca_input_is_joined_into_the_user_turn_and_kept_for_the_way_back(tmp_path):
    datakit.convert(EXAMPLES / "alpaca_en_sample.json", "sharegpt", tmp_path / "sg.json")
    original = next(r for r in records(EXAMPLES / "alpaca_en_sample.json") if r["input"])
    converted = next(r for r in records(tmp_path / "sg.json") if r.get(INPUT_MARKER) == original["input"])
    assert converted["conversations"][0]["value"] == original["instruction"] + "\n" + original["input"]


def test_questions_without_answers_are_refused(tmp_path):
    result = datakit.convert(EXAMPLES / "mt_bench_questions.jsonl", "sharegpt", tmp_path / "sg.jsonl")
    assert result.converted == 0 and result.refused == 80
    assert "without answers" in rejected(tmp_path / "sg.rejected.jsonl")[0]["reasons"][0]["message"]


def test_dataset_info_entry_is_added_next_to_the_output_keeping_other_entries(tmp_path):
    info = tmp_path / "dataset_info.json"
    source = SHARED_DATA / "llamafactory" / "dataset_info.json"
    if source.exists():
        shutil.copy(source, info)
    else:
        info.write_text(json.dumps({"identity": {"file_name": "identity.json"}}))
    before = json.loads(info.read_text())
    proc = run_cli("convert", EXAMPLES / "glaive_toolcall_en_sample.json", "--to", "openai", "-o", tmp_path / "tools.json",
                   "--dataset-info", "tools_openai")
    assert proc.returncode == 0, proc.stderr
    assert "formatting, the one that reads tool_calls" in " ".join(proc.stdout.split())
    after = json.loads(info.read_text())
    assert {k: v for k, v in after.items() if k != "tools_openai"} == before
    assert after["tools_openai"] == {
        "file_name": "tools.json", "formatting": "openai", "columns": {"messages": "messages", "tools": "tools"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system", "observation_tag": "tool"}}
    datakit.convert(EXAMPLES / "alpaca_zh_sample.json", "alpaca", tmp_path / "zh.json", dataset_info="zh")
    assert json.loads(info.read_text())["zh"] == {
        "file_name": "zh.json", "columns": {"prompt": "instruction", "query": "input", "response": "output"}}


def test_openai_messages_without_tool_calls_get_the_sharegpt_formatting_with_openai_tags(tmp_path):
    datakit.convert(EXAMPLES / "sharegpt_sample.json", "openai", tmp_path / "chat.jsonl", dataset_info="chat")
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["chat"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages"}


def test_records_already_in_the_target_format_are_written_unchanged(tmp_path):
    result = datakit.convert(EXAMPLES / "alpaca_zh_sample.json", "alpaca", tmp_path / "zh.json")
    assert result.unchanged == 150 and (tmp_path / "zh.json").read_bytes() == (EXAMPLES / "alpaca_zh_sample.json").read_bytes()


def test_belle_fields_are_written_as_the_alpaca_fields_the_dataset_info_entry_names(tmp_path):
    proc = run_cli("convert", EXAMPLES / "belle_sample.jsonl", "--to", "alpaca", "-o", tmp_path / "belle.jsonl",
                   "--dataset-info", "belle")
    assert proc.returncode == 0, proc.stderr
    originals, written = records(EXAMPLES / "belle_sample.jsonl"), records(tmp_path / "belle.jsonl")
    assert len(written) == 250
    for before, after in zip(originals, written):
        assert after == {"instruction": before["question"], "input": "", "output": before["std_answer"], "class": before["class"]}
    columns = json.loads((tmp_path / "dataset_info.json").read_text())["belle"]["columns"]
    assert all(all(column in r for column in columns.values()) for r in written)


def test_alpaca_without_input_gains_an_empty_input_in_place(tmp_path):
    datakit.convert(EXAMPLES / "alpaca_eval_sample.json", "alpaca", tmp_path / "eval.json")
    first, original = records(tmp_path / "eval.json")[0], records(EXAMPLES / "alpaca_eval_sample.json")[0]
    assert list(first) == ["instruction", "input", "output", *[k for k in original if k not in ("instruction", "output")]]
    assert first["input"] == "" and first["output"] == original["output"]


def test_role_name_variants_are_written_with_the_target_role_names(tmp_path):
    data = tmp_path / "variants.jsonl"
    data.write_text(json.dumps({"conversations": [{"from": "user", "value": "hi"}, {"from": "chatgpt", "value": "hello"}]})
                    + "\n" + json.dumps({"conversations": [{"role": "developer", "content": "be brief"},
                                                            {"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "hello"}]}) + "\n")
    result = datakit.convert(data, "sharegpt", tmp_path / "sg.jsonl")
    assert (result.converted, result.unchanged) == (2, 0)
    assert [[t["from"] for t in r["conversations"]] for r in records(tmp_path / "sg.jsonl")] == [["human", "gpt"]] * 2
    datakit.convert(data, "openai", tmp_path / "oa.jsonl")
    assert [[m["role"] for m in r["messages"]] for r in records(tmp_path / "oa.jsonl")] == [
        ["user", "assistant"], ["system", "user", "assistant"]]


def test_unknown_target_and_overwriting_the_input_are_refused(tmp_path):
    bad = run_cli("convert", EXAMPLES / "identity.json", "--to", "chatml", "-o", tmp_path / "x.json")
    assert bad.returncode == 2 and "expected one of alpaca, sharegpt, openai" in bad.stderr
    copy = tmp_path / "identity.json"
    shutil.copy(EXAMPLES / "identity.json", copy)
    same = run_cli("convert", copy, "--to", "sharegpt", "-o", copy)
    assert same.returncode == 2 and "is the input file" in same.stderr
    assert copy.read_bytes() == (EXAMPLES / "identity.json").read_bytes()


def test_dataset_info_for_a_file_llamafactory_cannot_load_is_refused_before_writing(tmp_path):
    proc = run_cli("convert", EXAMPLES / "identity.json", "--to", "sharegpt", "-o", tmp_path / "identity.jsonl.gz",
                   "--dataset-info", "identity")
    assert proc.returncode == 2 and "which identity.jsonl.gz does not end in" in " ".join(proc.stderr.split())
    assert list(tmp_path.iterdir()) == []
