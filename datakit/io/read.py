"""Read JSONL, JSON arrays, gzip of either, and Parquet into raw records, tolerating bad input.

Every problem becomes a finding with the file and 1-based line and the rest of the file is still
read; only a file that cannot be used at all (missing, a top-level scalar, unreadable Parquet)
raises `InputError`, which the CLI turns into one clear line and exit status 2.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOM = "\ufeff"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


class InputError(Exception):
    """The input cannot be used at all. The message is the whole story: file, what, what to do."""


@dataclass
class RawRecord:
    line: int
    text: str  # the record as it appeared (JSONL line) or re-serialised (array / Parquet element)
    obj: Any = None
    error: str | None = None  # why it could not be parsed as JSON


@dataclass
class FileNote:
    """Something about the file itself, not one record (BOM, CRLF, invalid UTF-8, blank lines)."""

    rule: str
    line: int | None
    message: str
    severity: str = "info"


@dataclass
class RawFile:
    path: str
    container: str  # jsonl | json | parquet
    gzip: bool
    checksum: str
    records: list[RawRecord]
    notes: list[FileNote]


def read_raw(path: str | Path) -> RawFile:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file. Check the path (datakit reads .jsonl, .json, .json.gz, .jsonl.gz and .parquet).")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a dataset file. Pass one file, e.g. {p}/train.jsonl.")
    data = p.read_bytes()
    checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    is_gzip = data[:2] == GZIP_MAGIC
    if is_gzip:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise InputError(f"{p}: gzip stream is damaged ({e}); re-create or re-download the file.") from None
    if data[:4] == PARQUET_MAGIC:
        return RawFile(str(p), "parquet", is_gzip, checksum, _parquet_records(p, data), [])
    notes: list[FileNote] = []
    text = _decode(data, notes)
    if text.startswith(BOM):
        text = text[1:]
        notes.append(FileNote("format.bom", 1, "file starts with a UTF-8 byte-order mark; it was ignored. "
                              "Some JSON tools reject it: `datakit fix` writes files without one."))
    if "\r\n" in text:
        notes.append(FileNote("format.crlf", None, "file uses Windows line endings (CRLF); they were read as plain newlines."))
        text = text.replace("\r\n", "\n")
    head = text.lstrip()
    if not head:
        raise InputError(f"{p}: file is empty (no records). Nothing to audit.")
    if head[0] == "[":
        return RawFile(str(p), "json", is_gzip, checksum, _array_records(p, text, notes), notes)
    if head[0] not in "{":
        _reject_scalar(p, text)
    records = _jsonl_records(text, notes)
    if len(records) > 1 and all(r.error for r in records):
        # A single pretty-printed object spanning many lines parses as a whole; it is one record.
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            return RawFile(str(p), "json", is_gzip, checksum, [RawRecord(1, text.strip(), obj)], notes)
    return RawFile(str(p), "jsonl", is_gzip, checksum, records, notes)


def _decode(data: bytes, notes: list[FileNote]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        lines = [i + 1 for i, ln in enumerate(text.split("\n")) if "\ufffd" in ln]
        shown = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
        notes.append(FileNote("format.invalid_utf8", lines[0] if lines else None,
                              f"invalid UTF-8 bytes on line(s) {shown}; they were replaced by U+FFFD. "
                              "Re-export the source as UTF-8 (e.g. `iconv -f GB18030 -t UTF-8`).", "warning"))
        return text


def _reject_scalar(p: Path, text: str) -> None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return  # not JSON as a whole: read it as JSONL and report each bad line
    raise InputError(f"{p}: top-level JSON value is a {type(value).__name__}, not records. "
                     "Expected JSON Lines (one object per line) or a JSON array of objects.")


def _jsonl_records(text: str, notes: list[FileNote]) -> list[RawRecord]:
    records: list[RawRecord] = []
    blank: list[int] = []
    lines = text.split("\n")
    last = len(lines)
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            if no != last:
                blank.append(no)
            continue
        try:
            records.append(RawRecord(no, line, json.loads(line)))
        except json.JSONDecodeError as e:
            why = "truncated record (the file ends mid-record)" if no == last and not text.endswith("\n") else e.msg
            records.append(RawRecord(no, line, None, f"{why} at column {e.colno}"))
        except RecursionError:
            records.append(RawRecord(no, line, None, "nesting too deep to parse"))
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else "")
        notes.append(FileNote("format.blank_line", blank[0], f"{len(blank)} blank line(s) skipped (line {shown})."))
    return records


def _array_records(p: Path, text: str, notes: list[FileNote]) -> list[RawRecord]:
    """Elements of a top-level array, decoded one at a time so one broken element does not lose the rest."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    except RecursionError:
        raise InputError(f"{p}: JSON nesting too deep to parse.") from None
    if isinstance(values, list):
        return [RawRecord(i + 1, json.dumps(v, ensure_ascii=False), v) for i, v in enumerate(values)]
    return _tolerant_array(text, notes)


def _tolerant_array(text: str, notes: list[FileNote]) -> list[RawRecord]:
    decoder = json.JSONDecoder()
    records: list[RawRecord] = []
    pos = text.index("[") + 1
    first = re.compile(r"\n([ \t]*)\S").search(text, pos)
    # Resynchronise after a broken element at the next element start: a line indented like the first
    # element (pretty-printed arrays), else the next "},{" (compact arrays).
    next_element = re.compile(r"\n" + re.escape(first.group(1)) + r"(?=[\{\[])" if first else r"(?<=\}),\s*(?=\{)")
    n = len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        index = len(records) + 1
        try:
            value, end = decoder.raw_decode(text, pos)
            records.append(RawRecord(index, text[pos:end], value))
            pos = end
        except json.JSONDecodeError as e:
            physical = text.count("\n", 0, e.pos) + 1
            resume = next_element.search(text, max(e.pos, pos + 1))
            stop = resume.start() if resume else n
            records.append(RawRecord(index, text[pos:stop].strip().rstrip(","), None,
                                     f"{e.msg} (file line {physical}, column {e.colno})"))
            pos = resume.end() if resume else n
    if not text.rstrip().endswith("]"):
        notes.append(FileNote("format.truncated_file", len(records) or None,
                              "JSON array is not closed with ']': the file looks truncated. Records before the cut were read.",
                              "warning"))
    return records


def _parquet_records(p: Path, data: bytes) -> list[RawRecord]:
    import io

    import polars as pl

    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 -- polars raises several unrelated types for damaged files
        raise InputError(f"{p}: Parquet file cannot be read ({type(e).__name__}: {e}).") from None
    rows = frame.to_dicts()
    return [RawRecord(i + 1, json.dumps(r, ensure_ascii=False, default=str), r) for i, r in enumerate(rows)]
