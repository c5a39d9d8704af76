"""`datakit fix`: repair what the rules can repair, move what they say to drop to a rejected file, lose nothing.

It streams, so a file of millions of records is never held in memory:

1. audit the input (`datakit.audit.Audit`), its findings kept on disk, sorted by record;
2. read the input again batch by batch: repair the flagged records' texts (each family's `repair`, on the original
   record objects) and re-check them until no repair finding remains (bounded); reject what cannot be read, what
   the repair could not fix, and what a "drop" code flags on the record's own evidence; the rest goes on;
3. audit what went on (`RELATIONAL` families: duplicates, near-duplicates) once the rejections above are known, so
   that no copy is dropped in favour of a record that is itself rejected;
4. write CLEAN in the input's format and REJ (one JSON line per rejected record: source, line, every reason, the
   record untouched), both in input order, each through a temporary file renamed at the end.

CLEAN + REJ account for every input record once. Adding a fixer is adding a `RuleCode(..., fix="repair")` and the
family's idempotent `repair` (or `fix="drop"`); this module only does the bookkeeping. Two actions depend on config:
pii.action (redact | reject, through the family's `fix_for`) and fix.over_length (drop | truncate, here).
"""
from __future__ import annotations

import difflib
import heapq
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from datakit.audit import Audit, measurement_facts
from datakit.config import build_config
from datakit.engine.batch import Plan
from datakit.engine.inputs import BATCH_BYTES, BATCH_RECORDS, LinedInput
from datakit.engine.spill import Spill
from datakit.io.atomic import atomic_open, pending_path
from datakit.io.lock import output_lock
from datakit.io.read import InputError, RawRecord, open_raw
from datakit.io.write import (
    container_notes,
    container_of,
    refuse_overwrite,
    rejected_container,
    rejection,
    sibling,
    write_records,
)
from datakit.measure import ensure
from datakit.progress import Stages
from datakit.recheck import dataset_of, edited
from datakit.records import map_texts, texts
from schemas.config import AuditConfig
from schemas.findings import with_messages
from validators.base import Rule, RuleCode, RuleContext, concat_findings

MAX_ROUNDS = 4  # repair -> re-check rounds; a record whose repair findings outlive them is rejected, not kept half-fixed
TOO_LONG = "length.too_long"
EXAMPLES = 20  # before/after changes kept for --dry-run
# Families whose drop codes point at another record (its duplicate's original, its cluster's kept member): judged
# again once the other rejections are known.
RELATIONAL = ("duplicate", "near_duplicate")


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
    container: str  # the clean file's, as its name says (the input's in a dry run)
    gzip: bool
    clean_path: Path | None = None
    rejected_path: Path | None = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    reviewed: dict[str, int] = field(default_factory=dict)  # review decision -> records it was applied to (--decisions)


def fix(path: str | Path, output: str | Path | None = None, rejected: str | Path | None = None, *, dry_run: bool = False,
        config: AuditConfig | None = None, config_file: str | Path | None = None, progress: bool = False,
        engine: str = "local", ray_address: str | None = None, decisions: str | Path | None = None,
        **options: Any) -> FixResult:
    """Fix one dataset file into `output` (the input's record format, in the container the name says: .jsonl, .json,
    .parquet, optionally .gz) and `rejected` (default `<output>.rejected.jsonl`).

    `engine="ray"` runs the audit of pass 1, the costly one, on a Ray cluster; the repairs and the writing stream
    through this process.

    Options are those of `datakit.audit` (max_tokens, against, only, ...), plus config sections such as
    `pii={"action": "reject"}` or `fix={"over_length": "truncate"}`. With `dry_run` nothing is written.
    `decisions` is a file of `datakit review` decisions, applied before the automatic repairs (datakit/review/apply.py).
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
        rejected_container(rej_path)  # a rejected file that cannot be written is refused before the work
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    review = None
    if decisions is not None:
        from datakit.review.apply import reviewed_records

        review = reviewed_records(decisions)
    rules = select(config.only, config.skip)
    actions = actions_for(select(), config)  # every family's: read findings carry format codes even when format is skipped
    with (output_lock("datakit fix", [clean_path, rej_path]),
          Audit(path, config, progress=progress, engine=engine, ray_address=ray_address) as run, Spill() as work,
          Stages(enabled=progress) as stages):
        fixer = _Fixer(path, config, rules, actions, run, work, review)
        fixer.repair_and_judge(stages)
        fixer.judge_relations(progress)
        result = fixer.result(clean_path, rej_path, dry_run)
        if clean_path is not None:
            result.container, result.gzip = container_of(clean_path)
            result.notes += container_notes(clean_path, rej_path)
        if not dry_run:
            with stages.step(f"writing {clean_path.name} and {rej_path.name}"):
                _write_both(fixer, result, clean_path, rej_path)
    return result


def _write_both(fixer: _Fixer, result: FixResult, clean_path: Path, rej_path: Path) -> None:
    """CLEAN and REJ are written under temporary names and put in place together, REJ first: a CLEAN on disk always
    has its REJ beside it, and a failure (a full disk) leaves neither half-written nor one without the other."""
    pending = [(pending_path(p), p) for p in (rej_path, clean_path)]
    try:
        write_records(pending[0][0], fixer.rejected_rows(), *rejected_container(rej_path))
        write_records(pending[1][0], fixer.kept_records(), result.container, result.gzip)
        for tmp, target in pending:
            os.replace(tmp, target)
    finally:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)


class _Fixer:
    """The state of one fix between its passes; everything per record lives on disk in `work`."""

    def __init__(self, path: str | Path, config: AuditConfig, rules: list[Rule], actions: dict[str, str | None],
                 run: Audit, work: Spill, review: Any = None):
        self.path, self.config, self.rules, self.actions, self.run, self.work = path, config, rules, actions, run, work
        self.review = review  # datakit.review.apply.ReviewedRecords, or None
        self.reviewed: set[int] = set()  # lines the reviewer kept or edited: no automatic repair or drop touches them
        self.owners = {c.code: rule for rule in rules for c in rule.codes}
        self.plan = Plan.of(rules)
        self.ctx = RuleContext(config=config, against=run.against, path=str(path), measured=measurement_facts(self.plan, config, run.against))
        self.records = self.rounds = self.rejected_count = 0
        self.dropped: Counter = Counter()
        self.unrepaired: Counter = Counter()
        self.changes: list[Change] = []
        self.relational_rejects: dict[int, list[dict]] = {}  # line -> reasons
        self.container, self.gzip, self.source = "jsonl", False, str(path)

    # --- pass 2: repair, re-check, judge each record on its own evidence --------------------------------------------

    def repair_and_judge(self, stages: Stages) -> None:
        by_record = self.work.dir / "reasons.parquet"
        with self.work.writing():
            (self.run.findings().filter(pl.col("record_id").is_not_null()).sort("record_id", maintain_order=True)
             .sink_parquet(by_record, row_group_size=20_000))
        stream = open_raw(self.path)
        self.container, self.gzip, self.source = stream.container, stream.gzip, stream.path
        advance = stages.records(f"repairing {Path(self.source).name}", stream.size)
        with atomic_open(self.work.dir / "survivors.jsonl") as survivors, atomic_open(self.work.dir / "rejected.jsonl") as rejected:
            first = 0
            for records in stream.batches(BATCH_BYTES, BATCH_RECORDS):
                reasons = _reasons(with_messages(pl.scan_parquet(by_record).filter(
                    pl.col("record_id").is_between(first, first + len(records) - 1)).collect()), self.actions, first)
                self._batch(records, reasons, survivors, rejected)
                first += len(records)
                advance(stream.position, first)
        if stream.checksum != self.run.report.checksum:
            raise InputError(f"{self.path}: the file changed while it was being fixed; run `datakit fix` again once "
                             "nothing writes to it.")
        self.records = first
        if self.review is not None:
            self.review.notes += self.review.unmatched(first)

    def _batch(self, records: list[RawRecord], reasons: dict[int, list[dict]], survivors, rejected) -> None:
        """Repair rounds over one batch, then each record either survives (written with its reasons) or is rejected."""
        decided = self.review.of_batch(records, reasons) if self.review is not None else {}
        reasons = {i: rs for i, rs in reasons.items() if i not in decided or decided[i].action == "accept"}
        objects = [r.obj for r in records]
        repaired_by: dict[int, set[str]] = {}
        unrepaired: set[int] = set()  # the repair changed nothing, or truncation cannot fit the record
        rounds = 0
        while rounds < MAX_ROUNDS and (todo := {i: codes for i, rs in reasons.items() if i not in unrepaired
                                                and (codes := _codes(rs, "repair") | _codes(rs, "truncate"))}):
            rounds += 1
            for i, codes in sorted(todo.items()):
                new = repaired_record(objects[i], sorted(codes), self.actions, self.owners, self.ctx)
                if new is None or new == objects[i]:
                    unrepaired.add(i)
                    continue
                objects[i] = new
                repaired_by.setdefault(i, set()).update(codes)
            changed = sorted(todo)
            again = self._recheck(records, objects, changed)
            reasons = {i: rs for i, rs in reasons.items() if i not in todo} | again
        self.rounds = max(self.rounds, rounds)
        unrepaired |= {i for i, rs in reasons.items() if _codes(rs, "repair") | _codes(rs, "truncate")}  # did not converge
        for i in unrepaired:
            reasons[i] = [r | {"fix": "unrepaired"} if r["fix"] in ("repair", "truncate") else r for r in reasons.get(i, [])]
        for i, rec in enumerate(records):
            if i in decided and decided[i].action != "accept":
                self._write_reviewed(rec, decided[i], survivors, rejected)
                continue
            rs = reasons.get(i, [])
            if rec.error is not None or i in unrepaired or any(r["fix"] == "drop" and not _relational(r, self.source) for r in rs):
                self._tally_rejected(rs)
                rejected.write(json.dumps(rejection(self.source, rec.line, rec.text, rec.obj, rs), ensure_ascii=False) + "\n")
                continue
            survivors.write(json.dumps({"line": rec.line, "record": objects[i], "repaired": sorted(repaired_by.get(i, ()))},
                                       ensure_ascii=False) + "\n")
            if i in repaired_by:
                self._note_changes(rec, objects[i], repaired_by[i])

    def _write_reviewed(self, rec: RawRecord, decision: Any, survivors, rejected) -> None:
        """A record the reviewer dropped goes to REJ with the reviewer's reason; one kept or edited goes on as decided."""
        from datakit.review.apply import review_reason

        if decision.action == "drop":
            reasons = [review_reason(decision)]
            self._tally_rejected(reasons)
            rejected.write(json.dumps(rejection(self.source, rec.line, rec.text, rec.obj, reasons), ensure_ascii=False) + "\n")
            return
        self.reviewed.add(rec.line)
        record = decision.record if decision.action == "edit" else rec.obj
        survivors.write(json.dumps({"line": rec.line, "record": record, "repaired": []}, ensure_ascii=False) + "\n")

    def _recheck(self, records: list[RawRecord], objects: list[Any], changed: list[int]) -> dict[int, list[dict]]:
        """Reasons of the changed records as they are now: each family's per-record checks (their relations to
        other records are judged in pass 3)."""
        now = edited([records[i] for i in changed], [objects[i] for i in changed])
        ds = dataset_of(self.source, now, self.config.label_field, self.container, self.gzip)
        ensure(ds, self.plan.measures, self.config, self.ctx.measured.get("evals"))
        found = _reasons(with_messages(concat_findings([rule.check(ds, self.ctx) for rule in self.rules])), self.actions, 0)
        return {i: found.get(sub, []) for sub, i in enumerate(changed)}

    # --- pass 3: duplicates and near-duplicates among the records that survived -----------------------------------------

    def judge_relations(self, progress: bool) -> None:
        families = [r.family for r in self.rules if r.family in RELATIONAL]
        if not families:
            return
        config = self.config.model_copy(update={"only": families, "skip": []})
        survivors = LinedInput(self.work.dir / "survivors.jsonl", self.source, self.config.label_field)
        drops = [code for code, action in self.actions.items() if action == "drop"]
        with Audit(survivors, config, progress=progress) as again:
            found = again.findings().filter(pl.col("line").is_not_null())
            dropped = found.filter(pl.col("rule").is_in(drops)).select("line").unique()
            rows = with_messages(found.join(dropped, on="line").collect(engine="streaming")
                                 .sort(["line", "rule", "related_line"], nulls_last=True))  # the streaming join's order varies
        for line, group in rows.partition_by("line", as_dict=True).items():
            if line[0] in self.reviewed:
                continue
            self.relational_rejects[line[0]] = [{k: r[k] for k in _REASON_FIELDS if r[k] is not None}
                                                | {"fix": self.actions.get(r["rule"])} for r in group.iter_rows(named=True)]

    # --- pass 4: what is written ------------------------------------------------------------------------------------

    def _survivors(self) -> Iterator[dict]:
        with open(self.work.dir / "survivors.jsonl", encoding="utf-8") as f:
            for text in f:
                yield json.loads(text)

    def kept_records(self) -> Iterator[Any]:
        return (s["record"] for s in self._survivors() if s["line"] not in self.relational_rejects)

    def rejected_rows(self) -> Iterator[dict]:
        """Every rejected record in input order: those judged alone (pass 2) merged with the relational ones (pass 3)."""
        def alone() -> Iterator[dict]:
            with open(self.work.dir / "rejected.jsonl", encoding="utf-8") as f:
                for text in f:
                    yield json.loads(text)

        def related() -> Iterator[dict]:
            originals = {r.line: r for r in _records_at(self.path, set(self.relational_rejects))}
            for line in sorted(self.relational_rejects):
                rec = originals[line]
                yield rejection(self.source, line, rec.text, rec.obj, self.relational_rejects[line])

        return heapq.merge(alone(), related(), key=lambda r: r["line"])

    def result(self, clean_path: Path | None, rej_path: Path | None, dry_run: bool) -> FixResult:
        for rs in self.relational_rejects.values():
            self._tally_rejected(rs)
        kept_repaired = Counter(c for s in self._survivors() if s["line"] not in self.relational_rejects for c in s["repaired"])
        rejected = self.rejected_count
        return FixResult(
            source=self.source, records=self.records, kept=self.records - rejected, rejected=rejected,
            repaired=dict(sorted(kept_repaired.items())), dropped=dict(sorted(self.dropped.items())),
            unrepaired=dict(sorted(self.unrepaired.items())),
            changes=[c for c in self.changes if c.line not in self.relational_rejects][:EXAMPLES], rounds=self.rounds,
            container=self.container, gzip=self.gzip, clean_path=clean_path, rejected_path=rej_path, dry_run=dry_run,
            reviewed=dict(sorted(self.review.applied.items())) if self.review else {},
            notes=list(self.review.notes) if self.review else [])

    def _tally_rejected(self, reasons: list[dict]) -> None:
        self.rejected_count += 1
        drops = _codes(reasons, "drop")
        self.dropped.update(drops)
        if not drops:
            self.unrepaired.update(_codes(reasons, "unrepaired"))

    def _note_changes(self, rec: RawRecord, new: Any, codes: set[str]) -> None:
        if len(self.changes) >= 2 * EXAMPLES:  # some may yet be rejected as duplicates: keep a few spare
            return
        for (role, before), (_, after) in zip(texts(rec.obj), texts(new)):
            if before != after:
                self.changes.append(Change(rec.line, role, sorted(codes), before, after))


_REASON_FIELDS = ("rule", "severity", "message", "field", "related_line", "related_source", "detail")


def _records_at(path: str | Path, lines: set[int]) -> Iterator[RawRecord]:
    """The records of `path` at these lines, read again (only the relational rejects: a small share)."""
    if not lines:
        return
    for batch in open_raw(path).batches(BATCH_BYTES, BATCH_RECORDS):
        yield from (r for r in batch if r.line in lines)


def actions_for(rules: list[Rule], config: AuditConfig) -> dict[str, str | None]:
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


def repaired_record(obj: Any, codes: list[str], actions: dict[str, str | None], owners: dict[str, Rule],
              ctx: RuleContext) -> Any | None:
    """The record with every flagging family's repair applied to all its texts, then truncated if asked; None when
    truncation cannot make it fit."""
    families = list(dict.fromkeys(owners[c] for c in codes if actions[c] == "repair"))
    if families:
        def repair(text: str, role: str) -> str:
            for family in families:
                if role in family.repair_roles:
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


def _reasons(findings: pl.DataFrame, actions: dict[str, str | None], first: int) -> dict[int, list[dict]]:
    """Position in the batch (record id - `first`) -> its findings as reasons (rule, severity, message, field,
    related line, fix action), in the order of the findings (sorted by line, then rule)."""
    out: dict[int, list[dict]] = {}
    rows = findings.filter(pl.col("record_id").is_not_null()).sort(["record_id", "rule"], maintain_order=True)
    for f in rows.iter_rows(named=True):
        reason = {k: f[k] for k in _REASON_FIELDS if f[k] is not None}
        out.setdefault(f["record_id"] - first, []).append(reason | {"fix": actions.get(f["rule"])})
    return out


def _codes(reasons: list[dict], action: str) -> set[str]:
    return {r["rule"] for r in reasons if r["fix"] == action}


def _relational(reason: dict, source: str) -> bool:
    """The finding points at another record of the same file (a duplicate's original, a cluster's kept member)."""
    return reason.get("related_line") is not None and reason.get("related_source") in (None, source)


def _describe(container: str, gzip_: bool) -> str:
    name = {"jsonl": "JSON Lines", "json": "a JSON array", "parquet": "Parquet"}[container]
    return name + (" (gzip)" if gzip_ else "")


def print_summary(result: FixResult, console: Console, diffs: int = 3) -> None:
    """Counts per rule, a few before/after diffs (dry run), and where the files went."""
    table = Table(title=f"datakit fix {result.source}" + (" (dry run: nothing written)" if result.dry_run else ""),
                  show_header=True, header_style="bold")
    for col in ("rule", "action", "records"):
        table.add_column(col, justify="right" if col == "records" else "left")
    for action, n in ((a, n) for a, n in result.reviewed.items() if a != "drop"):  # drops: under review.drop below
        table.add_row(f"review.{action}", "decided by the reviewer" if action != "accept" else "repair accepted by the reviewer", str(n))
    for code, n in result.repaired.items():
        table.add_row(code, "repaired", str(n))
    for code, n in result.dropped.items():
        table.add_row(code, "rejected", str(n))
    for code, n in result.unrepaired.items():
        table.add_row(code, "rejected: repair could not fix it", str(n))
    if not (result.repaired or result.dropped or result.unrepaired or result.reviewed):
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
