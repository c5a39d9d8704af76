"""Normalised text and hashes for duplicate detection: Unicode NFKC, case-folded, whitespace collapsed (and, for
comparing answers to one prompt, sentence punctuation dropped)."""
from __future__ import annotations

import polars as pl

from schemas.config import AuditConfig
from schemas.dataset import Dataset


def normalised(col: str) -> pl.Expr:
    """The comparison form of a text column: NFKC, lower case, runs of whitespace as one space, trimmed."""
    return (pl.col(col).fill_null("").str.normalize("NFKC").str.to_lowercase()
            .str.replace_all(r"\s+", " ").str.strip_chars())


# Sentence punctuation and quotes (Latin and CJK; fullwidth forms are ASCII after NFKC): they change how an answer
# reads, not what it says. Brackets, dashes, signs and operators are not among them: (a+b)*c, -3 and 5% say more.
_LOOSE_PUNCT = r"""[.,!?;:…'"‘’“”«»。、「」『』【】《》〈〉]"""
_INSIDE_WORD = r"([\p{Latin}\p{N}])([.,:'’])([\p{Latin}\p{N}])"  # 3.5, 1,000, don't, 10:30: part of the word


def loosened(text: pl.Expr) -> pl.Expr:
    """A comparison form (`normalised`) without sentence punctuation and quotes, except inside a word or number:
    "Canberra." and "canberra" are one answer, "3.5" and "35" are not."""
    for _ in range(2):  # a match takes the next word's first character, so every other "1.2.3" dot waits a pass
        text = text.str.replace_all(_INSIDE_WORD, "${1}\x00${2}${3}")
    text = text.str.replace_all("(\x00[.,:'’])|" + _LOOSE_PUNCT, "${1}").str.replace_all("\x00", "", literal=True)
    return text.str.replace_all(r"\s+", " ").str.strip_chars()


def add_normalised_hashes(ds: Dataset, config: AuditConfig) -> None:
    """Adds `prompt_hash` and `record_hash` (prompt + response) over the normalised text, and `answer_hash` over the
    loosened response (duplicate.conflicting_output: answers differing only in punctuation are one answer); null for
    invalid rows."""
    valid = pl.col("valid")
    prompt, response = pl.col("_prompt_normalised"), pl.col("_response_normalised")
    ds.frame = ds.frame.with_columns(normalised("prompt").alias(prompt.meta.output_name()),
                                     normalised("response").alias(response.meta.output_name())).with_columns(
        pl.when(valid).then(prompt.hash(seed=0)).alias("prompt_hash"),
        pl.when(valid).then(pl.concat_str([prompt, response], separator="\x1f").hash(seed=0)).alias("record_hash"),
        pl.when(valid).then(loosened(response).hash(seed=0)).alias("answer_hash"),
    ).drop(prompt.meta.output_name(), response.meta.output_name())
