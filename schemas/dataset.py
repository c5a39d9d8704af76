"""The normalised dataset every stage shares: one polars row per input record, valid or not.

Columns (measurements are added once by `datakit.measure` and reused by rules, report, fixers, trainer):

- id: row number (stable for one read); source: file; line: 1-based line (JSONL) or record index + 1
- valid: parsed and validated as a known format; format: alpaca | sharegpt | openai | invalid
- raw: the record's original text (JSONL line) or its JSON serialisation (array / Parquet element)
- system, prompt (system + user text), response (assistant text), instruction, input (Alpaca only)
- messages: list of {role, content} with canonical roles; turns: number of non-system turns
- label: value of the configured label field, as text
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

BASE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64,
    "source": pl.String,
    "line": pl.Int64,
    "valid": pl.Boolean,
    "format": pl.String,
    "raw": pl.String,
    "system": pl.String,
    "prompt": pl.String,
    "response": pl.String,
    "instruction": pl.String,
    "input": pl.String,
    "messages": pl.List(MESSAGE),
    "turns": pl.Int64,
    "label": pl.String,
}


@dataclass
class SourceFile:
    """One input file as a whole: how it is stored and what the reader noticed about the file itself.

    `notes` are file-level findings (BOM, CRLF, blank lines, invalid UTF-8, an unclosed array) as dicts with
    rule, severity, line and message; they are known once the whole file has been read."""

    path: str
    container: str = "jsonl"  # jsonl | json | parquet
    gzip: bool = False
    checksum: str = ""
    records: int = 0
    notes: list[dict] = field(default_factory=list)


@dataclass
class Dataset:
    """Records read from a file, or one batch of them: the frame of records plus findings produced while reading
    (bad JSON, wrong types, ...). Ids and lines are those of the whole input, so a batch's findings point into it."""

    path: str
    frame: pl.DataFrame
    read_findings: pl.DataFrame
    container: str = "jsonl"  # jsonl | json | parquet, each optionally gzip: how to write it back
    gzip: bool = False
    checksum: str = ""
    notes: list[dict] = field(default_factory=list)  # file-level findings of a whole-file read (see SourceFile.notes)
    measured: set[str] = field(default_factory=set)

    def source_file(self) -> SourceFile:
        return SourceFile(self.path, self.container, self.gzip, self.checksum, self.frame.height, self.notes)

    @property
    def valid(self) -> pl.DataFrame:
        return self.frame.filter(pl.col("valid"))

    def __len__(self) -> int:
        return self.frame.height
