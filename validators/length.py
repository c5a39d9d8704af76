"""length.*: records longer than the training max length, and answers too short to be complete ("完整性").

Token counts come from `datakit.measure.tokens` (cl100k offline, or the target model's local tokenizer).
A short answer is not flagged when it is a label-like answer: one word or number that is either numeric
or already offered in the prompt (a class name, an option letter, yes/no after "yes or no"), because
classification and extraction prompts are complete with a one-word answer.
"""
from __future__ import annotations

import re
from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, flag, message
from validators.empty import BLANK, text_fields

E, W = Severity.error, Severity.warning

_EDGE_PUNCT = " \t\n.,;:!?\"'()[]{}。，；：！？“”‘’（）【】「」"
_NUMBER = re.compile(r"[-+]?[\d,]*\.?\d+%?")


class LengthRules(Rule):
    family: ClassVar[str] = "length"
    needs: ClassVar[tuple[str, ...]] = ("tokens",)
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("length.too_long", E, "Records over the training max length are truncated (losing the end of the answer) or "
                 "dropped by trainers.", "max_tokens = 2048", fix="drop"),
        RuleCode("length.too_short", W, "Answers of a token or two are rarely complete ('完整性'); label-like answers offered "
                 "in the prompt and numbers are exempt.", "min_response_tokens = 3"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.length
        tokenizer = ctx.measured.get("tokenizer", "")
        valid = batch.valid
        too_long = valid.filter(pl.col("tokens") > cfg.max_tokens)
        long_found = flag(
            too_long, code_info(self, "length.too_long"),
            message("record has {} tokens (prompt {} + response {}, counted with {}), over the limit of {}: trainers "
                    "truncate it, losing the end of the answer, or drop it. Shorten or split it, raise --max-tokens if "
                    "your trainer's max length allows, or let `datakit fix` drop it.",
                    pl.col("tokens"), pl.col("prompt_tokens"), pl.col("response_tokens"), tokenizer, str(cfg.max_tokens)),
            detail=pl.format("{} tokens > {}", pl.col("tokens"), pl.lit(str(cfg.max_tokens))))
        short = valid.filter((pl.col("format") != "prompts") & (pl.col("response_tokens") < cfg.min_response_tokens)
                             & ~pl.col("response").fill_null("").str.contains(BLANK))
        info = code_info(self, "length.too_short")
        found = []
        for row in short.iter_rows(named=True):
            answer = row["response"].strip()
            if _label_like(answer, row["prompt"] or ""):
                continue
            field = next((name for name, role, _ in reversed(text_fields(row)) if role == "assistant"), None)
            found.append({"rule": info.code, "severity": info.severity.value, "source": row["source"], "line": row["line"],
                          "record_id": row["id"], "field": field, "excerpt": answer[:200],
                          "detail": f"{row['response_tokens']} tokens < {cfg.min_response_tokens}",
                          "template": "answer has only {} token(s) ({}), under the minimum of {}: answers this short are "
                                      "rarely complete, and the model learns to be curt. Check that it was not cut off; "
                                      "expand it if the prompt asks for more.",
                          "values": [str(row["response_tokens"]), tokenizer, str(cfg.min_response_tokens)]})
        return pl.concat([long_found, findings_frame(found)])

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        valid = batch.valid
        return valid.select((pl.col("tokens") > ctx.config.length.max_tokens).sum().cast(pl.Int64).alias("over"),
                            pl.col("tokens").max().cast(pl.Int64).alias("longest"),
                            pl.col("tokens").sum().cast(pl.Int64).alias("total"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.length
        tallies = state.select(pl.col("over").sum(), pl.col("longest").max(), pl.col("total").sum()).collect(
            engine="streaming") if state is not None else None
        return empty_findings(), {
            "tokenizer": ctx.measured.get("tokenizer", ""),
            "max_tokens": cfg.max_tokens,
            "min_response_tokens": cfg.min_response_tokens,
            "records_over_max_tokens": int(tallies["over"][0] or 0) if tallies is not None else 0,
            "longest_record_tokens": tallies["longest"][0] if tallies is not None else None,
            "tokens_total": int(tallies["total"][0] or 0) if tallies is not None else 0,
        }


def _label_like(answer: str, prompt: str) -> bool:
    """A one-word answer that is a number, or a word the prompt itself offers (whole word for ASCII, substring for CJK)."""
    word = answer.strip(_EDGE_PUNCT)
    if not word or any(c.isspace() for c in word):
        return False
    if _NUMBER.fullmatch(word):
        return True
    word, prompt = word.casefold(), prompt.casefold()
    if word.isascii():
        return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", prompt) is not None
    return word in prompt
