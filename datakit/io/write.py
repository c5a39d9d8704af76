"""Writing records in the container an output's name says (JSON Lines, JSON array, Parquet, each optionally gzip), atomically.

Records stream into a temporary file that replaces the target only once complete (`datakit.io.atomic`),
so a crash mid-way leaves the old file or none. `write_records` writes an iterable; `record_writer` takes
records as a command makes them, so that one pass over an input can fill several files (kept and rejected).
Memory holds one Parquet row group at most. Output is canonical (UTF-8 JSON without ASCII escapes,
fixed gzip timestamp), so the same records always give the same bytes.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

from datakit.io.atomic import atomic_open
from datakit.io.read import RawRecord

CONTAINERS = ("jsonl", "json", "parquet")
ROW_GROUP_ROWS = 20_000  # Parquet rows held, then written as one row group; the first group sets the column types
TO_JSON_LINES = "Write JSON Lines instead (an output name ending in .jsonl)."


def _line(record: Any) -> str:
    """One record as compact JSON: the unit every text container is written in."""
    return json.dumps(record, ensure_ascii=False)


def _pretty(record: Any) -> str:
    """One element of a JSON array as `json.dumps(array, indent=2)` lays it out (strings hold no raw newline)."""
    return "  " + json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")


def write_records(path: str | Path, records: Iterable[Any], container: str = "jsonl", gzip_: bool = False) -> int:
    """Write `records` to `path` as `container` (jsonl | json | parquet), gzip-compressed when asked; returns the count."""
    with record_writer(path, container, gzip_) as out:
        out.write(records)
    return out.count


@contextmanager
def record_writer(path: str | Path, container: str = "jsonl", gzip_: bool = False) -> Iterator[RecordSink]:
    """A sink that writes the records it is given to `path` as `container` as they come; the file appears, complete,
    when the block ends without an error, and not at all otherwise."""
    if container not in CONTAINERS:
        raise ValueError(f"unknown container '{container}'; expected one of {', '.join(CONTAINERS)}.")
    with atomic_open(path, "wb") as raw, _maybe_gzip(raw, gzip_) as f:
        sink = SINKS[container](f, str(path))
        try:
            yield sink
            sink.close()
        except BaseException:
            sink.discard()
            raise


def _maybe_gzip(raw: IO[bytes], gzip_: bool) -> Any:
    return gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gzip_ else nullcontext(raw)


class RecordSink:
    """Records written one container's way; `count` is how many it was given."""

    def __init__(self, f: IO[bytes], name: str):
        self.f, self.name, self.count = f, name, 0

    def write(self, records: Iterable[Any]) -> None:
        for record in records:
            self.f.write(self._encoded(record))
            self.count += 1

    def _encoded(self, record: Any) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Write what ends the file."""

    def discard(self) -> None:
        """Let go of the file without finishing it (its temporary file is about to be removed)."""


class _JsonLinesSink(RecordSink):
    def _encoded(self, record: Any) -> bytes:
        return (_line(record) + "\n").encode("utf-8")


class _JsonArraySink(RecordSink):
    def _encoded(self, record: Any) -> bytes:
        return (("[\n" if self.count == 0 else ",\n") + _pretty(record)).encode("utf-8")

    def close(self) -> None:
        self.f.write(b"\n]\n" if self.count else b"[]\n")


class _ParquetSink(RecordSink):
    """Rows gathered into row groups of ROW_GROUP_ROWS and written one group at a time.

    A Parquet file has one set of column types, taken from the first group as polars infers them. A later group is
    cast to them where inferring every row at once would have given the same types (a column missing or all null,
    integers in a float column, numbers in a text column, struct fields missing); anything else (a new column, a type
    the first rows did not have) is a clear error that points to JSON Lines.
    """

    def __init__(self, f: IO[bytes], name: str):
        super().__init__(f, name)
        self._rows: list[Any] = []
        self._writer: Any = None  # pyarrow.parquet.ParquetWriter, opened with the first group
        self._schema: Any = None  # the first group's polars schema

    def write(self, records: Iterable[Any]) -> None:
        for record in records:
            self._rows.append(record)
            self.count += 1
            if len(self._rows) == ROW_GROUP_ROWS:
                self._write_group()

    def close(self) -> None:
        if self._rows or self._writer is None:
            self._write_group()
        self._writer.close()

    def discard(self) -> None:
        if self._writer is not None:  # else pyarrow closes it when collected, writing to a closed file
            self._writer.close()

    def _write_group(self) -> None:
        import pyarrow.parquet as pq

        first_row = self.count - len(self._rows) + 1
        frame = self._frame(self._rows)
        self._rows = []
        if self._writer is None:
            self._schema = frame.schema
            table = frame.to_arrow()
            self._writer = pq.ParquetWriter(self.f, table.schema, compression="zstd")
        else:
            table = self._conformed(frame, first_row).to_arrow()
        self._writer.write_table(table)

    def _frame(self, rows: list[Any]) -> Any:
        import polars as pl

        try:
            return pl.DataFrame(rows, infer_schema_length=None)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as e:
            raise ValueError(f"{self.name}: records cannot be stored as one Parquet table ({type(e).__name__}: {e}). "
                             f"{TO_JSON_LINES}") from None

    def _conformed(self, frame: Any, first_row: int) -> Any:
        """The group with the first group's columns and types, or ValueError naming the columns that do not fit."""
        import polars as pl

        if frame.schema == self._schema:
            return frame
        misfits = [f"{name} ({dtype})" for name, dtype in frame.schema.items()
                   if name not in self._schema or _supertype(self._schema[name], dtype) != self._schema[name]]
        if misfits:
            raise ValueError(f"{self.name}: records cannot be stored as one Parquet table: from row {first_row} on, "
                             f"column(s) {', '.join(misfits)} do not fit the columns the first {ROW_GROUP_ROWS} rows set "
                             f"({', '.join(f'{n} ({t})' for n, t in self._schema.items()) or 'none'}). {TO_JSON_LINES}")
        return pl.concat([pl.DataFrame(schema=self._schema), frame], how="diagonal_relaxed")


def _supertype(a: Any, b: Any) -> Any:
    """The type polars gives a column holding values of types a and b (None when none holds both)."""
    import polars as pl

    try:
        return pl.concat([pl.DataFrame(schema={"c": a}), pl.DataFrame(schema={"c": b})], how="vertical_relaxed").schema["c"]
    except pl.exceptions.PolarsError:
        return None


SINKS: dict[str, type[RecordSink]] = {"jsonl": _JsonLinesSink, "json": _JsonArraySink, "parquet": _ParquetSink}


DATA_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


def container_of(path: str | Path) -> tuple[str, bool]:
    """(container, gzip) an output's name asks for: .jsonl (or .ndjson), .json or .parquet, each optionally + .gz. The
    name decides, whatever the input was; a name that says none of them is written as JSON Lines (`container_notes`)."""
    kind, packed = _named(path)
    return kind or "jsonl", packed


def container_notes(*paths: str | Path | None) -> list[str]:
    """A note for each output whose name does not say its container (written as JSON Lines), so nobody guesses."""
    notes = []
    for path in (p for p in paths if p is not None):
        kind, packed = _named(path)
        if kind is None:
            notes.append(f"{path} is written as JSON Lines{' (gzip)' if packed else ''}: its name ends in none of .jsonl, "
                         ".json, .parquet (each optionally + .gz), which is how an output's container is chosen.")
    return notes


def rejected_container(path: str | Path) -> tuple[str, bool]:
    """(container, gzip) of a rejected file by its name: JSON Lines or a JSON array, optionally gzip. Parquet is refused
    before any work starts: rejected rows hold records of any shape (or none), which one Parquet table cannot."""
    kind, packed = container_of(path)
    if kind == "parquet":
        raise ValueError(f"{path}: a rejected file is written as JSON Lines or a JSON array (its rows hold records of any "
                         "shape, which one Parquet table cannot); name it .jsonl or .json (optionally + .gz).")
    return kind, packed


def _named(path: str | Path) -> tuple[str | None, bool]:
    """(the container the name's suffix says or None, whether it ends in .gz)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    packed = bool(suffixes) and suffixes[-1] == ".gz"
    if packed:
        suffixes = suffixes[:-1]
    return DATA_SUFFIXES.get(suffixes[-1] if suffixes else ""), packed


def suffix_for(container: str, gzip_: bool) -> str:
    """The file suffix a container is written with: .jsonl, .json or .parquet, plus .gz."""
    return "." + container + (".gz" if gzip_ else "")


def refuse_overwrite(command: str, inputs: Iterable[str | Path], outputs: Iterable[str | Path | None]) -> None:
    """Raise ValueError (a one-line user error) when an output would replace an input, or two outputs are one
    file: no command ever writes over what it reads. Paths are compared resolved, and as files (hard links)."""
    sources = [Path(p) for p in inputs]
    targets = [Path(p) for p in outputs if p is not None]
    for target in targets:
        for source in sources:
            if target.resolve() == source.resolve() or (target.exists() and source.exists() and target.samefile(source)):
                raise ValueError(f"{target}: is the input file, and {command} never writes over its input (nothing would "
                                 "be left to compare or recover). Choose another output path.")
    seen: dict[Path, Path] = {}
    for target in targets:
        if target.resolve() in seen:
            raise ValueError(f"{target}: named for two outputs of {command} ({seen[target.resolve()]} too); "
                             "give each output its own path.")
        seen[target.resolve()] = target


def sibling(path: str | Path, tag: str) -> Path:
    """`clean.jsonl` -> `clean.<tag>.jsonl`: a companion file next to an output (its rejected records, its overflow)."""
    return Path(path).with_name(f"{data_stem(path)}.{tag}.jsonl")


def data_stem(path: str | Path) -> str:
    """A data file's name without its container suffixes: `clean.jsonl.gz` -> `clean`, `notes.txt` -> `notes.txt`."""
    name = Path(path).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and "." + suffix.lower() in DATA_SUFFIXES else name


def rejection(source: str, line: int | None, raw: str, record: Any, reasons: list[dict]) -> dict:
    """One line of a rejected file: where the record came from, every reason, the record as parsed (None when it
    could not be) and its text as read, so the input can be rebuilt from clean + rejected."""
    return {"source": source, "line": line, "reasons": reasons, "record": record, "raw": raw}


def unreadable_row(source: str, record: RawRecord) -> dict:
    """The rejected-file row of one record that is not valid JSON (`record.error` is set), for a command that streams."""
    return rejection(source, record.line, record.text, None, [{
        "rule": "format.invalid_json", "severity": "error", "fix": "drop",
        "message": f"line {record.line} is not valid JSON: {record.error}. It cannot be written as a record; repair it "
                   "by hand or run `datakit fix` first."}])
