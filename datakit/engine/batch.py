"""The per-batch stage of an audit, a function of one batch alone: measure, run the per-record checks, and cut the
compact state the end of the audit needs. The local engine calls it in a loop, the Ray engine in `map_batches`;
neither knows the rules inside.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from datakit.engine.inputs import RawBatch
from datakit.measure import ensure, per_record
from datakit.measure.lsh import lsh_state
from schemas.dataset import Dataset
from validators.base import Rule, RuleContext, concat_findings

RECORDS = "records"  # the state every audit keeps: one row of profile columns per record
LSH = "lsh"  # band keys and signatures, kept when a rule needs near-duplicate clusters


@dataclass(frozen=True)
class Plan:
    """What an audit runs: the rule families, the per-record measurements they need, and whether records are
    clustered across batches (near-duplicates)."""

    rules: tuple[Rule, ...]
    measures: tuple[str, ...]
    near_dup: bool

    @classmethod
    def of(cls, rules: list[Rule], extra: tuple[str, ...] = ()) -> Plan:
        needs = [n for r in rules for n in r.needs] + list(extra)
        return cls(tuple(rules), tuple(per_record(needs)), "near_dup" in needs)


@dataclass
class BatchOutput:
    findings: pl.DataFrame
    states: dict[str, pl.DataFrame]
    records: int
    timings: Counter = field(default_factory=Counter)


def audit_batch(batch: Dataset | RawBatch, plan: Plan, ctx: RuleContext) -> BatchOutput:
    """Findings of the per-record checks on `batch` and every state kept from it (by family, plus RECORDS/LSH)."""
    timings: Counter = Counter()
    if isinstance(batch, RawBatch):
        started = time.perf_counter()
        batch = batch.normalised()
        timings["normalise"] += time.perf_counter() - started
    for name in plan.measures:
        started = time.perf_counter()
        ensure(batch, [name], ctx.config, ctx.measured.get("evals"))
        timings[f"measure {name}"] += time.perf_counter() - started
    found, states = [], {}
    for rule in plan.rules:
        started = time.perf_counter()
        mine = rule.check(batch, ctx)
        kept = rule.state(batch, mine, ctx)
        timings[f"rules: {rule.family}"] += time.perf_counter() - started
        found.append(mine)
        if kept is not None:
            states[rule.family] = kept
    states[RECORDS] = record_state(batch)
    if plan.near_dup:
        valid = batch.valid
        sigs = valid["minhash"].to_numpy().reshape(valid.height, ctx.config.near_duplicate.num_perm) if valid.height else \
            np.empty((0, ctx.config.near_duplicate.num_perm), np.uint64)
        states[LSH] = lsh_state(valid, sigs, ctx.config.near_duplicate.threshold)
    return BatchOutput(concat_findings(found), states, batch.frame.height, timings)


def record_state(batch: Dataset) -> pl.DataFrame:
    """Per record, what the report's profile and the Great Expectations suite read: where it is, whether it is
    valid, its format and label, and the measurements taken (token counts, text lengths, hash, language, model scores)."""
    frame = batch.frame
    chars = lambda c: pl.col(c).fill_null("").str.strip_chars().str.len_chars().cast(pl.Int64)
    optional = [c for c in ("prompt_tokens", "response_tokens", "tokens", "prompt_hash", "record_hash", "response_lang",
                            "perplexity", "ifd") if c in frame.columns]
    return frame.select("id", "source", "line", "valid", "format", "label",
                        pl.when(pl.col("valid")).then(chars("prompt")).alias("prompt_chars"),
                        pl.when(pl.col("valid")).then(chars("response")).alias("response_chars"), *optional)
