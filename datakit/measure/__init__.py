"""Per-record measurements computed once per batch and added as frame columns, shared by rules, report, fixers, trainer.

Each measurement is a function `(ds, config) -> None` that adds its columns to `ds.frame` (a whole small file or
one batch of a large one: every measurement depends on the record alone, so batching never changes a value).
Rules name what they need in `Rule.needs`; `ensure` computes each one at most once per frame. "near_dup" is the one
measurement across records: the engine keeps `lsh.lsh_state` per batch and clusters it at the end
(`lsh.cluster_state`), handing the clusters to the rules in `RuleContext.measured["near_dup"]`.
"""
from __future__ import annotations

from collections.abc import Callable

from datakit.measure.language import add_languages
from datakit.measure.minhash import add_minhash
from datakit.measure.normal import add_normalised_hashes
from datakit.measure.tokens import add_token_counts
from schemas.config import AuditConfig
from schemas.dataset import Dataset

MEASURES: dict[str, Callable[[Dataset, AuditConfig], None]] = {
    "tokens": add_token_counts,
    "norm_hash": add_normalised_hashes,
    "minhash": add_minhash,
    "language": add_languages,
}
ACROSS_RECORDS = {"near_dup": ("minhash",)}  # cross-record measurement -> the per-record ones it is built from


def per_record(names: list[str] | tuple[str, ...]) -> list[str]:
    """The per-record measurements behind `names`, in order, each once."""
    out = [m for n in names for m in (*ACROSS_RECORDS.get(n, ()), n) if m in MEASURES]
    return list(dict.fromkeys(out))


def ensure(ds: Dataset, names: list[str] | tuple[str, ...], config: AuditConfig) -> None:
    for name in per_record(names):
        if name not in ds.measured:
            MEASURES[name](ds, config)
            ds.measured.add(name)
