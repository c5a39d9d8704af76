"""Orchestration of an audit: read -> normalise -> measure -> rules, batch by batch -> findings -> AuditReport.

`Audit` runs the engine over a file (streamed) or a dataset in memory and keeps what it found on disk while it is
open: the report, every finding (`findings()`), the per-record profile state (`records()`). Commands that act on
the findings (fix, the report writers, GX) work inside it. `audit` is the public function behind `datakit audit`;
`run_audit` is the in-memory form for small inputs (a training set, tests): it also returns the records read.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import polars as pl

import datakit
from datakit.config import build_config
from datakit.engine.batch import RECORDS, Plan
from datakit.engine.inputs import BATCH_RECORDS, FileInput, FrameInput, LinedInput
from datakit.engine.local import FINDINGS, run_local
from datakit.engine.spill import Spill
from datakit.measure import ensure
from datakit.normalise import load
from datakit.progress import Stages
from schemas.config import AuditConfig
from schemas.dataset import Dataset
from schemas.findings import FINDING_SCHEMA, Finding, with_messages
from schemas.report import (
    AuditReport,
    DatasetProfile,
    FamilyResult,
    FindingsFile,
    Histogram,
    Percentiles,
    RuleResult,
    StageTiming,
)
from validators.base import RuleContext

# Up to this many findings the JSON report carries them inline under `findings` (the shape scripts rely on); beyond,
# they go to a Parquet file beside it (`findings_file`), one message template per kind of finding.
INLINE_FINDINGS = 100_000
SIDECAR = "findings.parquet"
GX_MEASURES = ("tokens", "norm_hash")  # what the Great Expectations metrics read, whichever families run


class Audit:
    """An audit run, open while its findings are used: `with Audit(path, config) as run: run.report ...`."""

    def __init__(self, source: str | Path | Dataset | LinedInput, config: AuditConfig, *, progress: bool = False,
                 engine: str = "local", ray_address: str | None = None, extra_measures: tuple[str, ...] = (),
                 inline_limit: int = INLINE_FINDINGS, batch_records: int = BATCH_RECORDS, workers: int | None = None):
        self.source, self.config, self.progress = source, config, progress
        self.engine, self.ray_address, self.extra_measures = engine, ray_address, extra_measures
        self.inline_limit, self.batch_records, self.workers = inline_limit, batch_records, workers
        self.spill: Spill | None = None
        self.against: list[Dataset] = []
        self._sidecar: Path | None = None

    def __enter__(self) -> Self:
        self.spill = Spill()
        try:
            self._run()
        except BaseException:
            self.spill.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.spill.close()

    def _run(self) -> None:
        from validators import select  # imported when called: rule families import datakit.measure, and so datakit

        started = time.perf_counter()
        config = self.config
        rules = select(config.only, config.skip)
        scoring = ("model_scores",) if config.correspondence.score_model and any(
            r.family == "correspondence" for r in rules) else ()
        inputs = self._inputs(scoring=bool(scoring))
        path = inputs.dataset.path if isinstance(inputs, FrameInput) else str(getattr(inputs, "source", self.source))
        with Stages(enabled=self.progress) as stages:
            if config.leakage.against and any(r.family == "leakage" for r in rules):
                with stages.step("reading eval sets"):
                    self.against = [load(p) for p in config.leakage.against]
            plan = Plan.of(rules, self.extra_measures + scoring)
            ctx = RuleContext(config=config, against=self.against, path=path,
                              measured=measurement_facts(plan, config, self.against))
            if self.engine == "ray":
                from datakit.engine.ray_engine import run_ray

                run = run_ray(inputs, plan, ctx, self.spill, stages, self.ray_address)
            else:
                run = run_local(inputs, plan, ctx, self.spill, stages, self.workers)
            self.measured = ctx.measured
            with stages.step("building the report"):
                self.report = self._report(path, run, rules, ctx, time.perf_counter() - started)

    def _inputs(self, scoring: bool = False) -> FileInput | FrameInput | LinedInput:
        from datakit.measure.model_scores import SCORED_BATCH_RECORDS

        # a model scores a few hundred records while the rest of the audit does 10,000: smaller batches keep the
        # progress bar moving while it scores
        records = min(self.batch_records, SCORED_BATCH_RECORDS) if scoring else self.batch_records
        if isinstance(self.source, Dataset):
            return FrameInput(self.source, records)
        if isinstance(self.source, LinedInput):
            return self.source
        return FileInput(self.source, self.config.label_field, batch_records=records)

    # --- what the run found -----------------------------------------------------------------------------------

    def findings(self) -> pl.LazyFrame:
        """Every finding in the compact form (template and values), in the order found."""
        return self.spill.scan(FINDINGS) if self.spill.has(FINDINGS) else pl.LazyFrame(schema=FINDING_SCHEMA)

    def records(self) -> pl.LazyFrame:
        """One row per record: where it is, valid, format, label and the measurements taken (`engine.batch.record_state`)."""
        return self.spill.scan(RECORDS)

    def metrics(self) -> pl.DataFrame:
        """Per valid record, what the Great Expectations suite checks: line, token counts, text lengths, record hash,
        and `near_duplicate` (flagged) and `response_lang` where those families ran."""
        records = self.records()
        names = records.collect_schema().names()
        columns = [c for c in ("line", "prompt_tokens", "response_tokens", "tokens", "prompt_chars", "response_chars",
                               "record_hash") if c in names]
        if any(f.family == "near_duplicate" for f in self.report.families):
            flagged = self.findings().filter(pl.col("rule") == "near_duplicate.cluster").select("record_id")
            columns.append(pl.col("id").is_in(flagged.collect(engine="streaming")["record_id"].implode()).alias("near_duplicate"))
        if "response_lang" in names:
            columns.append("response_lang")  # null where nothing could be judged: GX skips nulls, as the rule does
        return records.filter(pl.col("valid")).select(columns).collect(engine="streaming")

    def findings_frame(self) -> pl.DataFrame:
        """Every finding with its message, sorted by line then rule (file-level findings first): for small runs."""
        return sort_findings(with_messages(self.findings().collect(engine="streaming")))

    def sidecar(self) -> Path:
        """The findings as a Parquet file (written once, in the run's temporary folder): rule by rule, by line."""
        if self._sidecar is None:
            self._sidecar = self.spill.dir / SIDECAR
            with self.spill.writing():
                write_sidecar(self.findings(), self._sidecar)
        return self._sidecar

    # --- the report -------------------------------------------------------------------------------------------

    def _report(self, path: str, run, rules: list, ctx: RuleContext, elapsed: float) -> AuditReport:
        from datakit.measure.model_scores import record_scores

        counts = dict(self.findings().group_by("rule").len().collect(engine="streaming").iter_rows())
        total = sum(counts.values())
        examples = _examples(self.findings(), self.config.max_examples)
        results, fams = [], []
        for rule in rules:
            codes = [c.code for c in rule.codes]
            severities = {c.severity.value for c in rule.codes if counts.get(c.code)}
            fams.append(FamilyResult(family=rule.family, verdict=_verdict(severities),
                                     findings=sum(counts.get(c, 0) for c in codes), summary=run.summaries[rule.family]))
            for code in rule.codes:
                results.append(RuleResult(code=code.code, family=rule.family, severity=code.severity, why=code.why,
                                          default=code.default, fixable=code.fixable, count=counts.get(code.code, 0),
                                          examples=examples.get(code.code, [])))
        inline = total <= self.inline_limit
        timings = [StageTiming(stage=k, seconds=round(v, 3)) for k, v in run.timings.items()]
        report = AuditReport(
            version=datakit.__version__, source=path, checksum=_checksum(run.sources), elapsed_s=round(elapsed, 3),
            profile=_profile(self.records(), run, ctx, fams), families=fams, rules=results,
            findings=[Finding.model_validate(r) for r in self.findings_frame().iter_rows(named=True)] if inline else [],
            findings_file=None if inline else FindingsFile(path=str(self.sidecar()), count=total),
            against=list(self.config.leakage.against), config=self.config,
            next_steps=_next_steps(path, results, self.config), stages=timings, peak_rss_mb=_peak_rss_mb(),
            record_scores=record_scores(self.records(), self.config),
        )
        return report


def sort_findings(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["line", "rule"], nulls_last=False, maintain_order=True)


def write_sidecar(findings: pl.LazyFrame, path: Path) -> None:
    """Findings grouped by rule, each rule's by line: a reader takes the first N of a rule from the file's start.
    The template column is dictionary-encoded, so each message template is stored once per row group."""
    findings.with_columns(pl.col("template").cast(pl.Categorical)).sort(
        ["rule", "line"], nulls_last=False, maintain_order=True).sink_parquet(path, compression="zstd")


@dataclass
class AuditRun:
    """An audit of records held in memory: the records, every finding (with messages), the report, the eval sets, and
    per record (by id) the group it cannot be split from (`datakit.split.leak_groups`), for a leakage-free hold-out."""

    dataset: Dataset
    findings: pl.DataFrame
    report: AuditReport
    against: list[Dataset]
    metrics: pl.DataFrame
    leak_groups: np.ndarray


def run_audit(path: str | Path, config: AuditConfig, progress: bool = False) -> AuditRun:
    """Audit a file small enough to hold in memory and keep its records (trainkit trains on exactly those)."""
    from datakit.split import leak_groups  # split runs audits itself: imported when called

    ds = load(path, config.label_field)
    with Audit(ds, config, progress=progress, inline_limit=1 << 62, extra_measures=GX_MEASURES) as run:
        keys = run.records().select("id", "valid", "prompt_hash", "record_hash").collect(engine="streaming")
        clusters = run.measured.get("near_dup", pl.DataFrame(schema={"id": pl.Int64, "near_dup_cluster": pl.Int64}))
        return AuditRun(ds, run.findings_frame(), run.report, run.against, run.metrics(), leak_groups(keys, clusters))


def audit(path: str | Path, config: AuditConfig | None = None, *, config_file: str | Path | None = None,
          progress: bool = False, **options: Any) -> AuditReport:
    """Audit one dataset file (or a directory of shards), streaming it in bounded memory. Options are AuditConfig
    fields or the flat shortcuts of `datakit.config.SHORTCUTS` (max_tokens, tokenizer, against, ...), e.g.
    `audit("data.jsonl", label_field="class", only=["length"])`. Beyond INLINE_FINDINGS findings the report's
    `findings_file` names a Parquet file that lives only while this call runs; use `Audit` to keep working with it."""
    if config is None:
        config = build_config(config_file, **options)
    with Audit(path, config, progress=progress) as run:
        return run.report


def measurement_facts(plan: Plan, config: AuditConfig, against: list[Dataset]) -> dict:
    """What is prepared before any batch: the tokenizer's name, and the eval sets measured and indexed once (every
    batch, in every worker, compares with the same index)."""
    facts = {}
    if "tokens" in plan.measures:
        from datakit.measure.tokens import counter

        facts["tokenizer"] = counter(config.length.tokenizer).name
    if "contamination" in plan.measures and against:
        from datakit.measure.contamination import EvalIndex

        for other in against:
            ensure(other, ["norm_hash", "minhash"], config)
        facts["evals"] = EvalIndex.build(against, config)
    return facts


def _checksum(sources: list) -> str:
    if len(sources) == 1:
        return sources[0].checksum
    import hashlib

    return "sha256:" + hashlib.sha256("\n".join(f"{s.path} {s.checksum}" for s in sources).encode()).hexdigest()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and of the largest worker it waited for, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def _examples(findings: pl.LazyFrame, k: int) -> dict[str, list[Finding]]:
    """The first k findings of each rule, by line."""
    if k == 0:
        return {}
    rows = (findings.with_row_index("seq").sort(["rule", "line", "seq"], nulls_last=False)
            .group_by("rule", maintain_order=True).head(k).collect(engine="streaming"))
    out: dict[str, list[Finding]] = {}
    for r in with_messages(rows.drop("seq")).iter_rows(named=True):
        out.setdefault(r["rule"], []).append(Finding.model_validate(r))
    return out


def _percentiles(col: pl.Series) -> Percentiles | None:
    col = col.drop_nulls()
    if col.len() == 0:
        return None
    q = lambda p: int(col.quantile(p, interpolation="higher"))
    return Percentiles(mean=round(float(col.mean()), 1), p50=q(0.5), p90=q(0.9), p99=q(0.99), max=int(col.max()))


def _histogram(col: pl.Series, limit: int, bins: int = 40) -> Histogram:
    """At most `bins` bins of a round width (1, 2 or 5 x 10^k tokens) up to twice the p99 or past the limit,
    whichever is larger, so one huge record cannot flatten the chart; what lies beyond is counted as overflow."""
    col = col.drop_nulls()
    top = min(int(col.max()) + 1, max(2 * int(col.quantile(0.99, interpolation="higher")), limit + limit // 4))
    least = -(-top // bins)
    width = next(w for w in (m * 10**e for e in range(19) for m in (1, 2, 5)) if w >= least)
    n = -(-top // width)
    found = dict((col.clip(upper_bound=n * width) // width).value_counts().iter_rows())
    return Histogram(edges=[i * width for i in range(n + 1)], counts=[found.get(i, 0) for i in range(n)],
                     overflow=found.get(n, 0))


def _profile(records: pl.LazyFrame, run, ctx: RuleContext, families: list[FamilyResult]) -> DatasetProfile:
    config = ctx.config
    columns = records.collect_schema().names()
    tokens = [c for c in ("prompt_tokens", "response_tokens", "tokens") if c in columns]
    valid = records.filter(pl.col("valid"))
    counts = valid.select(pl.len()).collect(engine="streaming").item()
    labels = None
    if config.label_field:
        by_label = valid.group_by("label").len().collect(engine="streaming").sort(["len", "label"], descending=[True, False])
        labels = {("(missing)" if k is None else k): n for k, n in by_label.iter_rows()}
    languages = next((f.summary.get("languages") for f in families if f.family == "language"), None)
    measured = valid.select(tokens).collect(engine="streaming") if tokens else pl.DataFrame()
    first = run.sources[0] if run.sources else None
    return DatasetProfile(
        records=run.records,
        valid_records=counts,
        formats=dict(valid.group_by("format").len().collect(engine="streaming").sort("format").iter_rows()),
        container=first.container if first else "jsonl",
        gzip=first.gzip if first else False,
        tokenizer=ctx.measured.get("tokenizer") if tokens else None,
        prompt_tokens=_percentiles(measured["prompt_tokens"]) if tokens else None,
        response_tokens=_percentiles(measured["response_tokens"]) if tokens else None,
        total_tokens=_percentiles(measured["tokens"]) if tokens else None,
        labels=labels,
        languages=languages,
        histograms={name: _histogram(measured[col], config.length.max_tokens)
                    for name, col in (("prompt", "prompt_tokens"), ("response", "response_tokens"), ("total", "tokens"))
                    if col in measured.columns and measured[col].drop_nulls().len()} or None,
    )


def _verdict(severities: set[str]) -> str:
    if "error" in severities:
        return "fail"
    if "warning" in severities:
        return "warn"
    return "info" if severities else "pass"


def _next_steps(path: str, results: list[RuleResult], config: AuditConfig) -> list[str]:
    hit = {r.family for r in results if r.count} | {r.code for r in results if r.count}
    fixable = any(r.fixable and r.count for r in results)
    stem = Path(path).name.split(".")[0]
    steps = []
    if fixable or hit & {"empty", "duplicate", "near_duplicate", "format", "pii"}:
        steps.append(f"datakit fix {path} -o {stem}.clean.jsonl   # repairs fixable findings; rejected records keep their reasons")
    if "balance" in hit and config.label_field:
        steps.append(f"datakit balance {path} --by {config.label_field} -o {stem}.balanced.jsonl")
    if "leakage.eval_overlap" in hit or "leakage.eval_near" in hit:
        steps.append(f"datakit fix {path} --against {' '.join(config.leakage.against)} -o {stem}.clean.jsonl   # drops contaminated records")
    if "length.too_long" in hit:
        steps.append(f"raise --max-tokens above {config.length.max_tokens} only if your trainer's max length allows it; else fix drops them")
    if not steps:
        steps.append(f"trainkit plan {path} --model PATH   # the data passed; plan the fine-tune")
    return steps

