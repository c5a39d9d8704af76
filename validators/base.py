"""The one `Rule` protocol every rule family implements, and the bookkeeping helpers they share.

A family states only its judgement (which rows, which code, what message); turning that into the
shared findings frame is done here, once (datatrove's filter/base split).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, TypeVar

import polars as pl

from schemas.config import AuditConfig
from schemas.dataset import Dataset
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
    """What a rule may look at besides the dataset: its settings and already-read comparison sets."""

    config: AuditConfig = field(default_factory=AuditConfig)
    against: list[Dataset] = field(default_factory=list)


class Reused:
    """A result a family computes in `check` and needs again in `summary`: kept for one dataset frame and
    context (held weakly), so the audit's check-then-summary pair computes it once. The result is dropped
    when that frame or context goes away, so a rule never keeps the last dataset's texts alive."""

    def __init__(self) -> None:
        self._key: tuple[weakref.ref, weakref.ref] | None = None
        self._value = None

    def get(self, ds: Dataset, ctx: RuleContext, compute: Callable[[], T]) -> T:
        if self._key is not None and self._key[0]() is ds.frame and self._key[1]() is ctx:
            return self._value
        self._value = compute()
        self._key = (weakref.ref(ds.frame, self._forget), weakref.ref(ctx, self._forget))
        return self._value

    def _forget(self, gone: weakref.ref) -> None:
        if self._key is not None and gone in self._key:
            self._key = self._value = None


class Rule(Protocol):
    """A rule family. Families subclass this explicitly to inherit the default `summary`."""

    family: ClassVar[str]
    codes: ClassVar[tuple[RuleCode, ...]]
    needs: ClassVar[tuple[str, ...]]  # measurements (datakit.measure) the check reads

    def check(self, ds: Dataset, ctx: RuleContext) -> pl.DataFrame:
        """Findings in `schemas.findings.FINDING_SCHEMA`. Never raises on bad data: bad data is what it reports."""
        ...

    def summary(self, ds: Dataset, ctx: RuleContext) -> dict:
        """Dataset-level statistics for the report section of this family (JSON-serialisable), e.g. a class distribution."""
        return {}

    def repair(self, text: str, ctx: RuleContext) -> str:
        """The text with this family's "repair" problems fixed; identity for families without repairs.

        `datakit fix` applies it to every text field of a record; it must be idempotent.
        """
        return text


def code_info(rule: type[Rule] | Rule, code: str) -> RuleCode:
    return next(c for c in rule.codes if c.code == code)


def flag(
    rows: pl.DataFrame,
    code: RuleCode,
    message: str | pl.Expr,
    field: str | pl.Expr | None = None,
    excerpt: pl.Expr | None = None,
    detail: str | pl.Expr | None = None,
    related_line: pl.Expr | None = None,
    related_source: str | pl.Expr | None = None,
) -> pl.DataFrame:
    """Findings for every row of `rows` (already filtered to the flagged records), vectorised.

    `message`, `field`, `detail` are literals or polars expressions over the rows' columns.
    """
    if rows.height == 0:
        return empty_findings()

    def expr(value: str | pl.Expr | None, dtype: pl.DataType) -> pl.Expr:
        if isinstance(value, pl.Expr):
            return value.cast(dtype)
        return pl.lit(value, dtype=dtype)

    out = rows.select(
        pl.lit(code.code).alias("rule"),
        pl.lit(code.severity.value).alias("severity"),
        pl.col("source").cast(pl.String),
        pl.col("line").cast(pl.Int64),
        pl.col("id").cast(pl.Int64).alias("record_id"),
        expr(field, pl.String).alias("field"),
        expr(message, pl.String).alias("message"),
        (excerpt.cast(pl.String).str.slice(0, 200) if excerpt is not None else pl.lit(None, pl.String)).alias("excerpt"),
        expr(related_line, pl.Int64).alias("related_line"),
        expr(related_source, pl.String).alias("related_source"),
        expr(detail, pl.String).alias("detail"),
    )
    return out.select(list(FINDING_SCHEMA))


def concat_findings(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="vertical") if frames else empty_findings()
