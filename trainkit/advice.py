"""Which data to add: the eval numbers per class and per prompt length turned into advice tied to the gate's audit.

The documents' loop is "train quickly, test, add data where it falls short". A class the model fails (eval loss well
above the whole eval loss) with few records gets "add N records of class X", N from the documents' volume table
(10-100 records per class); one with enough records points at what the audit found among its records (conflicting
answers, near-duplicates); a prompt-length bucket that fails points at max_length and truncation. Every piece of
advice lists the numbers and findings it rests on, so it can be checked.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

HIGH_LOSS = 1.2  # a group whose eval loss is 20% or more above that of the rest of the eval records is failing
PER_CLASS = (10, 100)  # the documents' volume table: a class with fewer than 10-100 examples is barely learnt
SIZE_RULES = ("volume.class_too_small", "balance.class_too_small", "balance.imbalanced")
CONTENT_RULES = ("duplicate.conflicting_output", "near_duplicate.cluster", "duplicate.exact", "consistency.terminology")
LENGTH_RULES = ("length.too_long",)
NO_LABEL = "(no label)"  # the eval group of records without a class (trainkit.evaluate): no class to add records to


@dataclass
class Advice:
    kind: str  # add_records | inspect_findings | inspect_records | max_length
    subject: str  # the class or the length bucket
    text: str
    rests_on: list[str] = field(default_factory=list)


@dataclass
class AuditFacts:
    """What the advice reads from the gate's audit: each finding's rule, line and excerpt, and the class minimum."""

    findings: list[tuple[str, int | None, str | None]]  # (rule, line, excerpt)
    min_per_class: int = PER_CLASS[0]

    @classmethod
    def of(cls, report) -> AuditFacts:
        """From an `AuditReport` (its findings inline, as the gate keeps them)."""
        return cls([(f.rule, f.line, f.excerpt) for f in report.findings], report.config.balance.min_per_class)


def rest_loss(group: dict, groups: list[dict]) -> float | None:
    """Eval loss of the records outside `group` (token-weighted, as the eval loss is); None when there are none."""
    tokens = sum(g["tokens"] for g in groups) - group["tokens"]
    if tokens <= 0:
        return None
    return (sum(g["loss"] * g["tokens"] for g in groups) - group["loss"] * group["tokens"]) / tokens


def failing(group: dict, groups: list[dict]) -> bool:
    rest = rest_loss(group, groups)
    return rest is not None and group["loss"] >= HIGH_LOSS * rest


def _loss_fact(group: dict, rest: float, what: str) -> str:
    return (f"eval loss {group['loss']:.3f} (perplexity {group['perplexity']:.1f}) on {group['records']} eval record(s) "
            f"of {what}, {group['loss'] / rest:.2f}x the {rest:.3f} of the other eval records")


def class_target(label: str, counts: dict[str, int], min_per_class: int) -> int:
    """Records class `label` should have: the median of the other classes, within the documents' 10-100 per class
    (and at least the audit's per-class minimum)."""
    others = [n for name, n in counts.items() if name != label]
    typical = median(others) if others else PER_CLASS[1]
    return int(max(min_per_class, PER_CLASS[0], min(PER_CLASS[1], typical)))


def _size_facts(name: str, counts: dict[str, int], audit: AuditFacts, label_field: str) -> tuple[int, int, list[str]]:
    """(records trained on, records to aim for, the facts a shortage rests on: counts, the volume table, findings)."""
    have = counts.get(name, 0)
    target = class_target(name, counts, audit.min_per_class)
    # a class_too_small finding names its class; balance.imbalanced names the largest one, and bears on the small ones
    findings = [f"{rule}: {excerpt}" for rule, _, excerpt in audit.findings if rule in SIZE_RULES and (
        excerpt == name if rule != "balance.imbalanced" else have < target)]
    others = [n for k, n in counts.items() if k != name]
    table = f"the documents' volume table: {PER_CLASS[0]}-{PER_CLASS[1]} records per class"
    facts = [f"{have} training record(s) of '{name}' ({label_field})",
             table + (f"; the other classes have a median of {median(others):g}" if others else "")] + findings
    return have, target, facts if (have < target or findings) else []


def class_advice(group: dict, rest: float, counts: dict[str, int], audit: AuditFacts, lines_of: dict[str, set[int]],
                 label_field: str) -> Advice:
    name = group["name"]
    have, target, shortage = _size_facts(name, counts, audit, label_field)
    rests = [_loss_fact(group, rest, f"class '{name}'")]
    if shortage:
        return Advice("add_records", name, f"add {max(target - have, 1)} records of class '{name}' (it has {have}; aim for "
                      f"{target}): the model fails this class and has seen too few examples of it.", rests + shortage)
    members = lines_of.get(name, set())
    hits = Counter(rule for rule, line, _ in audit.findings if rule in CONTENT_RULES and line in members)
    rests.append(f"{have} training record(s) of '{name}': enough by the documents' volume table ({PER_CLASS[0]}-"
                 f"{PER_CLASS[1]} per class)")
    if hits:
        listed = ", ".join(f"{rule} on {n} record(s)" for rule, n in hits.most_common())
        rests += [f"{rule}: {n} record(s) of '{name}'" for rule, n in hits.most_common()]
        return Advice("inspect_findings", name, f"class '{name}' has enough records but a high eval loss: look at its "
                      f"findings in the audit report ({listed}); conflicting answers and near-copies teach it two answers "
                      "or one answer too often. `datakit fix` resolves them.", rests)
    rests.append(f"no conflicting-answer or near-duplicate finding among the records of '{name}'")
    return Advice("inspect_records", name, f"class '{name}' has enough records and clean audit findings but a high eval "
                  "loss: read its worst records below (are its answers consistent with each other?), then add more "
                  "varied examples of it.", rests)


def length_advice(group: dict, rest: float, evaluation: dict, audit: AuditFacts) -> Advice:
    max_length = evaluation["max_length"]
    over = len(evaluation.get("over_length", []))
    too_long = sum(1 for rule, _, _ in audit.findings if rule in LENGTH_RULES)
    rests = [_loss_fact(group, rest, f"prompts of {group['name']} tokens"), f"max_length {max_length} tokens",
             f"{over} eval record(s) over max_length, left out of the eval", f"length.too_long: {too_long} record(s)"]
    if over or too_long:
        text = (f"prompts of {group['name']} tokens fail and records run past max_length {max_length}: raise --max-length "
                "(the plan's p99 of the data is the default) or shorten the long records (`datakit fix` truncates at the "
                "audit's --max-tokens, keeping whole answers) so long prompts are trained on whole.")
    else:
        text = (f"prompts of {group['name']} tokens fail though they fit max_length {max_length}: few training records "
                "are this long; add records with prompts of this length, or check that long records are not truncated "
                "in the data itself.")
    return Advice("max_length", group["name"], text, rests)


def lines_by_label(labels: list[str | None], lines: list[int]) -> dict[str, set[int]]:
    """Source lines of the records of each class (findings name records by line)."""
    out: dict[str, set[int]] = {}
    for label, line in zip(labels, lines):
        if label is not None:
            out.setdefault(label, set()).add(line)
    return out


def advise(evaluation: dict[str, Any], *, train_counts: dict[str, int], lines_of: dict[str, set[int]], audit: AuditFacts
           ) -> list[dict[str, Any]]:
    """Advice from an eval section (`trainkit.evaluate.evaluate`), the records trained on per class, the lines of each
    class's records in the audited data, and the gate's audit; classes (weakest first), then length buckets."""
    if not evaluation.get("loss"):
        return []
    field_name = evaluation.get("label_field") or "label"
    classes, lengths = evaluation.get("by_label", []), evaluation.get("by_length", [])
    out = [class_advice(g, rest_loss(g, classes), train_counts, audit, lines_of, field_name)
           for g in classes if failing(g, classes) and g["name"] != NO_LABEL]
    scored = {g["name"] for g in classes}
    for name in sorted(train_counts) if evaluation.get("label_field") else []:
        have, target, shortage = _size_facts(name, train_counts, audit, field_name)
        if name not in scored and shortage:
            out.append(Advice("add_records", name, f"add {max(target - have, 1)} records of class '{name}' (it has {have}, "
                              f"too few to hold any out for evaluation; aim for {target}): its eval loss cannot be measured "
                              "and the model has seen too few examples of it.", ["no eval record of this class", *shortage]))
    out += [length_advice(g, rest_loss(g, lengths), evaluation, audit) for g in lengths if failing(g, lengths)]
    return [asdict(a) for a in out]
