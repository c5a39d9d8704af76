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


class Histogram(BaseModel):
    """Binned counts for a chart: `counts[i]` values fall in [edges[i], edges[i + 1]); `overflow` lie at or above the last edge."""

    edges: list[int]
    counts: list[int]
    overflow: int = 0


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
    histograms: dict[str, Histogram] | None = Field(
        None, description="Token counts binned per text (prompt, response, total) for the report's charts; bins, not every record.")


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


class GxExpectationResult(BaseModel):
    expectation: str = Field(description="Great Expectations expectation type, e.g. `expect_column_values_to_be_between`.")
    column: str | None = None
    family: str = Field(description="The datakit rule family the expectation mirrors.")
    kwargs: dict = Field(default_factory=dict)
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None


class GxValidation(BaseModel):
    """The result of validating the exported ExpectationSuite with Great Expectations' own engine (`--gx`)."""

    suite: str
    gx_version: str
    success: bool
    evaluated: int
    successful: int
    results: list[GxExpectationResult]


class FindingsFile(BaseModel):
    """Where the findings are when there are too many to list inline: a Parquet file beside the JSON report."""

    path: str = Field(description="The Parquet file, relative to the JSON report's folder (absolute while an audit runs).")
    count: int = Field(description="Findings in the file.")
    format: str = Field("parquet", description="Columns: rule, severity, source, line, record_id, field, template, values, "
                        "excerpt, related_line, related_source, detail. A message is its template with each `{}` replaced "
                        "by the next of its values; rows are grouped by rule, each rule's by line.")


class RecordScores(BaseModel):
    """Per-record scores from a local causal LM (`--score-model`), as columns: entry i of every list is one valid record,
    in input order."""

    model: str = Field(description="The model folder that scored the answers.")
    source: list[str] = Field(description="The file (or shard) each record was read from.")
    line: list[int] = Field(description="Each record's JSON Lines line, or its record number in a JSON array or Parquet file "
                            "(1-based), as in `findings`.")
    perplexity: list[float | None] = Field(
        description="exp of the mean cross-entropy of the answer's tokens given its instruction, rendered with the training "
        "template; null where the template cannot render the record.")
    ifd: list[float | None] = Field(
        description="Instruction-following difficulty: the answer's mean loss given its instruction over its mean loss alone "
        "(Li et al., NAACL 2024). Near 0: the instruction makes the answer easy to predict; 1 and above: it does not help "
        "(correspondence.high_ifd); `datakit fix --keep-top-ifd` keeps the highest below 1. Null where either loss is "
        "missing (an empty answer).")


class StageTiming(BaseModel):
    stage: str
    seconds: float


class AuditReport(BaseModel):
    tool: str = "datakit"
    version: str
    source: str
    checksum: str = Field(description="sha256 of the input file's bytes.")
    elapsed_s: float
    profile: DatasetProfile
    families: list[FamilyResult]
    rules: list[RuleResult]
    findings: list[Finding] = Field(description="Every finding, sorted by line then rule, when there are at most 100,000; "
                                    "empty when they are in `findings_file`.")
    findings_file: FindingsFile | None = Field(None, description="Set when the findings are in a Parquet file instead of inline.")
    against: list[str] = Field(default_factory=list, description="Eval files the data was checked against.")
    config: AuditConfig
    next_steps: list[str] = Field(default_factory=list, description="Commands to run next, derived from the findings.")
    gx: GxValidation | None = Field(None, description="Great Expectations validation of the per-record metrics, when run with --gx.")
    record_scores: RecordScores | None = Field(None, description="Per-record perplexity and IFD, with --score-model.")
    stages: list[StageTiming] = Field(default_factory=list, description="Seconds spent per stage (summed over batches).")
    peak_rss_mb: float | None = Field(None, description="Peak resident memory of the audit process (or its largest worker), MiB.")

    def count(self, severity: Severity) -> int:
        """Findings of this severity (counted per rule, so it holds whether findings are inline or in a file)."""
        return sum(r.count for r in self.rules if r.severity == severity)

    def fails(self, fail_on: str) -> bool:
        """True when a finding reaches `fail_on` (error | warning | never): the CLI's exit status 1."""
        if fail_on == "never":
            return False
        floor = Severity(fail_on).rank
        return any(r.count and r.severity.rank >= floor for r in self.rules)
