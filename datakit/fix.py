"""`datakit fix`: repair what the rules can repair, move what they say to drop to a rejected file, lose nothing.

read -> audit -> repair the flagged records' texts (each family's `repair`, on the original record
objects) -> re-audit in memory until no repair finding remains (bounded) -> reject the records a
"drop" code flags -> write CLEAN in the input's format and REJ (one JSON line per rejected record:
source, line, every reason, the record untouched). CLEAN + REJ account for every input record once.

Adding a fixer is adding a `RuleCode(..., fix="repair")` and the family's idempotent `repair`
(or `fix="drop"`); this module only does the bookkeeping. Two actions depend on config: pii.action
(redact | reject, through the family's `fix_for`) and fix.over_length (drop | truncate, here).
"""
from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from datakit.audit import run_audit
from datakit.config import build_config
from datakit.io.read import InputError, RawRecord, read_raw
from datakit.io.write import container_of, refuse_overwrite, rejection, sibling, write_records
from datakit.recheck import check, dataset_of, edited
from datakit.records import map_texts, texts
from schemas.config import AuditConfig
from validators.base import Rule, RuleCode, RuleContext

MAX_ROUNDS = 4  # repair -> re-audit rounds; a record whose repair findings outlive them is rejected, not kept half-fixed
TOO_LONG = "length.too_long"
EXAMPLES = 20  # before/after changes kept for --dry-run


@dataclass
class Change:
    """One text a repair changed: where it is, which rules asked for it, before and after."""

    line: int
    role: str
    rules: list[str]
    before: str
    after: str


@dataclass
class FixResult:
    source: str
    records: int
    kept: int
    rejected: int
    repaired: dict[str, int]  # rule code -> kept records repaired (or truncated) for it
    dropped: dict[str, int]  # drop code -> rejected records it flagged
    unrepaired: dict[str, int]  # repair code -> records rejected because the repair could not fix them (and no drop code did)
    changes: list[Change]  # the first EXAMPLES changed texts
    rounds: int
    container: str
    gzip: bool
    clean_path: Path | None = None
    rejected_path: Path | None = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


def fix(path: str | Path, output: str | Path | None = None, rejected: str | Path | None = None, *, dry_run: bool = False,
        config: AuditConfig | None = None, config_file: str | Path | None = None, progress: bool = False,
        **options: Any) -> FixResult:
    """Fix one dataset file into `output` (same format as the input) and `rejected` (default `<output>.rejected.jsonl`).

    Options are those of `datakit.audit` (max_tokens, against, only, ...), plus config sections such as
    `pii={"action": "reject"}` or `fix={"over_length": "truncate"}`. With `dry_run` nothing is written.
    """
    if config is None:
        config = build_config(config_file, **options)
    clean_path = rej_path = None
    if not dry_run:
        if output is None:
            raise ValueError("fix needs an output file: `datakit fix DATA -o CLEAN` (or --dry-run to only show what would change).")
        clean_path = Path(output)
        rej_path = Path(rejected) if rejected is not None else sibling(clean_path, "rejected")
        refuse_overwrite("fix", [path], [clean_path, rej_path])
    run = run_audit(path, config, progress=progress)
    raw = read_raw(path)
    if raw.checksum != run.dataset.checksum:
        raise InputError(f"{path}: the file changed while it was being fixed; run `datakit fix` again once nothing writes to it.")
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    rules = select(config.only, config.skip)
    actions = _actions(select(), config)  # every family's: read findings carry format codes even when format is skipped
    owners = {c.code: rule for rule in rules for c in rule.codes}
    ctx = RuleContext(config=config, against=run.against)

    def audit(records: list[RawRecord], rids: list[int]) -> dict[int, list[dict]]:
        """Reasons per record id, auditing these records as they are now (in memory, original lines kept)."""
        ds = dataset_of(raw.path, [records[i] for i in rids], config.label_field, raw.container, raw.gzip)
        return {rids[sub]: found for sub, found in _reasons(check(ds, config, run.against, rules), actions).items()}

    objects = [r.obj for r in raw.records]
    reasons = _reasons(run.findings, actions)
    repaired_by: dict[int, set[str]] = {}
    unrepaired: set[int] = set()  # the repair changed nothing, or truncation cannot fit the record: rejected
    rounds = 0
    while rounds < MAX_ROUNDS and (todo := {rid: codes for rid, rs in reasons.items() if rid not in unrepaired
                                            and (codes := _codes(rs, "repair") | _codes(rs, "truncate"))}):
        rounds += 1
        for rid, codes in sorted(todo.items()):
            new = _repaired(objects[rid], sorted(codes), actions, owners, ctx)
            if new is None or new == objects[rid]:
                unrepaired.add(rid)
                continue
            objects[rid] = new
            repaired_by.setdefault(rid, set()).update(codes)
        reasons = audit(edited(raw.records, objects), list(range(len(objects))))
    unreadable = {rid for rid, r in enumerate(raw.records) if r.error is not None}
    for rid, found in _reasons(run.dataset.read_findings, actions).items():
        if rid in unreadable:
            reasons.setdefault(rid, found)  # unreadable records are rejected even when the format family is skipped
    unrepaired |= {rid for rid, rs in reasons.items() if _codes(rs, "repair") | _codes(rs, "truncate")}  # did not converge
    for rid in unrepaired:
        reasons[rid] = [r | {"fix": "unrepaired"} if r["fix"] in ("repair", "truncate") else r for r in reasons.get(rid, [])]
    reject = unreadable | unrepaired | {rid for rid, rs in reasons.items()
                                        if any(r["fix"] == "drop" and not _relational(r, raw.path) for r in rs)}
    # A drop that points at another record here (a duplicate of it, a near copy of its cluster's kept member) is
    # judged again without the records rejected above, so that no copy is dropped in favour of a rejected record.
    if reject and any(_codes(rs, "drop") for rid, rs in reasons.items() if rid not in reject):
        remaining = [rid for rid in range(len(objects)) if rid not in reject]
        reasons = {rid: rs for rid, rs in reasons.items() if rid in reject} | audit(edited(raw.records, objects), remaining)
    reject |= {rid for rid, rs in reasons.items() if _codes(rs, "drop")}
    kept = [rid for rid in range(len(objects)) if rid not in reject]
    result = FixResult(
        source=raw.path, records=len(objects), kept=len(kept), rejected=len(reject),
        repaired=dict(sorted(Counter(c for rid in kept for c in repaired_by.get(rid, ())).items())),
        dropped=_tally(reasons, reject, "drop"),
        unrepaired=_tally(reasons, {rid for rid in reject if not _codes(reasons.get(rid, []), "drop")}, "unrepaired"),
        changes=_changes(raw.records, objects, repaired_by, kept), rounds=rounds, container=raw.container, gzip=raw.gzip,
        clean_path=clean_path, rejected_path=rej_path, dry_run=dry_run,
    )
    if clean_path is not None and container_of(clean_path, (raw.container, raw.gzip)) != (raw.container, raw.gzip):
        result.notes.append(f"{clean_path} is written as {_describe(raw.container, raw.gzip)} like the input, whatever its "
                            "name says; `datakit convert` changes record formats.")
    if not dry_run:
        rows = [rejection(raw.path, raw.records[rid].line, raw.records[rid].text, raw.records[rid].obj, reasons.get(rid, []))
                for rid in sorted(reject)]
        # Rejected first: a CLEAN file on disk always has its REJ next to it.
        write_records(rej_path, rows, "jsonl")
        write_records(clean_path, (objects[rid] for rid in kept), raw.container, raw.gzip)
    return result


def _actions(rules: list[Rule], config: AuditConfig) -> dict[str, str | None]:
    """What fix does with each code under this config: repair | truncate | drop | None."""
    ctx = RuleContext(config=config)
    actions: dict[str, str | None] = {}
    for rule in rules:
        configured: Callable[[RuleCode, RuleContext], str | None] = getattr(rule, "fix_for", lambda c, _: c.fix)
        for code in rule.codes:
            actions[code.code] = configured(code, ctx)
    if TOO_LONG in actions and config.fix.over_length == "truncate":
        actions[TOO_LONG] = "truncate"
    return actions


def _repaired(obj: Any, codes: list[str], actions: dict[str, str | None], owners: dict[str, Rule],
              ctx: RuleContext) -> Any | None:
    """The record with every flagging family's repair applied to all its texts, then truncated if asked; None when
    truncation cannot make it fit."""
    families = list(dict.fromkeys(owners[c] for c in codes if actions[c] == "repair"))
    if families:
        def repair(text: str, _role: str) -> str:
            for family in families:
                text = family.repair(text, ctx)
            return text

        obj = map_texts(obj, repair)
    if any(actions[c] == "truncate" for c in codes):
        return truncated(obj, ctx.config)
    return obj


def truncated(obj: Any, config: AuditConfig) -> Any | None:
    """The record with its last answer cut so that prompt + answers fit length.max_tokens (counted as the length rule
    counts), or None when even an empty last answer does not fit."""
    from datakit.measure.tokens import counter

    count = counter(config.length.tokenizer).count
    pieces = texts(obj)
    answers = [t for role, t in pieces if role == "assistant"]
    if not answers:
        return None
    budget = config.length.max_tokens - count(["\n".join(t for role, t in pieces if role != "assistant")])[0]
    head, last = answers[:-1], answers[-1]

    def fits(n: int) -> bool:
        return count(["\n".join([*head, last[:n]])])[0] <= budget

    if not fits(1):
        return None
    lo, hi = 1, len(last)  # fits(lo) holds; find the longest prefix that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    seen = 0

    def cut(text: str, role: str) -> str:
        nonlocal seen
        if role != "assistant":
            return text
        seen += 1
        return text[:lo] if seen == len(answers) else text

    return map_texts(obj, cut)


def _reasons(findings: pl.DataFrame, actions: dict[str, str | None]) -> dict[int, list[dict]]:
    """record id -> its findings as reasons (rule, severity, message, field, related line, fix action)."""
    out: dict[int, list[dict]] = {}
    for f in findings.filter(pl.col("record_id").is_not_null()).iter_rows(named=True):
        reason = {k: f[k] for k in ("rule", "severity", "message", "field", "related_line", "related_source", "detail")
                  if f[k] is not None}
        out.setdefault(f["record_id"], []).append(reason | {"fix": actions.get(f["rule"])})
    return out


def _codes(reasons: list[dict], action: str) -> set[str]:
    return {r["rule"] for r in reasons if r["fix"] == action}


def _relational(reason: dict, source: str) -> bool:
    """The finding points at another record of the same file (a duplicate's original, a cluster's kept member)."""
    return reason.get("related_line") is not None and reason.get("related_source") in (None, source)


def _tally(reasons: dict[int, list[dict]], rids: set[int], action: str) -> dict[str, int]:
    """code -> how many of `rids` have a reason with that code and action."""
    return dict(sorted(Counter(c for rid in rids for c in _codes(reasons.get(rid, []), action)).items()))


def _changes(records: list, objects: list[Any], repaired_by: dict[int, set[str]], kept: list[int]) -> list[Change]:
    out: list[Change] = []
    for rid in kept:
        if rid not in repaired_by:
            continue
        for (role, before), (_, after) in zip(texts(records[rid].obj), texts(objects[rid])):
            if before != after:
                out.append(Change(records[rid].line, role, sorted(repaired_by[rid]), before, after))
                if len(out) >= EXAMPLES:
                    return out
    return out


def _describe(container: str, gzip_: bool) -> str:
    name = {"jsonl": "JSON Lines", "json": "a JSON array", "parquet": "Parquet"}[container]
    return name + (" (gzip)" if gzip_ else "")


def print_summary(result: FixResult, console: Console, diffs: int = 3) -> None:
    """Counts per rule, a few before/after diffs (dry run), and where the files went."""
    table = Table(title=f"datakit fix {result.source}" + (" (dry run: nothing written)" if result.dry_run else ""),
                  show_header=True, header_style="bold")
    for col in ("rule", "action", "records"):
        table.add_column(col, justify="right" if col == "records" else "left")
    for code, n in result.repaired.items():
        table.add_row(code, "repaired", str(n))
    for code, n in result.dropped.items():
        table.add_row(code, "rejected", str(n))
    for code, n in result.unrepaired.items():
        table.add_row(code, "rejected: repair could not fix it", str(n))
    if not (result.repaired or result.dropped or result.unrepaired):
        table.add_row("(none)", "nothing to fix", "0")
    console.print(table)
    if result.dry_run:
        for change in result.changes[:diffs]:
            console.print(Text.assemble((f"line {change.line} ", "bold"), (f"{change.role} ", "cyan"),
                                        (f"[{', '.join(change.rules)}]", "dim")))
            console.print(diff_text(change.before, change.after))
    verb = "would keep" if result.dry_run else "kept"
    console.print(f"{result.records} records: {verb} {result.kept}, {'would reject' if result.dry_run else 'rejected'} "
                  f"{result.rejected} (repair rounds: {result.rounds})")
    if not result.dry_run:
        console.print(f"clean -> {result.clean_path} ({_describe(result.container, result.gzip)}); "
                      f"rejected with reasons -> {result.rejected_path}")
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")


def diff_text(before: str, after: str, context: int = 30) -> Text:
    """An inline character diff, wdiff-style so it reads without colour too: [-removed-] in red, {+added+} in green,
    long equal runs elided."""
    out = Text("  ")
    matcher = difflib.SequenceMatcher(None, before[:4000], after[:4000], autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            same = before[a0:a1]
            out.append(same if len(same) <= 2 * context else f"{same[:context]} … {same[-context:]}", style="dim")
            continue
        if a1 > a0:
            out.append(f"[-{before[a0:a1]}-]", style="red")
        if b1 > b0:
            out.append(f"{{+{after[b0:b1]}+}}", style="green")
    return out
