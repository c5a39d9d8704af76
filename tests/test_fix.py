"""datakit fix: repairs and rejects without losing a record, never touches its input, is atomic, idempotent and
deterministic, and leaves nothing a fixable rule would flag."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

import datakit
import datakit.io.write as write_module
from datakit.io.read import read_raw
from datakit.records import map_texts, texts
from tests.conftest import EXAMPLES, audit_json, run_cli
from validators import all_codes

FIXABLE = {c.code for _, c in all_codes() if c.fixable}
GOOD = {"instruction": "Name three primary colours.", "input": "", "output": "Red, blue and yellow are the three primary colours."}


def adversarial_lines() -> list[str]:
    """One JSONL line per problem fix must handle, plus clean records around them."""
    records = [
        GOOD,
        {"instruction": "Explain <b>photosynthesis</b> &amp; respiration.", "input": "",
         "output": "Plants turn light into sugar<br>and animals burn it back.", "meta": {"id": 7, "tags": ["bio"]}},
        {"instruction": "Sum\u200b the numbers one to ten for me.", "output": "The sum of one to ten is fifty-five."},
        {"instruction": "Who should I email about the invoice?", "output": "Write to jane.roe@fastmail.fm for invoices today."},
        {"instruction": "Say nothing at all, please.", "output": ""},
        GOOD,
        {"instruction": "Translate to Chinese: good morning, everyone.", "output": "大家早上好！今天天气很好。"},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    lines.insert(3, '{"instruction": "broken record", "output": ')
    lines.insert(5, json.dumps(["not", "an", "object"]))
    return lines


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    path = tmp_path / "messy.jsonl"
    path.write_text("\n".join(adversarial_lines()) + "\n", encoding="utf-8")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rejected_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_fix_keeps_every_record_exactly_once(messy, tmp_path):
    result = datakit.fix(messy, tmp_path / "clean.jsonl")
    raw = read_raw(messy)
    clean = read_raw(tmp_path / "clean.jsonl").records
    rejected = rejected_rows(tmp_path / "clean.rejected.jsonl")
    rejected_lines = [r["line"] for r in rejected]
    kept_lines = [r.line for r in raw.records if r.line not in rejected_lines]
    assert len(clean) + len(rejected) == len(raw.records) == result.records
    assert sorted(kept_lines + rejected_lines) == [r.line for r in raw.records]
    assert len(set(rejected_lines)) == len(rejected_lines)
    by_line = {r.line: r for r in raw.records}
    for row in rejected:  # the original record untouched, as parsed and as read
        assert row["raw"] == by_line[row["line"]].text and row["record"] == by_line[row["line"]].obj
    for line, rec in zip(kept_lines, clean):  # kept records in input order, edited only in their texts
        original = by_line[line].obj
        assert [role for role, _ in texts(rec.obj)] == [role for role, _ in texts(original)]
        assert {k: v for k, v in rec.obj.items() if k not in ("instruction", "input", "output")} == \
               {k: v for k, v in original.items() if k not in ("instruction", "input", "output")}


def test_fix_rejects_unreadable_empty_and_duplicate_records_with_their_reasons(messy, tmp_path):
    datakit.fix(messy, tmp_path / "clean.jsonl")
    rows = {r["line"]: r for r in rejected_rows(tmp_path / "clean.rejected.jsonl")}
    codes = {line: {reason["rule"] for reason in r["reasons"]} for line, r in rows.items()}
    assert sorted(codes) == [4, 6, 7, 8]
    assert (codes[4], codes[6], codes[7]) == ({"format.invalid_json"}, {"format.not_an_object"}, {"empty.output"})
    assert "duplicate.exact" in codes[8]  # an exact copy is a near-duplicate too
    assert rows[4]["record"] is None and rows[4]["raw"] == '{"instruction": "broken record", "output": '
    assert rows[8]["reasons"][0]["related_line"] == 1
    assert all(reason["message"] and reason["fix"] == "drop" for r in rows.values() for reason in r["reasons"]
               if reason["rule"] in codes[r["line"]])


def test_fix_repairs_text_and_leaves_other_fields_untouched(messy, tmp_path):
    datakit.fix(messy, tmp_path / "clean.jsonl")
    clean = [r.obj for r in read_raw(tmp_path / "clean.jsonl").records]
    html = next(r for r in clean if "photosynthesis" in r["instruction"])
    assert html["instruction"] == "Explain photosynthesis & respiration."
    assert html["output"] == "Plants turn light into sugar\nand animals burn it back."
    assert html["meta"] == {"id": 7, "tags": ["bio"]} and list(html) == ["instruction", "input", "output", "meta"]
    assert any(r["instruction"] == "Sum the numbers one to ten for me." for r in clean)
    assert any("[EMAIL]" in r["output"] and "jane.roe" not in r["output"] for r in clean)
    assert any(r["output"] == "大家早上好！今天天气很好。" for r in clean)  # CJK punctuation untouched


def test_fix_never_modifies_its_input(messy, tmp_path):
    before = digest(messy)
    datakit.fix(messy, tmp_path / "clean.jsonl")
    assert digest(messy) == before


def test_fix_refuses_to_write_over_its_input(messy):
    before = digest(messy)
    proc = run_cli("fix", messy, "-o", messy)
    assert proc.returncode == 2
    assert "is the input file" in proc.stderr and "Traceback" not in proc.stderr
    assert digest(messy) == before


def test_fix_of_clean_output_changes_nothing(messy, tmp_path):
    datakit.fix(messy, tmp_path / "clean.jsonl")
    again = datakit.fix(tmp_path / "clean.jsonl", tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert (tmp_path / "again.rejected.jsonl").read_text() == ""
    assert again.rejected == 0 and again.repaired == {}


def test_fix_is_deterministic(messy, tmp_path):
    datakit.fix(messy, tmp_path / "a.jsonl")
    datakit.fix(messy, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.rejected.jsonl").read_bytes() == (tmp_path / "b.rejected.jsonl").read_bytes()


def test_crash_while_writing_leaves_the_old_output_whole(messy, tmp_path, monkeypatch):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("previous run\n")
    real = write_module._line

    def crash_on_chinese(record):
        if isinstance(record, dict) and record.get("output") == "大家早上好！今天天气很好。":
            raise OSError("disk full")
        return real(record)

    monkeypatch.setattr(write_module, "_line", crash_on_chinese)
    with pytest.raises(OSError):
        datakit.fix(messy, clean)
    assert clean.read_text() == "previous run\n"
    # the rejected file is put in place only with its clean file: neither is left half-written or alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.jsonl", "messy.jsonl"]


@pytest.mark.parametrize("container", ["json", "json.gz", "parquet"])
def test_fix_writes_the_input_container_back(tmp_path, container):
    records = [GOOD, {"instruction": "Explain &lt;tags&gt; in one line.", "input": "", "output": "They mark up text for browsers."}]
    path = tmp_path / f"data.{container}"
    if container == "parquet":
        pl.DataFrame(records).write_parquet(path)
    else:
        data = json.dumps(records, ensure_ascii=False, indent=2).encode()
        path.write_bytes(gzip.compress(data) if container.endswith(".gz") else data)
    datakit.fix(path, tmp_path / f"clean.{container}")
    out = read_raw(tmp_path / f"clean.{container}")
    assert (out.container, out.gzip) == (read_raw(path).container, container.endswith(".gz"))
    assert [r.obj["instruction"] for r in out.records] == [GOOD["instruction"], "Explain <tags> in one line."]


def test_pii_reject_moves_records_instead_of_redacting(messy, tmp_path):
    result = datakit.fix(messy, tmp_path / "clean.jsonl", pii={"action": "reject"})
    rows = rejected_rows(tmp_path / "clean.rejected.jsonl")
    assert any(reason["rule"] == "pii.email" and reason["fix"] == "drop" for r in rows for reason in r["reasons"])
    assert "pii.email" in result.dropped and "pii.email" not in result.repaired


def test_over_length_records_are_dropped_or_truncated_to_fit(tmp_path):
    long = {"instruction": "Tell me a long story about the sea.", "output": " ".join(f"wave{i} rolls on" for i in range(400))}
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(long) + "\n")
    dropped = datakit.fix(path, tmp_path / "dropped.jsonl", max_tokens=200)
    assert dropped.dropped == {"length.too_long": 1} and dropped.kept == 1
    cut = datakit.fix(path, tmp_path / "cut.jsonl", max_tokens=200, fix={"over_length": "truncate"})
    assert cut.kept == 2 and cut.repaired == {"length.too_long": 1}
    story = read_raw(tmp_path / "cut.jsonl").records[1].obj
    assert long["output"].startswith(story["output"]) and len(story["output"]) < len(long["output"])
    _, report = audit_json(tmp_path, tmp_path / "cut.jsonl", "--max-tokens", "200")
    assert not [f for f in report["findings"] if f["rule"] == "length.too_long"]


def test_truncation_rejects_a_record_whose_prompt_alone_is_too_long(tmp_path):
    path = tmp_path / "prompt.jsonl"
    path.write_text(json.dumps({"instruction": "word " * 300, "output": "A short answer here."}) + "\n")
    result = datakit.fix(path, tmp_path / "clean.jsonl", max_tokens=100, fix={"over_length": "truncate"})
    assert result.kept == 0 and result.unrepaired == {"length.too_long": 1}


@pytest.mark.parametrize("name", ["alpaca_eval_sample.json", "identity.json", "belle_sample.jsonl",
                                  "glaive_toolcall_en_sample.json", "messages_sample.jsonl"])
def test_audit_of_fixed_real_data_finds_no_fixable_problem(tmp_path, name):
    datakit.fix(EXAMPLES / name, tmp_path / name)
    report = datakit.audit(tmp_path / name)
    assert sorted({f.rule for f in report.findings} & FIXABLE) == []


def test_fix_cli_on_real_data_reports_what_it_did(tmp_path):
    proc = run_cli("fix", EXAMPLES / "belle_sample.jsonl", "-o", tmp_path / "belle.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "empty.output" in proc.stdout and "rejected with reasons" in proc.stdout
    kept = len(read_raw(tmp_path / "belle.jsonl").records)
    assert kept + len(rejected_rows(tmp_path / "belle.rejected.jsonl")) == 250


def test_dry_run_shows_counts_and_diffs_and_writes_nothing(messy, tmp_path):
    proc = run_cli("fix", messy, "-o", tmp_path / "clean.jsonl", "--dry-run", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "hygiene.html" in proc.stdout and "empty.output" in proc.stdout and "would reject 4" in proc.stdout
    assert "[-<b>-]" in proc.stdout  # a before/after diff
    assert not (tmp_path / "clean.jsonl").exists() and not (tmp_path / "clean.rejected.jsonl").exists()


def test_fix_against_an_eval_set_drops_contaminated_records(tmp_path):
    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text(json.dumps({"instruction": "What is the capital of France and why is it famous?",
                                     "output": "Paris, for its art, food and history."}) + "\n")
    train = tmp_path / "train.jsonl"
    leaked = {"instruction": "What is the capital of France and why is it famous?", "output": "Paris, for art and food."}
    train.write_text(json.dumps(GOOD) + "\n" + json.dumps(leaked) + "\n")
    proc = run_cli("fix", train, "-o", tmp_path / "clean.jsonl", "--against", eval_path, "-q")
    assert proc.returncode == 0, proc.stderr
    rows = rejected_rows(tmp_path / "clean.rejected.jsonl")
    assert [r["line"] for r in rows] == [2]
    assert rows[0]["reasons"][0]["rule"].startswith("leakage.eval_")
    assert rows[0]["reasons"][0]["related_source"] == str(eval_path)


def test_text_walker_reaches_every_text_of_every_format():
    upper = lambda text, role: text.upper()
    alpaca = {"system": "s", "history": [["u1", "a1"]], "instruction": "i", "input": "n", "output": "o", "id": "keep"}
    assert map_texts(alpaca, upper) == {"system": "S", "history": [["U1", "A1"]], "instruction": "I", "input": "N",
                                        "output": "O", "id": "keep"}
    sharegpt = {"system": "s", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a", "w": 1}]}
    assert texts(sharegpt) == [("system", "s"), ("user", "q"), ("assistant", "a")]
    typed = {"messages": [{"role": "user", "content": [{"type": "text", "value": "q"}, {"type": "image", "url": "x"}]},
                          {"role": "assistant", "content": "a", "loss_weight": 1.0}]}
    assert map_texts(typed, upper)["messages"][0]["content"] == [{"type": "text", "value": "Q"}, {"type": "image", "url": "x"}]
    assert map_texts(typed, upper)["messages"][1] == {"role": "assistant", "content": "A", "loss_weight": 1.0}
    assert typed["messages"][0]["content"][0]["value"] == "q"  # the original object is not modified
    assert map_texts(["not", "a", "record"], upper) == ["not", "a", "record"]
