"""Reading and normalising: every real format is detected, and bad input becomes findings with lines."""
from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from datakit.io.read import InputError, read_raw
from datakit.normalise import load
from schemas.findings import with_messages
from tests.conftest import EXAMPLES

REAL_FORMATS = {
    "alpaca_en_sample.json": "alpaca",
    "alpaca_zh_sample.json": "alpaca",
    "identity.json": "alpaca",
    "glaive_toolcall_en_sample.json": "sharegpt",
    "sharegpt_sample.json": "sharegpt",
    "messages_sample.jsonl": "openai",
    "alpaca_eval_sample.json": "alpaca",
    "belle_sample.jsonl": "alpaca",
    "mt_bench_questions.jsonl": "prompts",
}


@pytest.mark.parametrize("name,fmt", REAL_FORMATS.items())
def test_every_bundled_real_file_is_read_with_its_format(name, fmt):
    ds = load(EXAMPLES / name)
    assert ds.frame.height > 0
    assert ds.frame["valid"].all()
    assert set(ds.frame["format"]) == {fmt}
    assert ds.read_findings.height == 0


def test_every_shared_real_file_is_read_not_rejected(shared_data):
    for path in sorted(shared_data.glob("*/*.json*")):
        if path.name == "dataset_info.json":  # a registry of datasets, not a dataset
            continue
        ds = load(path)
        assert ds.frame["valid"].all(), path


def test_belle_json_lines_named_json_is_read_as_jsonl():
    ds = load(EXAMPLES / "belle_sample.jsonl", label_field="class")
    assert ds.container == "jsonl"
    assert "closed\u00a0qa" in set(ds.frame["label"])


def test_tool_call_roles_normalise_to_assistant_and_tool():
    ds = load(EXAMPLES / "glaive_toolcall_en_sample.json")
    roles = {m["role"] for msgs in ds.frame["messages"].to_list() for m in msgs}
    assert roles <= {"system", "user", "assistant", "tool"}
    assert "tool" in roles


def test_typed_content_parts_become_text():
    ds = load(EXAMPLES / "messages_sample.jsonl")
    assert ds.frame["response"].str.len_chars().min() > 0


def test_jsonl_bad_lines_are_findings_and_the_rest_is_read(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = json.dumps({"instruction": "a", "output": "b"})
    p.write_bytes(("\ufeff" + good + "\r\n{not json\r\n\r\n" + good + "\r\n" + "[1, 2]\r\n" + '{"instruction": "x"').encode())
    ds = load(p)
    assert ds.frame["line"].to_list() == [1, 2, 4, 5, 6]
    assert ds.frame["valid"].to_list() == [True, False, True, False, False]
    rules = {n["rule"]: n["line"] for n in ds.notes} | dict(zip(ds.read_findings["rule"], ds.read_findings["line"]))
    assert rules["format.bom"] == 1 and rules["format.invalid_json"] in (2, 6)
    assert "format.crlf" in rules and rules["format.blank_line"] == 3
    bad = ds.read_findings.filter(pl.col("rule") == "format.invalid_json")
    assert bad["line"].to_list() == [2, 6]
    assert "truncated" in with_messages(bad)["message"][1]


def test_invalid_utf8_is_replaced_and_reported(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"instruction": "caf\xe9", "output": "ok ok ok"}\n')
    ds = load(p)
    assert ds.frame["valid"].all()
    assert [n["line"] for n in ds.notes if n["rule"] == "format.invalid_utf8"] == [1]


def test_gzip_and_parquet_are_read(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"answer {i}"} for i in range(3)]
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress("\n".join(map(json.dumps, rows)).encode()))
    pq = tmp_path / "d.parquet"
    pl.DataFrame(rows).write_parquet(pq)
    for p in (gz, pq):
        ds = load(p)
        assert ds.frame["valid"].all() and ds.frame.height == 3
    assert load(gz).gzip and load(pq).container == "parquet"


def test_top_level_scalar_is_one_clear_error(tmp_path):
    p = tmp_path / "n.json"
    p.write_text("42")
    with pytest.raises(InputError, match="top-level JSON value is a int"):
        read_raw(p)


def test_broken_element_in_json_array_keeps_the_rest(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": },\n'
                 '  {"instruction": "e", "output": "f"}\n]\n')
    ds = load(p)
    assert ds.frame["valid"].to_list() == [True, False, True]
    assert ds.frame["line"].to_list() == [1, 2, 3]


def test_huge_line_is_read(tmp_path):
    p = tmp_path / "big.jsonl"
    big = "x" * (50 * 1024 * 1024)
    p.write_text(json.dumps({"instruction": "q", "output": big}) + "\n" + json.dumps({"instruction": "q2", "output": "a"}) + "\n")
    ds = load(p)
    assert ds.frame.height == 2 and ds.frame["valid"].all()
