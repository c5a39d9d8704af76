"""Auditing records held in memory (repaired by `fix`, regrouped by `split`) with the rules and measurements of `datakit audit`.

The records keep their original source and line, so every finding still points into the input file.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from datakit.io.read import RawFile, RawRecord
from datakit.measure import ensure
from datakit.normalise import normalise
from schemas.config import AuditConfig
from schemas.dataset import Dataset
from validators.base import Rule, RuleContext, concat_findings


def dataset_of(path: str, records: Sequence[RawRecord], label_field: str | None = None, container: str = "jsonl",
               gzip_: bool = False) -> Dataset:
    """The normalised frame of records already read (their objects possibly edited), as if read from `path`."""
    return normalise(RawFile(path, container, gzip_, "", list(records), []), label_field)


def edited(records: Sequence[RawRecord], objects: Sequence[Any]) -> list[RawRecord]:
    """`records` with their parsed objects replaced by `objects`; a record that could not be parsed stays as it was."""
    return [r if r.error is not None else RawRecord(r.line, json.dumps(o, ensure_ascii=False), o)
            for r, o in zip(records, objects)]


def check(ds: Dataset, config: AuditConfig, against: Sequence[Dataset] = (), rules: Sequence[Rule] | None = None) -> pl.DataFrame:
    """Findings of `rules` (default: those the config selects) on `ds`, measuring what they need once."""
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    rules = list(rules) if rules is not None else select(config.only, config.skip)
    for name in dict.fromkeys(n for r in rules for n in r.needs):
        for target in (ds, *against):
            ensure(target, [name], config)
    ctx = RuleContext(config=config, against=list(against))
    return concat_findings([r.check(ds, ctx) for r in rules])
