"""One review: the findings index served a page at a time, each record read when it is shown, the decisions made.

The index holds one row per finding on a record (rule, line, message, the fix action, label), sorted by rule and
line; the page lists one entry per record and rule, filtered (rule, severity, label, text, decided or not) in memory,
and only the page asked for leaves the server. Records stay on disk (`store.RecordStore`). Copies, near copies and conflicting answers are groups: the
record a finding points at (`related_line`) and every record pointing at it.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from datakit.audit import measurement_facts
from datakit.engine.batch import Plan
from datakit.fix import actions_for, repaired_record
from datakit.io.read import RawRecord
from datakit.measure import ensure
from datakit.normalise import detect_format
from datakit.recheck import dataset_of
from datakit.records import texts
from datakit.review.decisions import ACTIONS, Decision, DecisionLog, load_decisions, record_checksum
from datakit.review.diffs import word_diff
from datakit.review.fields import text_fields, with_texts
from datakit.review.store import RecordStore
from schemas.config import AuditConfig
from schemas.findings import with_messages
from validators.base import RuleContext, concat_findings

GROUP_RULES = {"duplicate.exact": "exact copies", "duplicate.conflicting_output": "same prompt, different answers",
               "near_duplicate.cluster": "near-duplicate cluster"}
PAGE_MAX = 200
GROUP_MAX = 12  # members of a group shown side by side
SIMILAR = 0.5  # a member's text is shown as a diff against the first member's when they share this much, else whole
NOTE_MAX = 2_000
RAW_MAX = 20_000  # characters of an unreadable record's text shown
STATUSES = ("all", "open", "decided")
# Findings that make a record no training record (unreadable, no object, a wrong-typed field): it can only be dropped.
UNUSABLE = pl.col("rule").str.starts_with("format.") & (pl.col("fix") == "drop")


class ReviewError(ValueError):
    """A request the session refuses; the message says why (the page shows it)."""


@dataclass(frozen=True)
class Filter:
    rule: str | None = None
    severity: str | None = None
    label: str | None = None
    q: str | None = None
    status: str = "all"  # all | open (undecided) | decided

    @classmethod
    def of(cls, params: dict) -> Filter:
        status = params.get("status") or "all"
        if status not in STATUSES:
            raise ReviewError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        return cls(*(params.get(k) or None for k in ("rule", "severity", "label", "q")), status)


class Session:
    """Everything a review page asks about one dataset, and the decisions file it appends to."""

    def __init__(self, source: str, findings: pl.DataFrame, config: AuditConfig, store: RecordStore,
                 decisions_path: str | Path, labels: dict[int, str] | None = None, records: int = 0):
        from validators import select  # imported when called: rule families import datakit.measure, and so datakit

        self.source, self.config, self.store, self.records = source, config, store, records
        self.actions = actions_for(select(), config)
        self.rules = select(config.only, config.skip)
        self.owners = {c.code: rule for rule in self.rules for c in rule.codes}
        self.plan = Plan.of(self.rules)
        self._ctx: RuleContext | None = None
        self._ctx_lock = threading.Lock()
        self.index = _index(findings, self.actions, labels, [c.code for r in select() for c in r.codes])
        self.entries = _entries(self.index)
        self.flagged = set(self.index["line"].unique().to_list())
        self.groups = _groups(self.index)
        self.anchors = {anchor for _, anchor in self.groups}
        self.decisions = load_decisions(decisions_path)
        self.log = DecisionLog(self.decisions)
        self.lock = threading.Lock()  # decisions are made one request at a time

    # --- what the page lists ----------------------------------------------------------------------------------------

    def summary(self) -> dict:
        per_rule = (self.index.group_by("rule", maintain_order=True)
                    .agg(pl.first("severity"), pl.first("fix"), pl.col("line").n_unique().alias("records")))
        labels = sorted(self.index["label"].drop_nulls().unique().to_list())
        return {"source": self.source, "records": self.records, "decisions": str(self.decisions.path),
                "rules": per_rule.to_dicts(), "labels": labels, "severities": ["error", "warning", "info"],
                "warnings": self.decisions.warnings, "progress": self.progress()}

    def progress(self) -> dict:
        return {"decided": sum(1 for line in self._decided() if line in self.flagged), "flagged": len(self.flagged)}

    def _decided(self) -> list[int]:
        """The lines decided now (a snapshot: requests run in threads, and a decision may be being made)."""
        with self.lock:
            return [line for line, stack in self.decisions.history.items() if stack]

    def items(self, wanted: Filter, offset: int = 0, limit: int = 50) -> dict:
        offset, limit = max(offset, 0), min(max(limit, 1), PAGE_MAX)
        rows = self._select(wanted)
        page = rows.slice(offset, limit).drop("haystack").to_dicts()
        for row in page:
            row["decision"] = self._decision_of(row["line"])
        return {"total": rows.height, "offset": offset, "items": page, "progress": self.progress()}

    def _select(self, wanted: Filter) -> pl.DataFrame:
        expr = pl.lit(True)
        for column in ("rule", "severity", "label"):
            if (value := getattr(wanted, column)) is not None:
                expr &= pl.col(column) == value
        if wanted.q:
            expr &= pl.col("haystack").str.contains(wanted.q.lower(), literal=True)
        if wanted.status != "all":
            decided = pl.Series("decided", self._decided(), pl.Int64)
            expr &= pl.col("line").is_in(decided.implode()) if wanted.status == "decided" else ~pl.col("line").is_in(decided.implode())
        return self.entries.filter(expr)

    # --- one record ---------------------------------------------------------------------------------------------------

    def record(self, line: int) -> dict:
        rec = self._record(line)
        found = self.index.filter(pl.col("line") == line).drop("haystack", "order").to_dicts()
        view = {"line": line, "format": detect_format(rec.obj) if isinstance(rec.obj, dict) else None,
                "unusable": self._unusable(line),
                "error": rec.error, "fields": text_fields(rec.obj) if rec.error is None else [],
                "findings": found, "decision": self._decision_of(line, rec), "proposal": self._proposal(rec, found),
                "groups": [self._group(rule, anchor) for rule, anchor in self._groups_of(line, found)]}
        if rec.error is not None or not view["fields"]:
            view["raw"] = rec.text[:RAW_MAX]
        return view

    def _record(self, line: int) -> RawRecord:
        if line not in self.flagged and line not in self.anchors:
            raise ReviewError(f"line {line} has no finding to review")
        rec = self.store.get(line)
        if rec is None:
            raise ReviewError(f"{self.source} has no record at line {line}")
        return rec

    def _unusable(self, line: int) -> str | None:
        hit = self.index.filter((pl.col("line") == line) & UNUSABLE)
        return hit["rule"][0] if hit.height else None

    def _proposal(self, rec: RawRecord, found: list[dict]) -> dict | None:
        """What `datakit fix` would do to the record's texts for its repairable findings (None: nothing to repair)."""
        codes = sorted({f["rule"] for f in found if f["fix"] in ("repair", "truncate")})
        if not codes or rec.error is not None:
            return None
        new = repaired_record(rec.obj, codes, self.actions, self.owners, self.ctx())
        if new is None:
            return {"rules": codes, "changes": [], "note": "even an empty last answer does not fit: fix would reject it"}
        changes = [{"field": b["field"], "role": b["role"], "diff": word_diff(b["text"], a["text"])}
                   for b, a in zip(text_fields(rec.obj), text_fields(new)) if b["text"] != a["text"]]
        return {"rules": codes, "changes": changes, "note": None if changes else "the repair changes nothing: fix would reject it"}

    def _groups_of(self, line: int, found: list[dict]) -> list[tuple[str, int]]:
        keys = [(f["rule"], f["related_line"]) for f in found if f["rule"] in GROUP_RULES and f["related_line"] is not None]
        keys += [(rule, line) for rule in GROUP_RULES if (rule, line) in self.groups]
        return list(dict.fromkeys(k for k in keys if k in self.groups))

    def _group(self, rule: str, anchor: int) -> dict:
        members = [anchor, *self.groups[(rule, anchor)]][:GROUP_MAX]
        first = self.store.get(anchor)
        base = text_fields(first.obj) if first is not None and first.error is None else []
        shown = []
        for line in members:
            rec = self.store.get(line)
            fields = text_fields(rec.obj) if rec is not None and rec.error is None else []
            for i, f in enumerate(fields):
                f["diff"] = word_diff(base[i]["text"], f["text"], SIMILAR) if line != anchor and i < len(base) else None
            shown.append({"line": line, "fields": fields, "decision": self._decision_of(line)})
        return {"rule": rule, "kind": GROUP_RULES[rule], "anchor": anchor, "size": len(self.groups[(rule, anchor)]) + 1,
                "members": shown}

    def recheck(self, line: int, new_texts: Sequence[str]) -> dict:
        """The findings the record would have with these texts, judged on its own (copies are judged by fix)."""
        rec = self._record(line)
        obj = self._edited(rec, new_texts)
        ds = dataset_of(self.source, [RawRecord(line, json.dumps(obj, ensure_ascii=False), obj)], self.config.label_field)
        ctx = self.ctx()
        ensure(ds, self.plan.measures, self.config, ctx.measured.get("evals"))
        found = with_messages(concat_findings([rule.check(ds, ctx) for rule in self.rules]))
        return {"line": line, "findings": found.select("rule", "severity", "field", "message").to_dicts()}

    def ctx(self) -> RuleContext:
        """The rules' context for repairs and rechecks, prepared once (the tokenizer, measurement facts)."""
        with self._ctx_lock:
            if self._ctx is None:
                self._ctx = RuleContext(config=self.config, path=self.source,
                                        measured=measurement_facts(self.plan, self.config, []))
            return self._ctx

    # --- decisions ----------------------------------------------------------------------------------------------------

    def decide(self, rows: Sequence[dict]) -> dict:
        """Append one decision per row ({line, action, rule?, note?, texts? for edit}); all are checked first."""
        if not rows:
            raise ReviewError("no decision given")
        made = [self._decision(row) for row in rows]
        with self.lock:
            if len(made) > 1:  # a group's pick: undone as one
                made = [replace(d, batch=f"b{self.decisions.lines + 1}") for d in made]
            placed = self.log.append_many(made)
        return {"decisions": [self._view(d) for d in placed], "progress": self.progress()}

    def _decision(self, row: dict) -> Decision:
        line, action = row.get("line"), row.get("action")
        if not isinstance(line, int) or isinstance(line, bool):
            raise ReviewError("each decision needs the record's line (a number)")
        if action not in ACTIONS:
            raise ReviewError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
        rec = self._record(line)
        note, rule = row.get("note"), row.get("rule")
        if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
            raise ReviewError(f"a note is text of at most {NOTE_MAX} characters")
        if rule is not None and rule not in self.actions:
            raise ReviewError(f"unknown rule {rule!r}")
        if action in ("keep", "edit") and (broken := self._unusable(line)):
            raise ReviewError(f"line {line} is no readable training record ({broken}): it can only be dropped (fix "
                              "rejects it anyway)")
        record = self._edited(rec, row.get("texts")) if action == "edit" else None
        return Decision(line, record_checksum(rec.text), action, rule, note or None, record)

    @staticmethod
    def _edited(rec: RawRecord, new_texts: Any) -> Any:
        if rec.error is not None or not texts(rec.obj):
            raise ReviewError(f"line {rec.line} has no texts to edit")
        if not isinstance(new_texts, list) or not all(isinstance(t, str) for t in new_texts):
            raise ReviewError("an edit gives the record's texts as a list of strings")
        try:
            return with_texts(rec.obj, new_texts)
        except ValueError as e:
            raise ReviewError(str(e)) from None

    def pick(self, rule: str, anchor: int, keep: Sequence[int]) -> dict:
        """Keep these records of a group (copies, near copies, conflicting answers) and drop every other member, the
        ones not shown on the page included, as one decision to undo."""
        if (rule, anchor) not in self.groups or not isinstance(keep, list) or not keep:
            raise ReviewError(f"no group of {rule} around line {anchor}, or no record of it to keep")
        members = [anchor, *self.groups[(rule, anchor)]]
        if not set(keep) <= set(members):
            raise ReviewError(f"lines {sorted(set(keep) - set(members))} are not in the group of line {anchor}")
        note = f"{GROUP_RULES[rule]}: line {', '.join(map(str, sorted(keep)))} kept by the reviewer"
        return self.decide([{"line": line, "action": "keep", "rule": rule} if line in keep else
                            {"line": line, "action": "drop", "rule": rule, "note": note} for line in members])

    def bulk(self, wanted: Filter, action: str, confirm: int | None, note: str | None = None) -> dict:
        """One decision on every record the filter lists; applied only when `confirm` is the number of records it
        touches (the page asks the reviewer first), else that number comes back."""
        if action not in ("accept", "keep", "drop"):
            raise ReviewError(f"bulk action {action!r}: expected accept, keep or drop")
        if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
            raise ReviewError(f"a note is text of at most {NOTE_MAX} characters")
        rows = self._select(wanted).select("line", "rule").unique("line", keep="first", maintain_order=True)  # one per record
        if confirm != rows.height:
            return {"count": rows.height, "applied": False}
        unusable = set(self.index.filter(UNUSABLE)["line"].to_list()) if action == "keep" else set()
        rules = dict(rows.iter_rows())
        with self.lock:
            batch = f"b{self.decisions.lines + 1}"
            made = [Decision(line, record_checksum(text), action, rules[line], note or None, batch=batch)
                    for line, text in self.store.texts(list(rules)) if text is not None and line not in unusable]
            self.log.append_many(made)
        return {"count": len(made), "skipped": rows.height - len(made), "applied": True, "progress": self.progress()}

    def undo(self) -> dict:
        """Take back the latest decision made (of any record; a bulk action or a group's pick as a whole)."""
        with self.lock:
            if not (lines := self.decisions.last()):
                raise ReviewError("nothing to undo")
            self.log.undo(lines)
        return {"lines": sorted(lines), "decisions": {line: self._decision_of(line) for line in lines},
                "progress": self.progress()}

    def _decision_of(self, line: int, rec: RawRecord | None = None) -> dict | None:
        d = self.decisions.current(line)
        return None if d is None else self._view(d, rec)

    @staticmethod
    def _view(d: Decision, rec: RawRecord | None = None) -> dict:
        view = {"line": d.line, "action": d.action, "rule": d.rule, "note": d.note}
        if d.record is not None:
            view["fields"] = text_fields(d.record)
        if rec is not None and record_checksum(rec.text) != d.checksum:
            view["stale"] = True  # made on another version of the record: fix will skip it
        return view

    def close(self) -> None:
        self.log.close()


def _index(findings: pl.DataFrame, actions: dict[str, str | None], labels: dict[int, str] | None,
           rule_order: list[str]) -> pl.DataFrame:
    """One row per finding on a record, sorted by rule (in the rules' order) then line, with what fix would do."""
    rank = {code: i for i, code in enumerate(rule_order)}
    frame = (findings.filter(pl.col("record_id").is_not_null() & pl.col("line").is_not_null())
             .select("rule", "severity", "line", "field", "message", "excerpt", "related_line", "detail"))
    frame = frame.with_columns(
        pl.col("rule").replace_strict(actions, default=None, return_dtype=pl.String).alias("fix"),
        pl.col("line").replace_strict(labels or {}, default=None, return_dtype=pl.String).alias("label"),
        pl.col("rule").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("order"),
        pl.concat_str([pl.col("message"), pl.col("excerpt").fill_null(""), pl.col("field").fill_null(""),
                       pl.col("line").cast(pl.String)], separator="\n").str.to_lowercase().alias("haystack"))
    return frame.sort(["order", "line"], maintain_order=True).with_row_index("id")


def _entries(index: pl.DataFrame) -> pl.DataFrame:
    """What the page lists: one entry per record and rule (a record with two HTML tags is one entry of hygiene.html),
    with the first finding's message and how many findings of the rule the record has."""
    return (index.group_by("order", "rule", "line", maintain_order=True)
            .agg(pl.first("id"), pl.first("severity"), pl.first("message"), pl.first("excerpt"), pl.first("related_line"),
                 pl.first("detail"), pl.first("fix"), pl.first("label"), pl.len().alias("findings"),
                 pl.col("field").drop_nulls().unique(maintain_order=True).str.join(", ").alias("field"),
                 pl.col("haystack").str.join("\n"))
            .drop("order"))


def _groups(index: pl.DataFrame) -> dict[tuple[str, int], list[int]]:
    """(rule, the record pointed at) -> the lines pointing at it, for copies, near copies and conflicting answers."""
    rows = (index.filter(pl.col("rule").is_in(list(GROUP_RULES)) & pl.col("related_line").is_not_null())
            .group_by("rule", "related_line", maintain_order=True).agg(pl.col("line").unique(maintain_order=True)))
    return {(rule, anchor): [x for x in lines if x != anchor] for rule, anchor, lines in rows.iter_rows()}
