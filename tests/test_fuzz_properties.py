"""Properties of the reader, the normaliser and every fixer on generated hostile input (tests/fuzz/inputs.py):
nothing raises but the reader's own InputError naming the file, no line of a JSON Lines file is lost, batch and
chunk sizes never change what is read, one row per record, and every repair is idempotent and removes what it
claims to repair. `make fuzz` runs the reader and the whole audit on such inputs at volume."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datakit.fix import truncated
from datakit.io.read import OTHER_BOMS, InputError, RawRecord, open_raw, read_raw
from datakit.normalise import normalise
from datakit.recheck import audit_records
from datakit.records import texts
from schemas.config import AuditConfig
from tests.conftest import run_cli
from tests.fuzz.inputs import SUFFIXES, dataset_bytes, json_value, near_json, record, text, write
from validators.base import RuleContext
from validators.hygiene import HygieneRules
from validators.length import LengthRules
from validators.pii import PiiRules
from validators.spelling import SpellingRules

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(SETTINGS, max_examples=40)  # each example runs the rules through the audit engine


def outcome(path: Path, chunk_size: int, max_bytes: int, max_records: int) -> tuple:
    """Everything the reader says about a file: its records, notes and container, or its InputError."""
    try:
        with open_raw(path, chunk_size=chunk_size) as stream:
            batches = list(stream.batches(max_bytes, max_records))
            assert all(0 < len(b) <= max_records for b in batches)
            records = [r for b in batches for r in b]
            assert stream.records == len(records)
            return ("read", stream.container, [(r.line, r.text, repr(r.obj), r.error, r.rule) for r in records],
                    [(n.rule, n.line, n.message) for n in stream.notes])
    except InputError as e:
        assert str(path) in str(e)
        return ("refused", str(e))


@SETTINGS
@given(dataset_bytes, st.sampled_from(SUFFIXES), st.integers(1, 64), st.integers(1, 200), st.integers(1, 5))
def test_reader_raises_only_input_error_and_batching_never_changes_what_is_read(data, suffix, chunk, max_bytes, max_records):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), data, suffix)
        whole = outcome(path, 4 * 2**20, 64 * 2**20, 100_000)
        assert outcome(path, chunk, max_bytes, max_records) == whole
        try:
            raw = read_raw(path)
        except InputError as e:
            assert whole == ("refused", str(e))
        else:
            assert whole[2] == [(r.line, r.text, repr(r.obj), r.error, r.rule) for r in raw.records]


def non_blank_lines(data: bytes) -> list[int]:
    """1-based numbers of the lines holding more than whitespace, as a UTF-8 text with CRLF read as LF."""
    lines = data.decode("utf-8", errors="replace").removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    return [no for no, line in enumerate(lines, 1) if line.strip()]


@SETTINGS
@given(near_json(), st.sampled_from(SUFFIXES))
def test_every_non_blank_line_of_json_lines_is_a_record_or_a_failed_record(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), data, suffix)
        try:
            raw = read_raw(path)
        except InputError as e:
            assert str(path) in str(e)
            return
        lines = [r.line for r in raw.records]
        assert lines == sorted(set(lines))
        assert all(r.obj is None and r.rule.startswith("format.") for r in raw.records if r.error is not None)
        if raw.container == "jsonl" and not data.startswith(tuple(bom for bom, _ in OTHER_BOMS)):
            assert lines == non_blank_lines(data)


@SETTINGS
@given(st.lists(st.one_of(record, json_value, st.just(RawRecord(0, "{", None, "Expecting value at column 2"))), max_size=8),
       st.sampled_from([None, "category", "id"]), st.integers(0, 10**6))
def test_normalise_gives_one_row_per_record_and_a_reason_for_every_invalid_one(values, label_field, first_id):
    records = [v if isinstance(v, RawRecord) else RawRecord(0, json.dumps(v, ensure_ascii=False), v) for v in values]
    for no, r in enumerate(records, 1):
        r.line = no
    ds = normalise(records, "fuzz.jsonl", label_field, first_id)
    frame, found = ds.frame, ds.read_findings
    assert frame["id"].to_list() == list(range(first_id, first_id + len(records)))
    assert frame["line"].to_list() == [r.line for r in records]
    invalid = set(frame.filter(~pl.col("valid"))["id"])
    reasons = found.filter(pl.col("rule").str.starts_with("format."))
    assert invalid <= set(reasons["record_id"])
    assert all(reasons["template"].str.len_chars() > 0)


REPAIRS = {"hygiene": (HygieneRules(), {"hygiene.html", "hygiene.control_chars"}),
           "pii": (PiiRules(), {c.code for c in PiiRules.codes}),
           "spelling": (SpellingRules(), {"spelling.misspelling"})}
CTX = RuleContext()


@SETTINGS
@given(text, st.sampled_from(sorted(REPAIRS)))
def test_every_repair_is_idempotent(value, family):
    rule = REPAIRS[family][0]
    once = rule.repair(value, CTX)
    assert isinstance(once, str) and rule.repair(once, CTX) == once


def recheck(rule, answers: list[str]) -> set[str]:
    """The codes the family reports on records whose prompt is plain and whose answers are `answers`."""
    records = [RawRecord(i, "", {"instruction": "Answer the question, please.", "output": a}) for i, a in enumerate(answers, 1)]
    found, _ = audit_records(normalise(records, "fuzz.jsonl"), AuditConfig(), [], [rule])
    return set(found["rule"])


@SLOW
@given(st.lists(text, min_size=1, max_size=6), st.sampled_from(sorted(REPAIRS)))
def test_repaired_text_is_no_longer_reported_for_what_was_repaired(answers, family):
    rule, repaired_codes = REPAIRS[family]
    assert not recheck(rule, [rule.repair(a, CTX) for a in answers]) & repaired_codes


@SLOW
@given(record, st.integers(1, 40))
def test_truncate_fits_the_limit_and_truncating_again_changes_nothing(obj, max_tokens):
    config = AuditConfig.model_validate({"length": {"max_tokens": max_tokens}})
    cut = truncated(obj, config)
    if cut is None:
        return
    assert truncated(cut, config) == cut
    assert len(texts(cut)) == len(texts(obj))
    raw = RawRecord(1, json.dumps(cut, ensure_ascii=False), cut)
    found, _ = audit_records(normalise([raw], "fuzz.jsonl"), config, [], [LengthRules()])
    assert "length.too_long" not in set(found["rule"])


# Inputs `make fuzz` found crashing the audit (tests/fuzz/run.py), each a regression test through the real CLI.
FOUND_BY_FUZZING = {"empty_array.json": b"[]", "empty_array_spaced.json": b"[   ]\n",
                    "empty_array_utf16.jsonl.gz": b"\xff\xfe[\x00]\x00\n\x00"}


@pytest.mark.parametrize("name", sorted(FOUND_BY_FUZZING))
def test_a_file_without_records_is_refused_with_its_name_not_a_crash(tmp_path, name):
    stem, _, suffix = name.partition(".")
    path = write(tmp_path, FOUND_BY_FUZZING[name], "." + suffix, stem)
    proc = run_cli("audit", path, "--no-html", "--json", tmp_path / "r.json", timeout=120)
    assert proc.returncode == 2 and "internal error" not in proc.stderr + proc.stdout
    assert f"{path}: holds no records" in " ".join((proc.stderr + proc.stdout).split())


def test_parquet_without_rows_is_refused_with_its_name(tmp_path):
    path = tmp_path / "zero.parquet"
    pl.DataFrame(schema={"instruction": pl.String, "output": pl.String}).write_parquet(path)
    with pytest.raises(InputError, match="holds no records"):
        read_raw(path)
