"""Normalised text and hashes for exact-duplicate detection: Unicode NFKC, case-folded, whitespace collapsed."""
from __future__ import annotations

import polars as pl

from schemas.config import AuditConfig
from schemas.dataset import Dataset


def normalised(col: str) -> pl.Expr:
    """The comparison form of a text column: NFKC, lower case, runs of whitespace as one space, trimmed."""
    return (pl.col(col).fill_null("").str.normalize("NFKC").str.to_lowercase()
            .str.replace_all(r"\s+", " ").str.strip_chars())


def add_normalised_hashes(ds: Dataset, config: AuditConfig) -> None:
    """Adds `prompt_hash` and `record_hash` (prompt + response) over the normalised text; null for invalid rows."""
    valid = pl.col("valid")
    ds.frame = ds.frame.with_columns(
        pl.when(valid).then(normalised("prompt").hash(seed=0)).alias("prompt_hash"),
        pl.when(valid).then(pl.concat_str([normalised("prompt"), normalised("response")], separator="\x1f")
                            .hash(seed=0)).alias("record_hash"),
    )
