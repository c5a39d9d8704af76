"""The audit report: everything `datakit audit` found, as one JSON-serialisable pydantic model.

Its JSON Schema is published (`datakit schema`, docs/report.schema.json); the terminal, Markdown and
HTML outputs are views of this model and compute nothing of their own.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from schemas.config import AuditConfig
from schemas.findings import Finding, Severity

Verdict = Literal["pass", "warn", "fail", "info"]


class Percentiles(BaseModel):
    mean: float
    p50: int
    p90: int
    p99: int
    max: int


class DatasetProfile(BaseModel):
    records: int = Field(description="Records in the file, readable or not.")
    valid_records: int = Field(description="Records that parsed and matched a known format.")
    formats: dict[str, int]
    container: str = Field(description="jsonl, json (array) or parquet.")
    gzip: bool = False
    tokenizer: str | None = None
    prompt_tokens: Percentiles | None = None
    response_tokens: Percentiles | None = None
    total_tokens: Percentiles | None = None
    labels: dict[str, int] | None = Field(None, description="Counts per value of the label field, when one is configured.")
    languages: dict[str, int] | None = Field(None, description="Records per main language of the response, when the language family ran.")


class RuleResult(BaseModel):
    code: str
    family: str
    severity: Severity
    why: str
    default: str = ""
    fixable: bool = False
    count: int
    examples: list[Finding] = Field(default_factory=list)


class FamilyResult(BaseModel):
    family: str
    verdict: Verdict
    findings: int
    summary: dict = Field(default_factory=dict, description="Dataset-level statistics of this family (distributions, ratios).")


class AuditReport(BaseModel):
    tool: str = "datakit"
    version: str
    source: str
    checksum: str = Field(description="sha256 of the input file's bytes.")
    elapsed_s: float
    profile: DatasetProfile
    families: list[FamilyResult]
    rules: list[RuleResult]
    findings: list[Finding]
    against: list[str] = Field(default_factory=list, description="Eval files the data was checked against.")
    config: AuditConfig
    next_steps: list[str] = Field(default_factory=list, description="Commands to run next, derived from the findings.")

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def fails(self, fail_on: str) -> bool:
        """True when a finding reaches `fail_on` (error | warning | never): the CLI's exit status 1."""
        if fail_on == "never":
            return False
        floor = Severity(fail_on).rank
        return any(f.severity.rank >= floor for f in self.findings)
