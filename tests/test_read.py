"""Reading and normalising: every real format is detected, and bad input becomes findings with lines."""
from __future__ import annotations

import codecs
import gzip
import json
import re

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


def test_huge_line_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAKIT_MAX_RECORD_CHARS", str(64 << 20))  # over the default limit, which would reject it
    p = tmp_path / "big.jsonl"
    big = "x" * (50 * 1024 * 1024)
    p.write_text(json.dumps({"instruction": "q", "output": big}) + "\n" + json.dumps({"instruction": "q2", "output": "a"}) + "\n")
    ds = load(p)
    assert ds.frame.height == 2 and ds.frame["valid"].all()


GOOD_LINE = json.dumps({"instruction": "Name a colour of the sky.", "output": "Blue, on a clear day."})
LONE_SURROGATE_LINE = '{"instruction": "scraped \\ud83d text", "output": "an emoji was cut in half here"}'
PAIRED_SURROGATE_LINE = '{"instruction": "whole \\ud83d\\ude00 emoji", "output": "this one is fine"}'
HUGE_NUMBER_LINE = '{"instruction": "q", "output": "a", "id": ' + "7" * 100_000 + "}"


def _streamed(path, chunk_size):
    from datakit.io.read import open_raw

    with open_raw(path, chunk_size=chunk_size) as stream:
        return [(r.line, r.text, r.error) for batch in stream.batches() for r in batch]


@pytest.mark.parametrize("bad,why", [(LONE_SURROGATE_LINE, r"lone surrogate \\ud83d at column 26"),
                                     (HUGE_NUMBER_LINE, "a number with 100000 digits at column 43")])
def test_unloadable_value_is_one_failed_line_and_the_rest_is_read(tmp_path, bad, why):
    p = tmp_path / "d.jsonl"
    p.write_text(f"{GOOD_LINE}\n{bad}\n{PAIRED_SURROGATE_LINE}\n{GOOD_LINE}\n")
    records = read_raw(p).records
    assert [r.error is None for r in records] == [True, False, True, True]
    assert re.search(why, records[1].error)
    assert records[2].obj["instruction"] == "whole \U0001F600 emoji"
    assert _streamed(p, 7) == [(r.line, r.text, r.error) for r in records]


@pytest.mark.parametrize("layout", ["[\n  {}\n]\n", "[{}]"])
def test_unloadable_array_element_keeps_its_text_and_the_rest_is_read(tmp_path, layout):
    p = tmp_path / "d.json"
    elements = [GOOD_LINE, LONE_SURROGATE_LINE, GOOD_LINE, HUGE_NUMBER_LINE, GOOD_LINE]
    p.write_text(layout.replace("{}", ",\n  ".join(elements) if "\n" in layout else ",".join(elements)))
    records = read_raw(p).records
    assert [r.error is None for r in records] == [True, False, True, False, True]
    assert records[1].text == LONE_SURROGATE_LINE and "lone surrogate \\ud83d" in records[1].error
    assert "100000 digits" in records[3].error and "file line" in records[3].error
    assert _streamed(p, 5) == [(r.line, r.text, r.error) for r in records]


@pytest.mark.parametrize("codec,name", [("utf-16-le", "UTF-16 little-endian"), ("utf-16-be", "UTF-16 big-endian"),
                                        ("utf-32-le", "UTF-32 little-endian"), ("utf-32-be", "UTF-32 big-endian")])
def test_bom_of_utf16_or_utf32_decodes_the_file_and_names_it(tmp_path, codec, name):
    rows = [{"instruction": f"问题 {i}", "output": f"答案 {i} 😀"} for i in range(3)]
    p = tmp_path / "ps.jsonl"
    p.write_bytes(("\ufeff" + "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n").encode(codec))
    raw = read_raw(p)
    assert [r.obj for r in raw.records] == rows
    assert [n.rule for n in raw.notes] == ["format.encoding", "format.crlf"]
    assert name in raw.notes[0].message and "replaced" not in raw.notes[0].message
    assert _streamed(p, 3) == [(r.line, r.text, r.error) for r in raw.records]


def test_invalid_utf16_is_replaced_and_named(tmp_path):
    p = tmp_path / "broken16.jsonl"
    p.write_bytes(codecs.BOM_UTF16_LE + GOOD_LINE.encode("utf-16-le") + b"\n\x00" + "\ud800".encode("utf-16-le", "surrogatepass")
                  + GOOD_LINE.encode("utf-16-le") + b"\n\x00")
    raw = read_raw(p)
    assert raw.records[0].obj == json.loads(GOOD_LINE) and raw.records[1].error is not None
    assert "replaced by U+FFFD" in raw.notes[0].message


def test_utf16_file_is_never_cut_into_byte_ranges(tmp_path):
    from datakit.io.read import count_records, line_ranges

    p = tmp_path / "big16.jsonl"
    p.write_bytes(("\ufeff" + (GOOD_LINE + "\n") * 2000).encode("utf-16-le"))
    assert line_ranges(p, 4096) == [(0, p.stat().st_size)]
    assert count_records(p) == 2000


def test_gzip_bomb_stops_at_the_limit_with_a_clear_error(tmp_path, monkeypatch):
    p = tmp_path / "bomb.jsonl.gz"
    p.write_bytes(gzip.compress((GOOD_LINE + "\n").encode() + b"\x00" * (8 << 20), compresslevel=1))
    monkeypatch.setenv("DATAKIT_MAX_GUNZIP_BYTES", str(4 << 20))
    with pytest.raises(InputError, match=r"decompresses to more than 4,194,304 bytes .* DATAKIT_MAX_GUNZIP_BYTES"):
        read_raw(p)


def test_gzip_limit_is_a_ratio_of_the_file_with_a_floor(monkeypatch):
    from datakit.io.read import GUNZIP_FLOOR, GUNZIP_RATIO, gunzip_limit

    monkeypatch.delenv("DATAKIT_MAX_GUNZIP_BYTES", raising=False)
    assert gunzip_limit(1000) == GUNZIP_FLOOR
    assert gunzip_limit(10 * GUNZIP_FLOOR) == 10 * GUNZIP_RATIO * GUNZIP_FLOOR
    monkeypatch.setenv("DATAKIT_MAX_GUNZIP_BYTES", "lots")
    with pytest.raises(InputError, match="expected a whole number of bytes"):
        gunzip_limit(1000)


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_record_over_the_size_limit_is_one_failed_record_never_parsed(tmp_path, monkeypatch, layout):
    monkeypatch.setenv("DATAKIT_MAX_RECORD_CHARS", "1000")
    big = json.dumps({"instruction": "q", "output": "loop " * 400})
    p = tmp_path / f"d.{layout}"
    p.write_text(f"{GOOD_LINE}\n{big}\n{GOOD_LINE}\n" if layout == "jsonl" else f"[{GOOD_LINE},\n{big},\n{GOOD_LINE}]")
    records = read_raw(p).records
    assert [r.rule for r in records] == ["format.invalid_json", "format.record_too_large", "format.invalid_json"]
    assert records[1].text == big and records[1].obj is None and "over the limit of 1,000" in records[1].error
    ds = load(p)
    assert ds.frame["valid"].to_list() == [True, False, True]
    assert ds.read_findings["rule"].to_list() == ["format.record_too_large"]
