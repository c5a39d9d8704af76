"""The local engine: batches in order on this machine, their findings and state spilled to disk as they come, then
the end of the audit (clusters across records, each family's `finish`) over what was kept."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datakit.engine.batch import LSH, Plan, audit_batch
from datakit.engine.inputs import FileInput, FrameInput
from datakit.engine.spill import Spill
from datakit.measure.lsh import cluster_state, lsh_params
from datakit.progress import Stages
from schemas.dataset import SourceFile
from validators.base import RuleContext

FINDINGS = "findings"


@dataclass
class EngineRun:
    """What an engine leaves for the report: summaries per family, the files read, time per stage; the findings and
    the per-record state stay in the spill."""

    summaries: dict[str, dict]
    sources: list[SourceFile]
    records: int
    timings: Counter = field(default_factory=Counter)


def run_local(inputs: FileInput | FrameInput, plan: Plan, ctx: RuleContext, spill: Spill, stages: Stages) -> EngineRun:
    timings: Counter = Counter()
    name = Path(str(getattr(inputs, "path", inputs.size))).name if isinstance(inputs, FileInput) else "records"
    advance = stages.records(f"auditing {name}", inputs.size)
    records = 0
    batches = iter(inputs.batches())
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        timings["read + normalise"] += time.perf_counter() - started
        if batch is None:
            break
        out = audit_batch(batch, plan, ctx)
        timings.update(out.timings)
        started = time.perf_counter()
        spill.add(FINDINGS, out.findings)
        for state, frame in out.states.items():
            spill.add(state, frame)
        timings["spill"] += time.perf_counter() - started
        records += out.records
        advance(inputs.position, records)
    ctx.sources = inputs.sources
    summaries = finish(plan, ctx, spill, stages, timings)
    return EngineRun(summaries, inputs.sources, records, timings)


def finish(plan: Plan, ctx: RuleContext, spill: Spill, stages: Stages, timings: Counter) -> dict[str, dict]:
    """Clusters across records when a rule needs them, then each family's `finish` over its kept state; their
    findings join the spill. Shared by every engine."""
    if plan.near_dup:
        cfg = ctx.config.near_duplicate
        with stages.step("near-duplicate clusters"), _timed(timings, "near-duplicate clusters"):
            state = spill.scan(LSH)
            ctx.measured["near_dup"] = cluster_state(state, cfg.threshold, cfg.num_perm)
            ctx.measured["lsh_params"] = lsh_params(cfg.threshold, cfg.num_perm)
    summaries = {}
    for rule in plan.rules:
        with stages.step(f"rules: {rule.family} (across records)"), _timed(timings, f"finish {rule.family}"):
            found, summaries[rule.family] = rule.finish(spill.scan(rule.family), ctx)
            spill.add(FINDINGS, found)
    return summaries


class _timed:
    def __init__(self, timings: Counter, name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] += time.perf_counter() - self.started


def scan_findings(spill: Spill) -> pl.LazyFrame | None:
    return spill.scan(FINDINGS)
