"""The reviewer's decisions as `datakit fix --decisions` applies them, batch by batch, before its automatic repairs.

A decision counts only for the record it was made on: the record at its line must still have the checksum it had
under review, or the decision is reported (decisions file and line) and skipped, and the record is fixed like any
other. keep and edit put the record (as it was, or with its new texts) in the clean file untouched by any automatic
repair or drop; drop rejects it with the reason `review.drop` and the reviewer's note; accept leaves it to fix's own
repair, which is what the reviewer accepted.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datakit.io.read import InputError, RawRecord
from datakit.normalise import detect_format
from datakit.review.decisions import REVIEW_DROP, Decision, Decisions, load_decisions, record_checksum


class ReviewedRecords:
    """The decisions of one file, matched against the input as fix streams it."""

    def __init__(self, decisions: Decisions):
        self.path = decisions.path
        self.latest = decisions.latest()
        self.notes: list[str] = list(decisions.warnings)
        self.applied: Counter = Counter()  # action -> records it was applied to
        self.skipped = 0
        self._seen: set[int] = set()

    def of_batch(self, records: Sequence[RawRecord], reasons: dict[int, list[dict]]) -> dict[int, Decision]:
        """Position in the batch -> the decision that applies to that record (checksum matched); `reasons` are the
        records' findings by position, as fix holds them."""
        out = {}
        for i, rec in enumerate(records):
            decision = self.latest.get(rec.line)
            if decision is None:
                continue
            self._seen.add(rec.line)
            if (why := self._refusal(decision, rec, reasons.get(i, []))) is not None:
                self.skipped += 1
                self.notes.append(f"{self.path}:{decision.at}: decision '{decision.action}' on line {rec.line} skipped: "
                                  f"{why}")
                continue
            self.applied[decision.action] += 1
            out[i] = decision
        return out

    @staticmethod
    def _refusal(decision: Decision, rec: RawRecord, reasons: list[dict]) -> str | None:
        if record_checksum(rec.text) != decision.checksum:
            return ("the record at that line is not the one reviewed (its checksum differs: the input changed since "
                    "the review); it was fixed automatically. Review it again with `datakit review`.")
        if decision.action in ("keep", "edit") and (rec.error is not None or (broken := unusable(reasons))):
            return f"the record is no readable training record ({rec.rule if rec.error else broken}), so it can only be rejected."
        if decision.action == "edit" and detect_format(decision.record) is None:
            return "the edited record matches no known record format."
        return None

    def unmatched(self, records: int) -> list[str]:
        """Notes for decisions on lines the input has no record at (called once the whole input was read)."""
        missing = sorted(set(self.latest) - self._seen)
        self.skipped += len(missing)
        return [f"{self.path}:{self.latest[line].at}: decision '{self.latest[line].action}' on line {line} skipped: "
                f"the input has no record at that line ({records} records)." for line in missing]


def reviewed_records(path: str | Path) -> ReviewedRecords:
    """The decisions file `fix --decisions` names; unlike a review, which starts one, fix needs it to exist."""
    if not Path(path).exists():
        raise InputError(f"{path}: no such decisions file. Write one with `datakit review DATA --decisions {path}`, "
                         "or leave out --decisions.")
    return ReviewedRecords(load_decisions(path))


def unusable(reasons: list[dict]) -> str | None:
    """The format code that makes a record no training record at all (no object, no known format, a wrong-typed
    field): such a record cannot be kept or edited into the clean file, only rejected."""
    return next((r["rule"] for r in reasons if r["rule"].startswith("format.") and r.get("fix") == "drop"), None)


def review_reason(decision: Decision) -> dict:
    """The rejected file's reason for a record the reviewer dropped."""
    message = "dropped by the reviewer" + (f": {decision.note}" if decision.note else "")
    return {"rule": REVIEW_DROP, "severity": "error", "message": message, "fix": "drop",
            **({"detail": f"reviewed finding: {decision.rule}"} if decision.rule else {})}
