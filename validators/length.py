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

from datakit.measure.tokens import counter
from schemas.dataset import Dataset
from schemas.findings import Severity, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, flag
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

    def check(self, ds: Dataset, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.length
        tokenizer = counter(cfg.tokenizer).name
        valid = ds.valid
        too_long = valid.filter(pl.col("tokens") > cfg.max_tokens)
        long_found = flag(
            too_long, code_info(self, "length.too_long"),
            pl.format("record has {} tokens (prompt {} + response {}, counted with {}), over the limit of {}: trainers "
                      "truncate it, losing the end of the answer, or drop it. Shorten or split it, raise --max-tokens if "
                      "your trainer's max length allows, or let `datakit fix` drop it.",
                      pl.col("tokens"), pl.col("prompt_tokens"), pl.col("response_tokens"), pl.lit(tokenizer),
                      pl.lit(str(cfg.max_tokens))),
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
                          "message": f"answer has only {row['response_tokens']} token(s) ({tokenizer}), under the minimum "
                                     f"of {cfg.min_response_tokens}: answers this short are rarely complete, and the model "
                                     "learns to be curt. Check that it was not cut off; expand it if the prompt asks for more."})
        return pl.concat([long_found, findings_frame(found)])

    def summary(self, ds: Dataset, ctx: RuleContext) -> dict:
        cfg = ctx.config.length
        valid = ds.valid
        return {
            "tokenizer": counter(cfg.tokenizer).name,
            "max_tokens": cfg.max_tokens,
            "min_response_tokens": cfg.min_response_tokens,
            "records_over_max_tokens": valid.filter(pl.col("tokens") > cfg.max_tokens).height,
            "longest_record_tokens": valid["tokens"].max(),
            "tokens_total": valid["tokens"].sum(),
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
