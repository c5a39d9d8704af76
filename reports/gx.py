"""Great Expectations (extra `gx`): the dataset-level rules as a GX 1.x ExpectationSuite over per-record metrics.

`datakit audit --gx-suite OUT.json` writes the suite (`suite_json`) so a data platform can run the same checks;
`--gx` validates it with GX's own engine (an ephemeral context over a pandas frame of the metrics the audit kept,
`datakit.audit.Audit.metrics`) and folds the outcome into the report as `report.gx`. Great Expectations is imported only here and
only when asked for; without the extra, both options end with one line saying how to install it.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import polars as pl

from schemas.report import AuditReport, GxExpectationResult, GxValidation

SUITE_NAME = "datakit"


class GxUnavailable(Exception):
    """Great Expectations is not installed; the message says how to install the extra."""


@dataclass(frozen=True)
class Expectation:
    """One GX expectation: its class name in `great_expectations.expectations`, its arguments, the family it mirrors."""

    family: str
    kind: str
    kwargs: dict


def expectations(report: AuditReport, columns: list[str]) -> list[Expectation]:
    """The dataset-level rules of the audit's configuration that per-record metrics can express, for the
    families the audit selected (--only / --skip) and the columns `record_metrics` produced."""
    cfg = report.config

    def wanted(family: str) -> bool:
        return (not cfg.only or family in cfg.only) and family not in cfg.skip

    out = []
    if wanted("length"):
        out.append(Expectation("length", "ExpectColumnValuesToBeBetween", {"column": "tokens", "max_value": cfg.length.max_tokens}))
        if cfg.length.min_response_tokens:
            out.append(Expectation("length", "ExpectColumnValuesToBeBetween",
                                   {"column": "response_tokens", "min_value": cfg.length.min_response_tokens}))
    if wanted("empty"):
        if cfg.empty.check_instruction:
            out.append(Expectation("empty", "ExpectColumnValuesToBeBetween", {"column": "prompt_chars", "min_value": 1}))
        out.append(Expectation("empty", "ExpectColumnValuesToBeBetween", {"column": "response_chars", "min_value": 1}))
    if wanted("duplicate"):
        out.append(Expectation("duplicate", "ExpectColumnValuesToBeUnique", {"column": "record_hash"}))
    if wanted("near_duplicate") and "near_duplicate" in columns:
        out.append(Expectation("near_duplicate", "ExpectColumnValuesToBeInSet", {"column": "near_duplicate", "value_set": [False]}))
    language = next((f.summary for f in report.families if f.family == "language"), {})
    main = cfg.language.expected or language.get("main")
    if wanted("language") and "response_lang" in columns and main:
        out.append(Expectation("language", "ExpectColumnValuesToBeInSet", {"column": "response_lang", "value_set": main}))
    return out


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline by default: no usage events
    try:
        import great_expectations as gx
    except ImportError:
        raise GxUnavailable("--gx and --gx-suite need Great Expectations: pip install 'datakit[gx]'.") from None
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gx


def build_suite(found: list[Expectation]):
    """A `great_expectations.ExpectationSuite` holding the expectations, each tagged with its datakit family."""
    gx = _gx()
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=[
        getattr(gx.expectations, e.kind)(**e.kwargs, meta={"datakit_family": e.family}) for e in found])


def suite_json(report: AuditReport, columns: list[str]) -> str:
    """The suite over metrics with these `columns`, as GX's JSON (`ExpectationSuite(**json.load(f))` reads it back),
    without run-specific ids."""
    data = build_suite(expectations(report, columns)).to_json_dict()
    data.pop("id", None)
    for e in data["expectations"]:
        e.pop("id", None)
    data["meta"]["datakit_version"] = report.version
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def validate(report: AuditReport, metrics: pl.DataFrame) -> GxValidation:
    """Runs the suite with Great Expectations' own engine over the per-record metrics (one row per valid record:
    line, token counts, text lengths, record hash, and near_duplicate / response_lang where those families ran)."""
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    found = expectations(report, metrics.columns)
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults()))
    batch = (context.data_sources.add_pandas("datakit").add_dataframe_asset("records")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": metrics.to_pandas()}))
    result = batch.validate(build_suite(found))
    results = []
    for r in result.results:
        conf = r.expectation_config
        kwargs = {k: v for k, v in conf.kwargs.items() if k != "batch_id"}
        results.append(GxExpectationResult(
            expectation=conf.type, column=kwargs.get("column"), family=(conf.meta or {}).get("datakit_family", ""),
            kwargs=kwargs, success=bool(r.success), element_count=r.result.get("element_count"),
            unexpected_count=r.result.get("unexpected_count")))
    return GxValidation(suite=SUITE_NAME, gx_version=gx.__version__, success=bool(result.success),
                        evaluated=len(results), successful=sum(r.success for r in results), results=results)
