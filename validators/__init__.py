"""Data-quality rules, one family per module; `RULES` is the registry, in report order.

Add a family: write `validators/<family>.py` with a class implementing `validators.base.Rule`
(family, codes, needs, check) and list it here.
"""
from __future__ import annotations

from validators.accuracy import AccuracyRules
from validators.balance import BalanceRules
from validators.base import Rule, RuleCode, RuleContext
from validators.completeness import CompletenessRules
from validators.consistency import ConsistencyRules
from validators.correspondence import CorrespondenceRules
from validators.diversity import DiversityRules
from validators.duplicate import DuplicateRules
from validators.empty import EmptyRules
from validators.format import FormatRules
from validators.hygiene import HygieneRules
from validators.language import LanguageRules
from validators.leakage import LeakageRules
from validators.length import LengthRules
from validators.near_duplicate import NearDuplicateRules
from validators.pii import PiiRules
from validators.spelling import SpellingRules
from validators.volume import VolumeRules

RULES: tuple[Rule, ...] = (
    FormatRules(),
    EmptyRules(),
    LengthRules(),
    HygieneRules(),
    DuplicateRules(),
    NearDuplicateRules(),
    LeakageRules(),
    PiiRules(),
    BalanceRules(),
    DiversityRules(),
    LanguageRules(),
    SpellingRules(),
    CompletenessRules(),
    AccuracyRules(),
    ConsistencyRules(),
    CorrespondenceRules(),
    VolumeRules(),
)


def families() -> list[str]:
    return [r.family for r in RULES]


def select(only: list[str] | None = None, skip: list[str] | None = None) -> list[Rule]:
    """The rules to run. Unknown family names raise ValueError naming the known ones."""
    known = families()
    for name in (only or []) + (skip or []):
        if name not in known:
            raise ValueError(f"unknown rule family '{name}'; known families: {', '.join(known)} (see `datakit rules`).")
    return [r for r in RULES if (not only or r.family in only) and r.family not in (skip or [])]


def all_codes() -> list[tuple[str, RuleCode]]:
    return [(r.family, c) for r in RULES for c in r.codes]


__all__ = ["RULES", "Rule", "RuleCode", "RuleContext", "all_codes", "families", "select"]
