"""Per-record measurements computed once and added as frame columns, shared by rules, report, fixers, trainer.

Each measurement is a function `(ds, config) -> None` that adds its columns to `ds.frame`.
Rules name what they need in `Rule.needs`; `ensure` computes each one at most once per dataset.
"""
from __future__ import annotations

from collections.abc import Callable

from datakit.measure.language import add_languages
from datakit.measure.minhash import add_minhash, add_near_duplicates
from datakit.measure.normal import add_normalised_hashes
from datakit.measure.tokens import add_token_counts
from schemas.config import AuditConfig
from schemas.dataset import Dataset

MEASURES: dict[str, Callable[[Dataset, AuditConfig], None]] = {
    "tokens": add_token_counts,
    "norm_hash": add_normalised_hashes,
    "minhash": add_minhash,
    "near_dup": add_near_duplicates,
    "language": add_languages,
}


def ensure(ds: Dataset, names: list[str] | tuple[str, ...], config: AuditConfig) -> None:
    for name in names:
        if name not in ds.measured:
            MEASURES[name](ds, config)
            ds.measured.add(name)
