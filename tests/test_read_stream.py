"""The streaming reader: any batch size and any chunk boundary give the same records, notes and checksum as one read."""
from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from datakit.io import read as reader
from datakit.io.read import CHUNK_SIZE, FileNote, InputError, RawRecord, open_raw, read_raw
from tests.conftest import EXAMPLES, SHARED_DATA

DATA = Path(__file__).parent / "data"
TINY_BATCHES = ({"max_records": 1}, {"max_records": 3}, {"max_bytes": 1})


@dataclass
class Read:
    container: str
    gzip: bool
    checksum: str
    records: list[RawRecord]
    notes: list[FileNote]


def read_stream(path: Path, chunk_size: int = CHUNK_SIZE, **limits: int) -> Read:
    """Read every batch, checking each stays within its limits and that the position ends at the file's size."""
    with open_raw(path, chunk_size=chunk_size) as stream:
        records, position = [], 0
        for batch in stream.batches(**limits):
            assert 0 < len(batch) <= limits.get("max_records", len(batch))
            assert len(batch) == 1 or sum(len(r.text) for r in batch) <= limits.get("max_bytes", reader.BATCH_BYTES)
            assert stream.position >= position
            position = stream.position
            records += batch
        assert stream.position == stream.size == path.stat().st_size
        assert stream.records == len(records)
        return Read(stream.container, stream.gzip, stream.checksum, records, stream.notes)


def dataset_files() -> list[Path]:
    shared = sorted(SHARED_DATA.glob("*/*.json*")) if SHARED_DATA.is_dir() else []
    return sorted(EXAMPLES.glob("*.json*")) + shared + sorted(DATA.glob("*.json*"))


@pytest.mark.parametrize("path", dataset_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_dataset_file_reads_the_same_in_any_batches_and_chunks(path):
    whole = read_stream(path)
    raw = read_raw(path)
    assert (raw.container, raw.gzip, raw.checksum, raw.records, raw.notes) == (
        whole.container, whole.gzip, whole.checksum, whole.records, whole.notes)
    assert whole.checksum == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    for limits in TINY_BATCHES:
        assert read_stream(path, chunk_size=4099, **limits) == whole, limits


def test_shared_data_is_present_or_skipped(shared_data):
    """The checks above cover ../shared/data only where it exists; this one shows a skip where it does not."""
    assert any(shared_data.glob("*/*.json*"))


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json*")), ids=lambda p: p.name)
def test_adversarial_files_read_the_same_with_every_tiny_chunk(path):
    whole = read_stream(path)
    for chunk_size in (1, 2, 3, 5, 64):
        assert read_stream(path, chunk_size=chunk_size, max_records=3) == whole, chunk_size


def test_valid_files_give_what_the_standard_json_parser_gives():
    """Independent of the reader: JSON Lines line by line, arrays whole, elements in canonical text."""
    for path in dataset_files():
        if path.name.startswith("adversarial") or path.name == "dataset_info.json":  # broken on purpose; not records
            continue
        text = path.read_text(encoding="utf-8")
        got = [(r.line, r.text, r.obj) for r in read_stream(path, chunk_size=4099).records]
        if text.lstrip().startswith("["):
            assert got == [(i, json.dumps(v, ensure_ascii=False), v) for i, v in enumerate(json.loads(text), 1)], path
        else:
            lines = text.split("\n")
            assert got == [(i, ln, json.loads(ln)) for i, ln in enumerate(lines, 1) if ln.strip()], path


def test_adversarial_jsonl_keeps_todays_lines_errors_and_notes():
    got = read_stream(DATA / "adversarial.jsonl", chunk_size=7, max_records=1)
    assert [r.line for r in got.records] == [1, 2, 3] + list(range(5, 43))
    errors = {r.line: r.error for r in got.records if r.error}
    assert errors == {3: "Expecting value at column 37", 42: "truncated record (the file ends mid-record) at column 39"}
    assert [(n.rule, n.line) for n in got.notes] == [
        ("format.invalid_utf8", 18), ("format.bom", 1), ("format.crlf", None), ("format.blank_line", 4)]
    # line 19 holds a legitimate U+FFFD: once the file has an invalid byte, lines holding U+FFFD are listed, as before
    assert "line(s) 18, 19;" in got.notes[0].message
    assert got.notes[3].message == "1 blank line(s) skipped (line 4)."


def test_adversarial_array_keeps_todays_broken_element_and_note():
    got = read_stream(DATA / "adversarial_array.json", chunk_size=5)
    assert [(r.line, r.error) for r in got.records] == [
        (1, None), (2, None), (3, "Unterminated string starting at (file line 14, column 19)")]
    assert got.records[2].text == '{"instruction": "interrupted wri'
    assert json.loads(got.records[0].text) == got.records[0].obj  # valid elements: canonical text
    assert [(n.rule, n.line) for n in got.notes] == [("format.truncated_file", 3)]


def test_chunk_boundaries_inside_a_line_a_character_and_a_crlf_pair(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes('\ufeff{"a": "中文 😀"}\r\n\r\n{"b": "caf'.encode() + b'\xe9"}\r\n{"c": 1}')  # \xe9: Latin-1, invalid
    expected = [RawRecord(1, '{"a": "中文 😀"}', {"a": "中文 😀"}), RawRecord(3, '{"b": "caf\ufffd"}', {"b": "caf\ufffd"}),
                RawRecord(4, '{"c": 1}', {"c": 1})]
    for chunk_size in range(1, len(p.read_bytes()) + 1):  # every split point of every character and of each "\r\n"
        got = read_stream(p, chunk_size=chunk_size)
        assert got.records == expected, chunk_size
        assert [(n.rule, n.line) for n in got.notes] == [
            ("format.invalid_utf8", 3), ("format.bom", 1), ("format.crlf", None), ("format.blank_line", 2)]


def test_invalid_bytes_at_a_chunk_end_are_replaced_as_a_whole_file_decode_would(tmp_path):
    rng = random.Random(7)
    alphabet = [b"a", b"\n", b"\r", b"\xe4", b"\xb8", b"\xad", b"\xf0\x9f\x98\x80", b"\xc3", b"\xff", b"\x80", b'"', b"{}",
                b"\xef\xbf\xbd"]
    for case in range(40):
        data = b"{" + b"".join(rng.choice(alphabet) for _ in range(60))
        p = tmp_path / f"f{case}.jsonl"
        p.write_bytes(data)
        whole = read_stream(p)
        lines = data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
        assert [r.text for r in whole.records] == [ln for ln in lines if ln.strip()]
        for chunk_size in (1, 2, 3, 4, 5):
            assert read_stream(p, chunk_size=chunk_size) == whole, (case, chunk_size)


def test_a_50_mb_line_spanning_many_chunks(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAKIT_MAX_RECORD_CHARS", str(64 << 20))  # over the default limit, which would reject it
    p = tmp_path / "big.jsonl"
    big = "中" * (25 * 2**20)  # 75 MB of UTF-8 on one line
    p.write_text(json.dumps({"output": big}, ensure_ascii=False) + '\n{"n": 2}\n', encoding="utf-8")
    with open_raw(p, chunk_size=2**20) as stream:
        batches = list(stream.batches(max_bytes=2**20))
    assert [len(b) for b in batches] == [1, 1]
    assert batches[0][0].obj["output"] == big and batches[1][0].line == 2


@pytest.mark.parametrize("layout", ["pretty", "compact"])
def test_json_array_elements_cut_at_every_chunk_boundary(tmp_path, layout):
    values = [12345678901234567890, {"s": "\u00e9\\ \" \U0001F600", "t": True}, [1.5e10, None, False], "x" * 40, -0.25, {}]
    text = json.dumps(values, indent=2 if layout == "pretty" else None)
    p = tmp_path / "a.json"
    p.write_text(text)
    expected = [RawRecord(i, json.dumps(v, ensure_ascii=False), v) for i, v in enumerate(values, 1)]
    for chunk_size in range(1, 40):
        got = read_stream(p, chunk_size=chunk_size, max_records=2)
        assert got.records == expected and got.notes == [], chunk_size


def broken_array(n: int, bad: int, layout: str) -> tuple[str, int]:
    """A JSON array of n records whose element `bad` (1-based) is broken, and the file line of its error."""
    good = [json.dumps({"instruction": f"q{i}", "output": "a" * (i % 50)}) for i in range(1, n + 1)]
    good[bad - 1] = '{"instruction": "broken", "output": }'
    if layout == "pretty":
        return "[\n  " + ",\n  ".join(good) + "\n]\n", bad + 1
    return "[" + ",".join(good) + "]", 1


@pytest.mark.parametrize("layout", ["pretty", "compact"])
def test_a_broken_element_in_the_middle_of_a_large_array_keeps_the_rest(tmp_path, layout):
    text, line = broken_array(3000, 1500, layout)
    p = tmp_path / "a.json"
    p.write_text(text)
    got = read_stream(p, chunk_size=4096, max_records=100)
    assert [r.line for r in got.records] == list(range(1, 3001))
    assert [r.line for r in got.records if r.error] == [1500]
    bad = got.records[1499]
    column = text.split("\n")[line - 1].index(': }') + 3
    assert bad.error == f"Expecting value (file line {line}, column {column})"
    assert bad.text == '{"instruction": "broken", "output": }'
    assert got.records[1500].obj == {"instruction": "q1501", "output": "a"}
    assert got.notes == [] and read_stream(p) == got


def test_position_grows_to_the_size_and_the_checksum_is_of_the_bytes_on_disk(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress("".join(json.dumps({"i": i, "pad": "x" * (i % 90)}) + "\n" for i in range(20000)).encode()))
    with open_raw(p, chunk_size=4096) as stream:
        assert stream.position < stream.size
        positions = [stream.position for _ in stream.batches(max_records=1000)]
        assert positions == sorted(positions) and positions[0] < stream.size
        assert stream.position == stream.size and stream.records == 20000
        assert stream.checksum == "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()


def test_gzip_truncated_mid_stream_raises_after_the_records_before_it(tmp_path):
    data = gzip.compress("".join(json.dumps({"i": i, "r": random.Random(i).random()}) + "\n" for i in range(50000)).encode())
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])
    with open_raw(p, chunk_size=4096) as stream:
        seen = 0
        with pytest.raises(InputError, match=r"cut.jsonl.gz: gzip stream is damaged \(Compressed file ended before"):
            for batch in stream.batches(max_records=100):
                seen += len(batch)
        assert seen > 0
    with pytest.raises(InputError, match="gzip stream is damaged"):
        read_raw(p)


def test_gzip_damage_is_reported_as_gzip_decompress_reports_it(tmp_path):
    body = b'{"a": 1}\n' * 1000
    data = bytearray(gzip.compress(body))
    data[-8] ^= 0xFF  # the stored CRC
    p = tmp_path / "crc.jsonl.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"crc.jsonl.gz: gzip stream is damaged \(CRC check failed\); re-create"):
        read_raw(p)
    header_only = tmp_path / "header.jsonl.gz"
    header_only.write_bytes(gzip.compress(body)[:5])
    with pytest.raises(InputError, match="gzip stream is damaged"):
        open_raw(header_only)


def test_gzip_members_and_zero_padding_read_as_their_concatenation(tmp_path):
    p = tmp_path / "m.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"a": 1}\n') + b"\x00" * 700 + gzip.compress(b'{"a": 2}\n'))
    for chunk_size in (1, 3, 64, CHUNK_SIZE):
        got = read_stream(p, chunk_size=chunk_size)
        assert [r.obj for r in got.records] == [{"a": 1}, {"a": 2}] and got.gzip


def parquet_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "instruction": [f"q{i}" for i in range(25000)],
        "output": [None if i % 7 == 0 else "答" * (i % 5) for i in range(25000)],
        "tags": [["a", "b"][: i % 3] for i in range(25000)],
        "meta": [{"n": i, "w": i / 3} for i in range(25000)],
        "category": pl.Series([("x", "y")[i % 2] for i in range(25000)], dtype=pl.Categorical),
    })


def test_parquet_streams_the_rows_polars_reads(tmp_path):
    p = tmp_path / "d.parquet"
    frame = parquet_frame()
    frame.write_parquet(p, row_group_size=4000)
    rows = pl.read_parquet(p).to_dicts()
    got = read_stream(p, chunk_size=4096, max_records=3000)
    assert (got.container, got.gzip, got.notes) == ("parquet", False, [])
    assert [r.obj for r in got.records] == rows
    assert [r.line for r in got.records] == list(range(1, len(rows) + 1))
    assert got.records[8].text == json.dumps(rows[8], ensure_ascii=False, default=str)
    assert got.checksum == "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()


def test_gzip_of_parquet_goes_through_a_temporary_file_that_is_removed(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    p = tmp_path / "d.parquet"
    parquet_frame().head(100).write_parquet(p)
    gz = tmp_path / "d.parquet.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    got = read_stream(gz, chunk_size=1000)
    assert (got.container, got.gzip) == ("parquet", True) and len(got.records) == 100
    with open_raw(gz) as stream:  # stopped early: closing the stream removes it
        batches = stream.batches(max_records=10)
        next(batches)
        assert list(scratch.iterdir())
    assert not list(scratch.iterdir())


def test_damaged_parquet_is_one_clear_error(tmp_path):
    p = tmp_path / "d.parquet"
    parquet_frame().head(100).write_parquet(p)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(p.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cut.parquet: Parquet file cannot be read \("):
        read_raw(cut)


def test_inputs_that_cannot_be_used_say_so_before_any_batch(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_raw(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        open_raw(tmp_path)
    blank = tmp_path / "blank.jsonl"
    blank.write_text(" \n\t\n")
    with pytest.raises(InputError, match="file is empty"):
        open_raw(blank)
    scalar = tmp_path / "s.json"
    scalar.write_text('\n  "just a string"  \n\n')
    with open_raw(scalar) as stream, pytest.raises(InputError, match="top-level JSON value is a str, not records"):
        next(stream.batches())


def test_a_scalar_line_beside_non_json_whitespace_is_a_record_as_before(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text("42\n\f\n")  # json.loads of the whole text fails on the form feed: read as JSON Lines
    got = read_stream(p)
    assert [(r.line, r.obj) for r in got.records] == [(1, 42)]
    assert got.notes[0].message == "1 blank line(s) skipped (line 2)."


def test_one_pretty_printed_object_is_one_record_up_to_a_size(tmp_path, monkeypatch):
    p = tmp_path / "obj.json"
    p.write_text('\n{\n  "instruction": "q",\n\n  "output": "a"\n}\n')
    got = read_stream(p, max_records=1)
    assert got.container == "json"
    assert got.records == [RawRecord(1, '{\n  "instruction": "q",\n\n  "output": "a"\n}', {"instruction": "q", "output": "a"})]
    assert [(n.rule, n.line) for n in got.notes] == [("format.blank_line", 1)]
    monkeypatch.setattr(reader, "ONE_OBJECT_MAX_CHARS", 20)  # beyond the size, each line is a failed record
    got = read_stream(p)
    assert got.container == "jsonl" and len(got.records) == 4 and all(r.error for r in got.records)


def test_nesting_too_deep(tmp_path):
    deep = "[" * 100000 + "]" * 100000
    array = tmp_path / "a.json"
    array.write_text(f'[{{}}, {{"x": {deep}}}, {{"a": 1}}]')  # one element too deep: a failed record, the rest read
    assert [(r.obj, r.error) for r in read_raw(array).records] == [
        ({}, None), (None, "nesting too deep to parse (file line 1, column 6)"), ({"a": 1}, None)]
    lines = tmp_path / "d.jsonl"
    lines.write_text(f'{{"a": 1}}\n{deep}\n')
    assert [r.error for r in read_raw(lines).records] == [None, "nesting too deep to parse"]


def test_a_stream_is_read_once_and_its_totals_wait_for_the_end(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n')
    with open_raw(p) as stream:
        batches = stream.batches(max_records=1)
        with pytest.raises(RuntimeError, match="known once every batch has been read"):
            _ = stream.checksum
        with pytest.raises(RuntimeError, match="read once"):
            stream.batches()
        assert len(list(batches)) == 2 and stream.records == 2 and stream.notes == []
    with pytest.raises(ValueError, match="at least 1"):
        open_raw(p).batches(max_bytes=0)
