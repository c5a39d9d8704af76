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


# The columnar form every rule returns. A message is stored as its `template` (the text with `{}` where values go,
# the same for every finding of one kind) and the finding's own `values`: a million findings carry a few dozen
# templates, not a million copies of the same sentence. `with_messages` renders them; `Finding` is a rendered row.
PLACEHOLDER = "{}"
FINDING_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String,
    "severity": pl.String,
    "source": pl.String,
    "line": pl.Int64,
    "record_id": pl.Int64,
    "field": pl.String,
    "template": pl.String,
    "values": pl.List(pl.String),
    "excerpt": pl.String,
    "related_line": pl.Int64,
    "related_source": pl.String,
    "detail": pl.String,
}
FINDING_COLUMNS = [c for c in FINDING_SCHEMA if c not in ("template", "values")] + ["message"]


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)


def findings_frame(rows: list[dict]) -> pl.DataFrame:
    """Findings built row by row (for the few rules that are not vectorised) in the shared schema.

    A row gives either `template` and `values`, or a finished `message` (stored as the template "{}" with the
    message as its one value)."""
    if not rows:
        return empty_findings()
    shaped = []
    for r in rows:
        row = {k: r.get(k) for k in FINDING_SCHEMA}
        if "message" in r:
            row["template"], row["values"] = PLACEHOLDER, [r["message"]]
        shaped.append(row)
    return pl.DataFrame(shaped, schema=FINDING_SCHEMA)


def render(template: str, values: list[str | None]) -> str:
    """One message: the template's `{}` replaced by the values in order."""
    parts = template.split(PLACEHOLDER)
    out = [parts[0]]
    for value, part in zip(values, parts[1:]):
        out += [value if value is not None else "null", part]
    return "".join(out)


def message_expr(templates: list[str]) -> pl.Expr:
    """The rendered message of each row whose template is one of `templates`, vectorised per template."""
    expr = pl.lit(None, dtype=pl.String)
    for template in templates:
        parts = template.split(PLACEHOLDER)
        pieces: list[pl.Expr] = [pl.lit(parts[0])]
        for i, part in enumerate(parts[1:]):
            pieces += [pl.col("values").list.get(i, null_on_oob=True).fill_null("null"), pl.lit(part)]
        expr = pl.when(pl.col("template") == template).then(pl.concat_str(pieces)).otherwise(expr)
    return expr


def with_messages(frame: pl.DataFrame) -> pl.DataFrame:
    """Findings with their `message` rendered, in the column order of `Finding` (template and values dropped)."""
    templates = frame["template"].unique().drop_nulls().to_list() if frame.height else []
    return frame.with_columns(message_expr(templates).alias("message")).select(FINDING_COLUMNS)
