"""A JSON Lines file read in byte ranges (what the Ray engine's workers do) gives exactly one whole read's records,
line numbers and notes, and the cheap counts give each range its first line and first record id."""
from __future__ import annotations

import gzip
import json
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest

from datakit.io.read import LineNotes, RawRange, count_records, line_ranges, open_raw, read_raw
from tests.conftest import EXAMPLES


def tricky_lines() -> bytes:
    """Records with everything a cut could disturb: a byte-order mark, CRLF, blank and whitespace-only lines (ASCII
    and Unicode), invalid UTF-8, broken JSON, non-objects, multi-byte text, a line holding only U+FEFF, and a last
    line cut short."""
    lines = [json.dumps({"instruction": f"q{i} 你好", "output": "a" * (i % 7)}, ensure_ascii=False) for i in range(60)]
    lines[3], lines[10], lines[11] = "", "   \t", "\u3000"
    lines[17] = '{"instruction": "broken", "output": '
    lines[23], lines[29], lines[33] = "[1, 2]", '"just a string"', "\ufeff"  # U+FEFF past the start is no BOM
    text = "\ufeff" + "\r\n".join(lines[:30]) + "\r\n" + "\n".join(lines[30:]) + '\n{"instruction": "cut'
    data = text.encode("utf-8")
    return data.replace(b"q40", b"q\xff\xfe40").replace(b"q45", b"q\xe4\xbd45")


def whole_read(path: Path):
    raw = read_raw(path)
    return [(r.line, r.text, r.obj, r.error) for r in raw.records], raw.notes


def ranged_read(path: Path, piece_bytes: int):
    """Every range read on its own with the first line its predecessors' counts give it, as the Ray engine does."""
    ranges = line_ranges(path, piece_bytes)
    records, notes, first_line, total = [], LineNotes(), 1, 0
    for start, end in ranges:
        lines, counted = RawRange(path, start, end).count()
        piece = RawRange(path, start, end, first_line, chunk_size=7)
        got = [r for batch in piece.batches(max_records=5) for r in batch]
        assert len(got) == counted == piece.records
        records += [(r.line, r.text, r.obj, r.error) for r in got]
        notes += piece.line_notes
        first_line, total = first_line + lines, total + counted
    return ranges, records, notes.notes(), total


@pytest.mark.parametrize("piece_bytes", [1, 50, 333, 1 << 20])
def test_ranges_read_exactly_what_one_read_reads(tmp_path, piece_bytes):
    path = tmp_path / "tricky.jsonl"
    path.write_bytes(tricky_lines())
    ranges, records, notes, total = ranged_read(path, piece_bytes)
    assert (records, notes) == whole_read(path)
    assert total == count_records(path) == len(records)
    assert len(ranges) > 1 or piece_bytes > path.stat().st_size
    assert {n.rule for n in notes} == {"format.bom", "format.crlf", "format.blank_line", "format.invalid_utf8"}


def test_ranges_cover_the_file_at_line_starts(tmp_path):
    path = tmp_path / "tricky.jsonl"
    path.write_bytes(data := tricky_lines())
    ranges = line_ranges(path, 100)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] and data[b[0] - 1 : b[0]] == b"\n" for a, b in pairwise(ranges))


@pytest.mark.parametrize("name, content", [
    ("array.json", b'[{"instruction": "a", "output": "b"},\n{"instruction": "c", "output": "d"}]\n'),
    ("pretty.jsonl", b'{\n  "instruction": "a",\n  "output": "b"\n}\n'),
    ("scalars.jsonl", b'"a"\n"b"\n'),
    ("data.jsonl.gz", gzip.compress(b'{"instruction": "a", "output": "b"}\n' * 50)),
])
def test_files_that_cannot_be_cut_are_one_range_and_count_as_read(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert line_ranges(path, 1) == [(0, len(content))]
    with open_raw(path) as stream:
        assert count_records(path) == sum(map(len, stream.batches()))


def test_parquet_counts_from_its_metadata(tmp_path):
    path = tmp_path / "data.parquet"
    pl.read_ndjson(EXAMPLES / "messages_sample.jsonl").write_parquet(path)
    assert line_ranges(path, 1) == [(0, path.stat().st_size)]
    assert count_records(path) == len(read_raw(path).records)
