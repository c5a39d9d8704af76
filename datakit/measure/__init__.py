"""Per-record measurements computed once per batch and added as frame columns, shared by rules, report, fixers, trainer.

Each measurement is a function `(ds, config) -> None` that adds its columns to `ds.frame` (a whole small file or
one batch of a large one: every measurement depends on the record alone, so batching never changes a value).
Rules name what they need in `Rule.needs`; `ensure` computes each one at most once per frame. "near_dup" is the one
measurement across records: the engine keeps `lsh.lsh_state` per batch and clusters it at the end
(`lsh.cluster_state`), handing the clusters to the rules in `RuleContext.measured["near_dup"]`. "contamination"
compares each record with the --against eval sets, indexed once per audit (`EvalIndex`).
"""
from __future__ import annotations

from collections.abc import Callable

from datakit.measure.contamination import EvalIndex, add_contamination
from datakit.measure.copying import add_answer_copy
from datakit.measure.language import add_languages
from datakit.measure.minhash import add_minhash
from datakit.measure.model_scores import add_model_scores
from datakit.measure.normal import add_normalised_hashes
from datakit.measure.patterns import add_internal_references
from datakit.measure.tokens import add_token_counts
from schemas.config import AuditConfig
from schemas.dataset import Dataset

# name -> (ds, config, eval index or None) -> None; a measurement comes after the ones it reads (`REQUIRES`).
MEASURES: dict[str, Callable[[Dataset, AuditConfig, EvalIndex | None], None]] = {
    "tokens": lambda ds, config, _: add_token_counts(ds, config),
    "norm_hash": lambda ds, config, _: add_normalised_hashes(ds, config),
    "minhash": lambda ds, config, _: add_minhash(ds, config),
    "language": lambda ds, config, _: add_languages(ds, config),
    "contamination": add_contamination,
    "answer_copy": add_answer_copy,
    "internal_ref": add_internal_references,
    "model_scores": lambda ds, config, _: add_model_scores(ds, config),
}
REQUIRES = {"near_dup": ("minhash",), "contamination": ("norm_hash", "minhash")}


def per_record(names: list[str] | tuple[str, ...]) -> list[str]:
    """The per-record measurements behind `names` (those they require first), each once, in order."""
    out = [m for n in names for m in (*REQUIRES.get(n, ()), n) if m in MEASURES]
    return list(dict.fromkeys(out))


def ensure(ds: Dataset, names: list[str] | tuple[str, ...], config: AuditConfig, evals: EvalIndex | None = None) -> None:
    """Adds each measurement of `names` (and what it requires) that `ds` lacks; `evals` are the --against sets."""
    for name in per_record(names):
        if name not in ds.measured:
            MEASURES[name](ds, config, evals)
            ds.measured.add(name)
