"""leakage.*: training records that contain an eval set (exact, near or shared n-grams), answers already given in
their prompt, and answers that cite internal material.

Contamination is judged per training record, strongest evidence first: an exact copy of an eval item
(`eval_exact`), else a near copy of one (`eval_near`, MinHash), else a shared run of n tokens
(`eval_overlap`, GPT-3's 13-gram decontamination); a record gets one of the three, naming the eval
file and line it matched. The searching is measurement (`datakit.measure`: "contamination", "answer_copy",
"internal_ref"); this family judges what was measured and says why it matters.
"""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message

E, W = Severity.error, Severity.warning
EVAL_CODES = {"leakage.eval_exact": "is identical (ignoring case, width and spacing) to",
              "leakage.eval_near": "is a near copy of",
              "leakage.eval_overlap": "shares a long run of words with"}


class LeakageRules(Rule):
    family: ClassVar[str] = "leakage"
    needs: ClassVar[tuple[str, ...]] = ("contamination", "answer_copy", "internal_ref")
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("leakage.eval_exact", E, "A training record identical to an eval item makes that benchmark measure memory, "
                 "not skill.", "--against FILE", fix="drop"),
        RuleCode("leakage.eval_near", E, "A near copy of an eval item (reworded, re-punctuated) contaminates the benchmark "
                 "as surely as an exact one.", "near_threshold = 0.8", fix="drop"),
        RuleCode("leakage.eval_overlap", E, "A training text sharing a long run of words with an eval item (13 words, "
                 "GPT-3's decontamination rule) has seen part of the test.", "ngram = 13, cjk_ngram = 20", fix="drop"),
        RuleCode("leakage.answer_in_prompt", W, "When the answer is already in the prompt the model learns to copy its "
                 "input, not to answer.", "answer_in_prompt_share = 0.8"),
        RuleCode("leakage.internal_reference", W, "Answers citing internal documents, intranet URLs or personal file "
                 "paths cannot be verified by users and may leak internal material.", "internal_patterns"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        valid = batch.valid
        return concat_findings([self._contamination(valid), self._answer_in_prompt(valid, ctx), self._internal_reference(valid)])

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """The contaminated records of the batch: which eval record each matched, under which rule."""
        return found.filter(pl.col("rule").is_in(list(EVAL_CODES))).select(
            pl.col("record_id").alias("id"), "rule", pl.col("related_source").alias("eval_source"),
            pl.col("related_line").alias("eval_line"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        """Per eval file: its records, and how many training records matched it under each rule."""
        found = state.collect(engine="streaming") if state is not None else pl.DataFrame(
            schema={"id": pl.Int64, "rule": pl.String, "eval_source": pl.String, "eval_line": pl.Int64})
        files = []
        for other in ctx.against:
            mine = found.filter(pl.col("eval_source") == other.path)
            files.append({
                "file": other.path,
                "records": other.frame.height,
                "valid_records": other.valid.height,
                "training_records_matched": mine["id"].n_unique(),
                "eval_records_matched": mine.select("eval_line").n_unique(),
                "by_rule": {r: n for r, n in mine.group_by("rule").len().sort("rule").iter_rows()},
            })
        cfg = ctx.config.leakage
        return empty_findings(), {"against": files, "ngram": cfg.ngram, "cjk_ngram": cfg.cjk_ngram,
                                  "near_threshold": cfg.near_threshold}

    # --- train/eval contamination ----------------------------------------------------------------------

    def _contamination(self, valid: pl.DataFrame) -> pl.DataFrame:
        rows = valid.filter(pl.col("eval_rule").is_not_null())
        frames = []
        for code, verb in EVAL_CODES.items():
            mine = rows.filter(pl.col("eval_rule") == code)
            frames.append(flag(
                mine, code_info(self, code),
                message("{} " + verb + " {} line {} ({}): training on an eval item inflates that benchmark's score. Drop "
                        "it (`datakit fix --against` does) or evaluate on another set.",
                        pl.col("eval_field"), pl.col("eval_source"), pl.col("eval_line"), pl.col("eval_detail")),
                field=pl.col("eval_field"), excerpt=pl.col("eval_excerpt"), detail=pl.col("eval_detail"),
                related_line=pl.col("eval_line"), related_source=pl.col("eval_source")))
        return concat_findings(frames)

    # --- answers already in the prompt -----------------------------------------------------------------

    def _answer_in_prompt(self, valid: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.leakage
        rows = valid.filter(pl.col("answer_share") > cfg.answer_in_prompt_share)
        percent = (pl.col("answer_share") * 100).round(0).cast(pl.Int64).cast(pl.String) + "%"
        return flag(rows, code_info(self, "leakage.answer_in_prompt"),
                    message("{} of the response's {} tokens are copied from the prompt (runs of {}+ tokens): the model "
                            "learns to copy its input instead of answering. Expected for extraction tasks; otherwise "
                            "rewrite the answer or drop the record.", percent, pl.col("answer_tokens"), str(cfg.answer_run)),
                    field="response", excerpt=pl.col("response"), detail=percent)

    # --- references to internal material ---------------------------------------------------------------

    def _internal_reference(self, valid: pl.DataFrame) -> pl.DataFrame:
        rows = valid.filter(pl.col("internal_start").is_not_null())
        start, end = pl.col("internal_start"), pl.col("internal_end")
        matched = pl.col("response").str.slice(start, end - start)
        return flag(rows, code_info(self, "leakage.internal_reference"),
                    message("response cites internal material ('{}'): users cannot check it and it may leak what was meant "
                            "to stay inside. Rewrite the answer without it, or drop the record if it is internal data.",
                            matched.str.slice(0, 60)),
                    field="response", detail=matched.str.slice(0, 100),
                    excerpt=pl.col("response").str.slice((start - 40).clip(lower_bound=0),
                                                         end + 40 - (start - 40).clip(lower_bound=0)))
