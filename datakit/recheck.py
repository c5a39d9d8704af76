"""Auditing records held in memory (repaired by `fix`, regrouped by `split`, a test's records) with the rules and
measurements of `datakit audit`, through the same engine.

The records keep their original source and line, so every finding still points into the input file.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from datakit.audit import measurement_facts, sort_findings
from datakit.engine.batch import Plan
from datakit.engine.inputs import FrameInput
from datakit.engine.local import FINDINGS, run_local
from datakit.engine.spill import Spill
from datakit.io.read import RawRecord
from datakit.normalise import normalise
from datakit.progress import Stages
from schemas.config import AuditConfig
from schemas.dataset import Dataset
from schemas.findings import with_messages
from validators.base import Rule, RuleContext


def dataset_of(path: str, records: Sequence[RawRecord], label_field: str | None = None, container: str = "jsonl",
               gzip_: bool = False) -> Dataset:
    """The normalised frame of records already read (their objects possibly edited), as if read from `path`."""
    ds = normalise(list(records), path, label_field)
    ds.container, ds.gzip = container, gzip_
    return ds


def edited(records: Sequence[RawRecord], objects: Sequence[Any]) -> list[RawRecord]:
    """`records` with their parsed objects replaced by `objects`; a record that could not be parsed stays as it was."""
    return [r if r.error is not None else RawRecord(r.line, json.dumps(o, ensure_ascii=False), o)
            for r, o in zip(records, objects)]


def audit_records(ds: Dataset, config: AuditConfig, against: Sequence[Dataset] = (),
                  rules: Sequence[Rule] | None = None) -> tuple[pl.DataFrame, dict[str, dict]]:
    """Findings (with messages, sorted by line then rule) and summaries per family of `rules` (default: those the
    config selects) on `ds`."""
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    rules = list(rules) if rules is not None else select(config.only, config.skip)
    plan = Plan.of(rules)
    ctx = RuleContext(config=config, against=list(against), path=ds.path, measured=measurement_facts(plan, config, list(against)))
    with Spill() as spill:
        run = run_local(FrameInput(ds), plan, ctx, spill, Stages(enabled=False))
        found = spill.scan(FINDINGS).collect()
    return sort_findings(with_messages(found)), run.summaries


def check(ds: Dataset, config: AuditConfig, against: Sequence[Dataset] = (), rules: Sequence[Rule] | None = None) -> pl.DataFrame:
    """Findings of `rules` (default: those the config selects) on `ds`, with messages."""
    return audit_records(ds, config, against, rules)[0]
