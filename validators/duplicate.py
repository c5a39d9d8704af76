"""duplicate.*: exact copies after normalisation, and the same prompt answered differently.

Both compare `datakit.measure.normal` hashes (NFKC, case-folded, whitespace collapsed) within one file. Two
answers to one prompt that differ only in sentence punctuation and quotes ("Canberra." and "canberra") are the
same answer, not a conflict; they are not exact duplicates either, because `fix` drops exact duplicates
without asking and a quote can matter (`x = "a"` and `x = a`).
A conversation's tool definitions (`tools`) are part of its context: the same question asked with
different tools may rightly get different answers, so they are compared too.
"""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message
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

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per valid record: its comparison keys (prompt and record hashes, and the hash of its tool definitions) and
        the head of its answer (shown when it conflicts)."""
        valid = batch.valid
        conv = pl.col("format").is_in(["sharegpt", "openai"])
        tools = pl.col("raw").str.json_path_match("$.tools").fill_null("") if valid.select(conv.any()).item() else pl.lit("")
        return valid.select("id", "line", "prompt_hash", "record_hash", "answer_hash",
                            pl.when(conv).then(tools).otherwise(pl.lit("")).hash(seed=0).alias("tools_hash"),
                            (~pl.col("prompt").fill_null("").str.contains(BLANK)).alias("asked"),
                            pl.col("response").str.slice(0, 120).alias("answer_head"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        if state is None:
            return empty_findings(), _summary(pl.DataFrame(schema=_KEYED))
        rows = _keyed(state.drop("answer_head").collect(engine="streaming"))
        copies = rows.filter(pl.col("id") != pl.col("first_id")).join(
            rows.select(pl.col("id").alias("first_id"), pl.col("line").alias("first_line")), on="first_id")
        source = ctx.source_of().alias("source")
        found = [flag(copies.with_columns(source), code_info(self, "duplicate.exact"),
                      message("exact duplicate of line {} (same prompt and answer after normalising case, whitespace and "
                              "Unicode): copies over-weight one example and leak across train/eval splits. `datakit fix` "
                              "keeps the first copy and drops this one.", pl.col("first_line")),
                      detail=pl.format("{} copies in the group", pl.col("copies")), related_line=pl.col("first_line"),
                      related_source=_other_source(ctx, "first_id"))]
        if ctx.config.duplicate.check_conflicting_outputs:
            answered = rows.filter(pl.col("asked")).with_columns(
                pl.col("answer_hash").first().over("prompt_key").alias("reference_answer"),
                pl.col("line").first().over("prompt_key").alias("reference_line"),
                pl.col("id").first().over("prompt_key").alias("reference_id"),
                pl.col("answer_hash").n_unique().over("prompt_key").alias("answers"))
            conflicts = answered.filter(pl.col("answer_hash") != pl.col("reference_answer"))
            heads = state.select("id", "answer_head").filter(pl.col("id").is_in(conflicts["id"].implode())).collect(
                engine="streaming")
            found.append(flag(conflicts.join(heads, on="id", how="left", maintain_order="left").with_columns(source),
                              code_info(self, "duplicate.conflicting_output"),
                              message("same prompt as line {} but a different answer ({} different answers to this prompt "
                                      "in the file, punctuation and case aside): the model learns two answers to one question. If both are right, make "
                                      "the prompts say what differs; if not, keep the right one.",
                                      pl.col("reference_line"), pl.col("answers")),
                              excerpt=pl.col("answer_head"),
                              detail=pl.format("{} different answers", pl.col("answers")),
                              related_line=pl.col("reference_line"), related_source=_other_source(ctx, "reference_id")))
        return concat_findings(found), _summary(rows)


_KEYED = {"id": pl.Int64, "line": pl.Int64, "asked": pl.Boolean, "answer_hash": pl.UInt64,
          "prompt_key": pl.Struct({"prompt_hash": pl.UInt64, "tools_hash": pl.UInt64}),
          "record_key": pl.Struct({"record_hash": pl.UInt64, "tools_hash": pl.UInt64}),
          "first_id": pl.Int64, "copies": pl.UInt32}


def _keyed(state: pl.DataFrame) -> pl.DataFrame:
    """Records with comparison keys (hash + tools), the first record of each exact group and the group size."""
    rows = state.select("id", "line", "asked", "answer_hash", pl.struct("prompt_hash", "tools_hash").alias("prompt_key"),
                        pl.struct("record_hash", "tools_hash").alias("record_key"))
    return rows.with_columns(
        pl.col("id").first().over("record_key").alias("first_id"),
        pl.len().over("record_key").alias("copies"),
    )


def _other_source(ctx: RuleContext, id_column: str) -> pl.Expr | None:
    """The related record's file when it is not the record's own (only a directory of shards has several)."""
    if len(ctx.sources) <= 1:
        return None
    theirs = ctx.source_of(id_column)
    return pl.when(theirs != ctx.source_of()).then(theirs)


def _summary(rows: pl.DataFrame) -> dict:
    groups = rows.filter(pl.col("copies") > 1).group_by("record_key").agg(pl.len(), pl.col("line").first())
    largest = groups.sort(["len", "line"], descending=[True, False]).head(1)
    prompts = rows.filter(pl.col("asked")).group_by("prompt_key").agg(pl.col("answer_hash").n_unique().alias("answers"))
    sizes = groups.group_by("len").len("groups").sort("len")
    return {
        "duplicate_groups": groups.height,
        "size_distribution": {str(size): n for size, n in sizes.iter_rows()},
        "duplicate_records_beyond_first": int(groups["len"].sum() - groups.height) if groups.height else 0,
        "largest_group": {"copies": largest["len"][0], "first_line": largest["line"][0]} if largest.height else None,
        "prompts_with_conflicting_outputs": prompts.filter(pl.col("answers") > 1).height,
    }
