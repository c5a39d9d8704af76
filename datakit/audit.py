"""Orchestration of an audit: read -> normalise -> measure -> rules -> findings -> AuditReport.

`run_audit` keeps the dataset frame and the findings frame for commands that act on them (fix,
split, train); `audit` is the public function behind `datakit audit` and returns the report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

import datakit
from datakit.config import build_config
from datakit.measure import ensure
from datakit.normalise import load
from datakit.progress import Stages
from schemas.config import AuditConfig
from schemas.dataset import Dataset
from schemas.findings import Finding
from schemas.report import AuditReport, DatasetProfile, FamilyResult, Histogram, Percentiles, RuleResult
from validators.base import RuleContext, concat_findings


@dataclass
class AuditRun:
    dataset: Dataset
    findings: pl.DataFrame
    report: AuditReport
    against: list[Dataset]


def run_audit(path: str | Path, config: AuditConfig, progress: bool = False) -> AuditRun:
    started = time.perf_counter()
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    rules = select(config.only, config.skip)
    with Stages(enabled=progress) as stages:
        with stages.step(f"reading {Path(path).name}"):
            ds = load(path, config.label_field)
        against = []
        if config.leakage.against and any(r.family == "leakage" for r in rules):
            with stages.step("reading eval sets"):
                against = [load(p) for p in config.leakage.against]
        ctx = RuleContext(config=config, against=against)
        needs = list(dict.fromkeys(n for r in rules for n in r.needs))
        for name in needs:
            with stages.step(f"measuring {name}"):
                ensure(ds, [name], config)
                for other in against:
                    ensure(other, [name], config)
        frames, families = [], []
        for rule in rules:
            with stages.step(f"rules: {rule.family}"):
                found = rule.check(ds, ctx)
                frames.append(found)
                families.append((rule, found, rule.summary(ds, ctx)))
    findings = concat_findings(frames).sort(["line", "rule"], nulls_last=False)
    report = _report(ds, findings, families, config, time.perf_counter() - started)
    return AuditRun(ds, findings, report, against)


def audit(path: str | Path, config: AuditConfig | None = None, *, config_file: str | Path | None = None,
          progress: bool = False, **options: Any) -> AuditReport:
    """Audit one dataset file. Options are AuditConfig fields or the flat shortcuts of `datakit.config.SHORTCUTS`
    (max_tokens, tokenizer, against, ...), e.g. `audit("data.jsonl", label_field="class", only=["length"])`."""
    if config is None:
        config = build_config(config_file, **options)
    return run_audit(path, config, progress=progress).report


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


def _profile(ds: Dataset, config: AuditConfig, families: list) -> DatasetProfile:
    frame = ds.frame
    valid = ds.valid
    has = lambda c: c in frame.columns
    labels = None
    if config.label_field:
        counts = valid.group_by("label").len().sort(["len", "label"], descending=[True, False])
        labels = {("(missing)" if k is None else k): n for k, n in counts.iter_rows()}
    languages = next((s.get("languages") for r, _, s in families if r.family == "language"), None)
    from datakit.measure.tokens import counter

    return DatasetProfile(
        records=frame.height,
        valid_records=valid.height,
        formats={k: n for k, n in valid.group_by("format").len().sort("format").iter_rows()},
        container=ds.container,
        gzip=ds.gzip,
        tokenizer=counter(config.length.tokenizer).name if has("tokens") else None,
        prompt_tokens=_percentiles(valid["prompt_tokens"]) if has("prompt_tokens") else None,
        response_tokens=_percentiles(valid["response_tokens"]) if has("response_tokens") else None,
        total_tokens=_percentiles(valid["tokens"]) if has("tokens") else None,
        labels=labels,
        languages=languages,
        histograms={name: _histogram(valid[col], config.length.max_tokens)
                    for name, col in (("prompt", "prompt_tokens"), ("response", "response_tokens"), ("total", "tokens"))
                    if has(col) and valid[col].drop_nulls().len()} or None,
    )


def _verdict(found: pl.DataFrame) -> str:
    severities = set(found["severity"].to_list())
    if "error" in severities:
        return "fail"
    if "warning" in severities:
        return "warn"
    return "info" if severities else "pass"


def _report(ds: Dataset, findings: pl.DataFrame, families: list, config: AuditConfig, elapsed: float) -> AuditReport:
    all_findings = [Finding.model_validate(r) for r in findings.iter_rows(named=True)]
    results, fams = [], []
    for rule, found, summary in families:
        fams.append(FamilyResult(family=rule.family, verdict=_verdict(found), findings=found.height, summary=summary))
        for code in rule.codes:
            mine = found.filter(pl.col("rule") == code.code)
            examples = [Finding.model_validate(r) for r in mine.head(config.max_examples).iter_rows(named=True)]
            results.append(RuleResult(code=code.code, family=rule.family, severity=code.severity, why=code.why,
                                      default=code.default, fixable=code.fixable, count=mine.height, examples=examples))
    return AuditReport(
        version=datakit.__version__, source=ds.path, checksum=ds.checksum, elapsed_s=round(elapsed, 3),
        profile=_profile(ds, config, families), families=fams, rules=results, findings=all_findings,
        against=list(config.leakage.against), config=config, next_steps=_next_steps(ds.path, results, config),
    )


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
