"""The reviewer's decisions file: one JSON line per decision, appended and synced as each is made, so that a crash or a
closed tab loses nothing and reopening resumes where the reviewer stopped.

A decision names the record by its line and the sha256 of the record's text as the reader gives it (the JSON Lines line,
or the re-serialised element of an array or Parquet row): `datakit fix --decisions` applies a decision only to the
record it was made on. The latest decision of a line wins; `undo` takes back the latest one of its line. A last line cut
short by a crash is ignored with a warning (and cut away before the next append); a damaged line before it is an error
naming the file and line, since guessing could apply a decision to the wrong record.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datakit.io.read import InputError

ACTIONS = ("accept", "keep", "drop", "edit")  # accept: fix's own repair; keep: as is; drop: rejected; edit: new texts
UNDO = "undo"
REVIEW_DROP = "review.drop"  # the rule code a reviewer's drop carries in the rejected file


def record_checksum(text: str) -> str:
    """The checksum that ties a decision to one record: "sha256:" + hex of the reader's text of it."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Decision:
    """One decision on the record at `line`; `at` is the decisions file's line it came from (for messages)."""

    line: int
    checksum: str
    action: str
    rule: str | None = None  # the finding the reviewer was looking at
    note: str | None = None
    record: Any = None  # edit: the whole record with its new texts
    batch: str | None = None  # decisions made together (a bulk action, a group's pick): undone together
    at: int = 0

    def as_json(self) -> dict:
        row = {"line": self.line, "checksum": self.checksum, "action": self.action}
        row |= {k: v for k, v in (("rule", self.rule), ("note", self.note), ("record", self.record), ("batch", self.batch))
                if v is not None}
        return row


@dataclass
class Decisions:
    """What a decisions file says now: per line, its decisions in order (the last one counts)."""

    path: Path
    history: dict[int, list[Decision]] = field(default_factory=dict)
    order: dict[int, None] = field(default_factory=dict)  # lines in the order their current decisions were made (undo)
    warnings: list[str] = field(default_factory=list)
    lines: int = 0  # complete lines in the file

    def current(self, line: int) -> Decision | None:
        stack = self.history.get(line)
        return stack[-1] if stack else None

    def latest(self) -> dict[int, Decision]:
        return {line: stack[-1] for line, stack in self.history.items() if stack}

    def add(self, decision: Decision) -> None:
        self.history.setdefault(decision.line, []).append(decision)
        self.order.pop(decision.line, None)
        self.order[decision.line] = None

    def last(self) -> list[int]:
        """The lines of the latest decision still in force: one, or every line of its batch."""
        latest = next(reversed(self.order), None)
        if latest is None:
            return []
        batch = self.current(latest).batch
        if batch is None:
            return [latest]
        lines = []
        for line in reversed(self.order):
            if self.current(line).batch != batch:
                break
            lines.append(line)
        return lines

    def undo(self, line: int) -> Decision | None:
        """Take back the latest decision of `line`; returns the one now current (None: undecided)."""
        stack = self.history.get(line)
        if stack:
            stack.pop()
        self.order.pop(line, None)
        if stack:
            self.order[line] = None
        return self.current(line)


def load_decisions(path: str | Path) -> Decisions:
    """Read a decisions file (a missing one holds no decisions)."""
    path = Path(path)
    found = Decisions(path)
    if not path.exists():
        return found
    if not path.is_file():
        raise InputError(f"{path}: is not a file; --decisions names the JSON Lines file of review decisions.")
    data = path.read_bytes()
    rows = data.split(b"\n")
    complete, tail = rows[:-1], rows[-1]
    for no, raw in enumerate(complete, 1):
        if raw.strip():
            _apply(found, _parse(path, no, raw), no)
    found.lines = len(complete)
    if tail.strip():
        try:
            _apply(found, _parse(path, len(complete) + 1, tail), len(complete) + 1)
            found.lines += 1
        except InputError:
            found.warnings.append(f"{path}:{len(complete) + 1}: the last line is cut short (the review stopped while "
                                  "writing it); that one decision is ignored.")
    return found


def _parse(path: Path, no: int, raw: bytes) -> dict:
    try:
        row = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}:{no}: not a JSON line ({e}). A decisions file is written by `datakit review`; fix or "
                         "remove this line, or review again with a new --decisions file.") from None
    if not isinstance(row, dict):
        raise InputError(f"{path}:{no}: expected a JSON object with line, checksum and action.")
    action, line = row.get("action"), row.get("line")
    if action not in (*ACTIONS, UNDO):
        raise InputError(f"{path}:{no}: unknown action {action!r}; expected one of {', '.join((*ACTIONS, UNDO))}.")
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        raise InputError(f"{path}:{no}: 'line' must be a record's line number (a positive integer), not {line!r}.")
    if action != UNDO and not (isinstance(row.get("checksum"), str) and row["checksum"].startswith("sha256:")):
        raise InputError(f"{path}:{no}: 'checksum' must be the record's \"sha256:...\"; without it the decision could "
                         "be applied to another record.")
    if action == "edit" and not isinstance(row.get("record"), dict):
        raise InputError(f"{path}:{no}: an edit decision needs the edited record as a JSON object under 'record'.")
    for key in ("rule", "note", "batch"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise InputError(f"{path}:{no}: '{key}' must be text.")
    return row


def _apply(found: Decisions, row: dict, no: int) -> None:
    if row["action"] == UNDO:
        found.undo(row["line"])
        return
    found.add(Decision(row["line"], row["checksum"], row["action"], row.get("rule"), row.get("note"), row.get("record"),
                       row.get("batch"), no))


class DecisionLog:
    """Appends decisions to the file, each line written and synced before the call returns."""

    def __init__(self, decisions: Decisions):
        self.decisions = decisions
        self.path = decisions.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _cut_torn_tail(self) -> None:
        """A last line without its newline was cut by a crash (load_decisions warned): remove it so the next line
        starts on a line of its own."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            if self.decisions.lines > data[:keep].count(b"\n"):  # the unterminated last line was whole: end it
                f.write(b"\n")
            else:
                f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())

    def append(self, decision: Decision) -> Decision:
        return self.append_many([decision])[0]

    def append_many(self, decisions: list[Decision]) -> list[Decision]:
        """Several decisions in one write and one sync (a bulk action): a crash keeps a prefix of them."""
        now = _now()
        self._write([d.as_json() | {"time": now} for d in decisions])
        placed = []
        for decision in decisions:
            self.decisions.lines += 1
            placed.append(replace(decision, at=self.decisions.lines))
            self.decisions.add(placed[-1])
        return placed

    def undo(self, lines: list[int]) -> None:
        now = _now()
        self._write([{"line": line, "action": UNDO, "time": now} for line in lines])
        for line in lines:
            self.decisions.lines += 1
            self.decisions.undo(line)

    def _write(self, rows: list[dict]) -> None:
        if not rows:
            return
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8", "surrogatepass")
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: leave a torn line the next load ignores, and say so
            raise OSError(f"{self.path}: only {written} of {len(data)} bytes of a decision were written (disk full?)")
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
