"""What a rule reports: one finding per flagged record (or file position), as data, never as an exception."""
from __future__ import annotations

from enum import Enum

import polars as pl
from pydantic import BaseModel, Field


class Severity(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


class Finding(BaseModel):
    """One problem at one place. `rule` is the `family.specific` code used everywhere (code, JSON, HTML, docs)."""

    rule: str = Field(description="Rule code, `family.specific`, e.g. `length.too_long`.")
    severity: Severity
    source: str = Field(description="File the record came from.")
    line: int | None = Field(description="1-based line in JSONL; record index + 1 in a JSON array or Parquet file.")
    record_id: int | None = Field(default=None, description="Row id in the normalised frame; null for file-level findings.")
    field: str | None = Field(default=None, description="Field or turn the finding is about, e.g. `output` or `messages[3]`.")
    message: str = Field(description="What is wrong, why it matters and what to do.")
    excerpt: str | None = Field(default=None, description="The offending text, short, for highlighting.")
    related_line: int | None = Field(default=None, description="Line of the record this one is related to (its duplicate, its eval match).")
    related_source: str | None = Field(default=None, description="File of the related record when it is another file (e.g. an eval set).")
    detail: str | None = Field(default=None, description="Extra detail such as a measured value or similarity.")


# The columnar form every rule returns; `Finding` is the same row as a pydantic model.
FINDING_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String,
    "severity": pl.String,
    "source": pl.String,
    "line": pl.Int64,
    "record_id": pl.Int64,
    "field": pl.String,
    "message": pl.String,
    "excerpt": pl.String,
    "related_line": pl.Int64,
    "related_source": pl.String,
    "detail": pl.String,
}


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)


def findings_frame(rows: list[dict]) -> pl.DataFrame:
    """Findings built row by row (for the few rules that are not vectorised) in the shared schema."""
    if not rows:
        return empty_findings()
    return pl.DataFrame([{k: r.get(k) for k in FINDING_SCHEMA} for r in rows], schema=FINDING_SCHEMA)
