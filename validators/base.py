"""The one `Rule` protocol every rule family implements, and the bookkeeping helpers they share.

A family states only its judgement (which rows, which code, what message); turning that into the
shared findings frame is done here, once (datatrove's filter/base split).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import polars as pl

from schemas.config import AuditConfig
from schemas.dataset import Dataset, SourceFile
from schemas.findings import FINDING_SCHEMA, Severity, empty_findings

T = TypeVar("T")


@dataclass(frozen=True)
class RuleCode:
    """One specific check: `family.specific` code, its default severity, and why it exists."""

    code: str
    severity: Severity
    why: str
    default: str = ""
    # What `datakit fix` does with a record this code flags: "repair" rewrites its text through the
    # family's `repair`, "drop" moves it to the rejected file with its reasons, None leaves it alone.
    fix: Literal["repair", "drop"] | None = None

    @property
    def fixable(self) -> bool:
        return self.fix is not None


@dataclass
class RuleContext:
    """What a rule may look at besides the records: its settings, the comparison sets, and what the audit learnt
    about the whole input by the time `finish` runs (the files read, measurements across records)."""

    config: AuditConfig = field(default_factory=AuditConfig)
    against: list[Dataset] = field(default_factory=list)
    path: str = ""  # what was audited: a file, or a directory of shards (dataset-level findings point here)
    sources: list[SourceFile] = field(default_factory=list)  # every file read, with its notes (set before finish)
    measured: dict[str, Any] = field(default_factory=dict)  # cross-record measurements and facts (e.g. "near_dup")
    _prepared: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def prepared(self, key: str, build: Callable[[], T]) -> T:
        """A structure built once per audit (and once per worker process) and reused by every batch, e.g. an index
        of the eval sets. It is not pickled: a worker builds its own."""
        if key not in self._prepared:
            self._prepared[key] = build()
        return self._prepared[key]

    def source_of(self, id_column: str = "id") -> pl.Expr:
        """The file each record (by its id in `id_column`) came from: ids run through the sources in order."""
        if len(self.sources) <= 1:
            return pl.lit(self.sources[0].path if self.sources else self.path, dtype=pl.String)
        expr, end = pl.lit(self.sources[-1].path, dtype=pl.String), 0
        bounds = []
        for source in self.sources:
            end += source.records
            bounds.append((end, source.path))
        for end, path in reversed(bounds[:-1]):
            expr = pl.when(pl.col(id_column) < end).then(pl.lit(path, dtype=pl.String)).otherwise(expr)
        return expr

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_prepared"} | {"_prepared": {}}


class Rule(Protocol):
    """A rule family, run over the input batch by batch, then once more at the end.

    `check` judges what one batch's records show on their own; `state` hands on the compact columns (hashes,
    codes, counts) that judging across records needs; `finish` receives every batch's state together and returns
    the findings across records and the family's summary. A family overrides only the hooks it uses."""

    family: ClassVar[str]
    codes: ClassVar[tuple[RuleCode, ...]]
    needs: ClassVar[tuple[str, ...]]  # measurements (datakit.measure) the family reads
    # The speakers whose texts `repair` rewrites (system | user | assistant | tool); a family may leave prompts alone.
    repair_roles: ClassVar[tuple[str, ...]] = ("system", "user", "assistant", "tool")

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        """Findings in `schemas.findings.FINDING_SCHEMA` judged from this batch's records alone. Never raises on bad
        data: bad data is what it reports."""
        return empty_findings()

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame | None:
        """What `finish` needs from this batch (typed columns; `found` is what `check` returned for it), or None."""
        return None

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        """(findings across records, summary): `state` is every batch's state, in input order (None when `state`
        returned nothing). The summary holds dataset-level statistics for the report (JSON-serialisable)."""
        return empty_findings(), {}

    def repair(self, text: str, ctx: RuleContext) -> str:
        """The text with this family's "repair" problems fixed; identity for families without repairs.

        `datakit fix` applies it to every text field of a record; it must be idempotent.
        """
        return text


@dataclass(frozen=True)
class Message:
    """A message as a template (its text, with `{}` where each value goes) and one polars expression per value."""

    template: str
    values: tuple[pl.Expr, ...] = ()


def message(template: str, *values: pl.Expr | str) -> Message:
    return Message(template, tuple(v if isinstance(v, pl.Expr) else pl.lit(v) for v in values))


def code_info(rule: type[Rule] | Rule, code: str) -> RuleCode:
    return next(c for c in rule.codes if c.code == code)


def flag(
    rows: pl.DataFrame,
    code: RuleCode,
    message: Message | str,
    field: str | pl.Expr | None = None,
    excerpt: pl.Expr | None = None,
    detail: str | pl.Expr | None = None,
    related_line: pl.Expr | None = None,
    related_source: str | pl.Expr | None = None,
) -> pl.DataFrame:
    """Findings for every row of `rows` (already filtered to the flagged records), vectorised.

    `message` is a `message(template, *values)` or a fixed text; `field`, `detail` and the rest are literals or
    polars expressions over the rows' columns.
    """
    if rows.height == 0:
        return empty_findings()

    def expr(value: str | pl.Expr | None, dtype: pl.DataType) -> pl.Expr:
        if isinstance(value, pl.Expr):
            return value.cast(dtype)
        return pl.lit(value, dtype=dtype)

    if isinstance(message, str):
        message = Message(message)
    values = pl.concat_list([v.cast(pl.String) for v in message.values]) if message.values else pl.lit([], pl.List(pl.String))
    out = rows.select(
        pl.lit(code.code).alias("rule"),
        pl.lit(code.severity.value).alias("severity"),
        pl.col("source").cast(pl.String),
        pl.col("line").cast(pl.Int64),
        pl.col("id").cast(pl.Int64).alias("record_id"),
        expr(field, pl.String).alias("field"),
        pl.lit(message.template).alias("template"),
        values.alias("values"),
        (excerpt.cast(pl.String).str.slice(0, 200) if excerpt is not None else pl.lit(None, pl.String)).alias("excerpt"),
        expr(related_line, pl.Int64).alias("related_line"),
        expr(related_source, pl.String).alias("related_source"),
        expr(detail, pl.String).alias("detail"),
    )
    return out.select(list(FINDING_SCHEMA))


def sums(state: pl.LazyFrame | None, columns: list[str]) -> dict[str, int]:
    """Per column, the total over every batch's state (tallies a family counted batch by batch); 0 without state."""
    if state is None:
        return dict.fromkeys(columns, 0)
    totals = state.select(pl.col(columns).sum()).collect(engine="streaming")
    return {c: int(totals[c][0] or 0) for c in columns}


def concat_findings(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="vertical") if frames else empty_findings()
