"""duplicate.*: exact copies after normalisation, and the same prompt answered differently.

Both compare `datakit.measure.normal` hashes (NFKC, case-folded, whitespace collapsed) within one file.
A conversation's tool definitions (`tools`) are part of its context: the same question asked with
different tools may rightly get different answers, so they are compared too.
"""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag
from validators.empty import BLANK

W = Severity.warning


class DuplicateRules(Rule):
    family: ClassVar[str] = "duplicate"
    needs: ClassVar[tuple[str, ...]] = ("norm_hash",)
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("duplicate.exact", W, "Repeated records over-weight one example and leak across train/eval splits.", fix="drop"),
        RuleCode("duplicate.conflicting_output", W, "The same prompt with different answers teaches the model two answers to one "
                 "question.", "check_conflicting_outputs = true"),
    )

    def check(self, ds: Dataset, ctx: RuleContext) -> pl.DataFrame:
        rows = _keyed(ds)
        copies = rows.filter(pl.col("id") != pl.col("first_id")).join(
            rows.select(pl.col("id").alias("first_id"), pl.col("line").alias("first_line")), on="first_id")
        found = [flag(copies, code_info(self, "duplicate.exact"),
                      pl.format("exact duplicate of line {} (same prompt and answer after normalising case, whitespace and "
                                "Unicode): copies over-weight one example and leak across train/eval splits. `datakit fix` "
                                "keeps the first copy and drops this one.", pl.col("first_line")),
                      detail=pl.format("{} copies in the group", pl.col("copies")), related_line=pl.col("first_line"))]
        if ctx.config.duplicate.check_conflicting_outputs:
            answered = rows.filter(~pl.col("prompt").fill_null("").str.contains(BLANK)).with_columns(
                pl.col("record_key").first().over("prompt_key").alias("reference_key"),
                pl.col("line").first().over("prompt_key").alias("reference_line"),
                pl.col("record_key").n_unique().over("prompt_key").alias("answers"))
            conflicts = answered.filter(pl.col("record_key") != pl.col("reference_key"))
            found.append(flag(conflicts, code_info(self, "duplicate.conflicting_output"),
                              pl.format("same prompt as line {} but a different answer ({} different answers to this prompt "
                                        "in the file): the model learns two answers to one question. If both are right, make "
                                        "the prompts say what differs; if not, keep the right one.",
                                        pl.col("reference_line"), pl.col("answers")),
                              excerpt=pl.col("response").str.slice(0, 120),
                              detail=pl.format("{} different answers", pl.col("answers")),
                              related_line=pl.col("reference_line")))
        return concat_findings(found)

    def summary(self, ds: Dataset, ctx: RuleContext) -> dict:
        rows = _keyed(ds)
        groups = rows.filter(pl.col("copies") > 1).group_by("record_key").agg(pl.len(), pl.col("line").first())
        largest = groups.sort(["len", "line"], descending=[True, False]).head(1)
        prompts = rows.filter(~pl.col("prompt").fill_null("").str.contains(BLANK)).group_by("prompt_key").agg(
            pl.col("record_key").n_unique().alias("answers"))
        return {
            "duplicate_groups": groups.height,
            "duplicate_records_beyond_first": int(groups["len"].sum() - groups.height) if groups.height else 0,
            "largest_group": {"copies": largest["len"][0], "first_line": largest["line"][0]} if largest.height else None,
            "prompts_with_conflicting_outputs": prompts.filter(pl.col("answers") > 1).height,
        }


def _keyed(ds: Dataset) -> pl.DataFrame:
    """Valid records with comparison keys (hash + tools), the first record of each exact group and the group size."""
    valid = ds.valid
    conv = pl.col("format").is_in(["sharegpt", "openai"])
    tools = pl.col("raw").str.json_path_match("$.tools").fill_null("") if valid.select(conv.any()).item() else pl.lit("")
    rows = valid.select("id", "line", "source", "prompt", "response",
                        pl.struct("prompt_hash", pl.when(conv).then(tools).otherwise(pl.lit("")).alias("tools")).alias("prompt_key"),
                        pl.struct("record_hash", pl.when(conv).then(tools).otherwise(pl.lit("")).alias("tools")).alias("record_key"))
    return rows.with_columns(
        pl.col("id").first().over("record_key").alias("first_id"),
        pl.len().over("record_key").alias("copies"),
    )
