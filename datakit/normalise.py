"""Turn raw records of any known format into the one frame of `schemas.dataset` (plus read findings).

Format is detected per record from its keys; a record that fails to parse or validate keeps its row
(valid = false, format = invalid) so that nothing is lost downstream, and gets a `format.*` finding.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from pydantic import ValidationError

from datakit.io.read import RawRecord
from schemas.dataset import BASE_SCHEMA, Dataset
from schemas.findings import findings_frame
from schemas.records import (
    INSTRUCTION_ALIASES,
    OPENAI_ROLES,
    OUTPUT_ALIASES,
    SHAREGPT_ROLES,
    AlpacaRecord,
    OpenAIRecord,
    PromptsRecord,
    ShareGPTRecord,
)

TOO_LARGE_PREFIX = 4096  # characters of a record too large to read that its row keeps (the file holds the rest)
FIX_HINT = "Fix or remove it by hand, or run `datakit fix` to move it to the rejected file with this reason."


def detect_format(obj: dict) -> str | None:
    """The record format its keys say, or None. Conversations win over Alpaca keys they may also carry."""
    if isinstance(obj.get("messages"), list):
        return "openai"
    convs = obj.get("conversations")
    if isinstance(convs, list):
        first = next((t for t in convs if isinstance(t, dict)), {})
        return "openai" if "role" in first and "from" not in first else "sharegpt"
    turns = obj.get("turns")
    if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns):
        return "prompts"
    if any(k in obj for k in INSTRUCTION_ALIASES + OUTPUT_ALIASES):
        return "alpaca"
    return None


def _alpaca_fields(obj: dict) -> dict:
    """Map field-name variants (question/std_answer, prompt/completion, self-instruct instances) onto Alpaca's."""
    out = dict(obj)
    if "instruction" not in out:
        key = next((k for k in INSTRUCTION_ALIASES if k in obj), None)
        if key is not None:
            out["instruction"] = obj[key]
    if "output" not in out and isinstance(obj.get("instances"), list):
        instances = [i for i in obj["instances"] if isinstance(i, dict)]
        out["input"] = "\n".join(str(i.get("input") or "") for i in instances).strip()
        out["output"] = "\n".join(str(i.get("output") or "") for i in instances)
    elif "output" not in out:
        key = next((k for k in OUTPUT_ALIASES if k in obj), None)
        if key is not None:
            out["output"] = obj[key]
    return out


def _messages_alpaca(r: AlpacaRecord) -> list[dict]:
    msgs = [{"role": "system", "content": r.system}] if r.system else []
    for user, assistant in r.history:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    user = r.instruction + ("\n" + r.input if r.input else "")
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": r.output}]


def _row_from(fmt: str, obj: dict) -> tuple[dict, list[tuple[str, str, str]]]:
    """Validated row fields and record-level problems (rule, field, message) found while normalising."""
    problems: list[tuple[str, str, str]] = []
    instruction = input_ = None
    if fmt == "alpaca":
        r = AlpacaRecord.model_validate(_alpaca_fields(obj))
        msgs = _messages_alpaca(r)
        instruction, input_ = r.instruction, r.input
    elif fmt == "sharegpt":
        r = ShareGPTRecord.model_validate(obj)
        msgs = [{"role": "system", "content": r.system}] if r.system else []
        for i, t in enumerate(r.conversations):
            role = SHAREGPT_ROLES.get(t.from_.strip().lower())
            if role is None:
                problems.append(("format.unknown_role", f"conversations[{i}].from",
                                 (f"unknown role '{t.from_}'; expected one of {sorted(set(SHAREGPT_ROLES))}. "
                                 "A trainer cannot tell who speaks, so the turn is mis-masked or dropped.")))
                role = "user"
            msgs.append({"role": role, "content": t.value})
    elif fmt == "prompts":
        r = PromptsRecord.model_validate(obj)
        msgs = [{"role": "user", "content": t} for t in r.turns]
    else:
        data = dict(obj)
        if "messages" not in data:
            data["messages"] = data.pop("conversations")
        r = OpenAIRecord.model_validate(data)
        msgs = []
        for i, m in enumerate(r.messages):
            role = OPENAI_ROLES.get(m.role.strip().lower())
            if role is None:
                problems.append(("format.unknown_role", f"messages[{i}].role",
                                 (f"unknown role '{m.role}'; expected one of {sorted(set(OPENAI_ROLES))}. "
                                 "A trainer cannot tell who speaks, so the turn is mis-masked or dropped.")))
                role = "user"
            text = m.text
            if not text and getattr(m, "tool_calls", None):
                import json

                text = json.dumps(m.tool_calls, ensure_ascii=False)
            msgs.append({"role": role, "content": text})
    if fmt in ("sharegpt", "openai") and all(m["role"] == "system" for m in msgs):
        key = "messages" if isinstance(obj.get("messages"), list) else "conversations"
        problems.append(("format.schema", key, (f"{fmt} record: '{key}' holds no turns, so there is nothing to train "
                                                f"on. Add the conversation or drop the record. {FIX_HINT}")))
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    prompt = "\n".join(m["content"] for m in msgs if m["role"] in ("system", "user", "tool"))
    response = "\n".join(m["content"] for m in msgs if m["role"] == "assistant")
    row = {"format": fmt, "system": system, "prompt": prompt, "response": response, "instruction": instruction,
           "input": input_, "messages": msgs, "turns": sum(m["role"] != "system" for m in msgs)}
    return row, problems


def _describe(e: ValidationError) -> tuple[str, str]:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "record"
    if err["type"] == "missing":
        return loc, f"missing required field '{loc}'"
    got = type(err.get("input")).__name__
    return loc, f"field '{loc}' has the wrong type ({err['msg'].lower()}; got {got})"


def _label_text(obj: dict, label_field: str | None) -> str | None:
    if not label_field or label_field not in obj or obj[label_field] is None:
        return None
    v = obj[label_field]
    return v if isinstance(v, str) else str(v)


def normalise(records: Sequence[RawRecord], path: str, label_field: str | None = None, first_id: int = 0) -> Dataset:
    """The frame of `records` (a whole file, or one batch of it: ids start at `first_id`) with the findings of
    records that cannot be read or match no format. File-level notes are the reader's (`SourceFile.notes`)."""
    rows: list[dict] = []
    findings: list[dict] = []

    def flag(rec: RawRecord, rid: int, rule: str, field: str | None, msg: str, severity: str = "error") -> None:
        findings.append({"rule": rule, "severity": severity, "source": path, "line": rec.line, "record_id": rid,
                         "field": field, "message": msg, "excerpt": rec.text[:200]})

    for rid, rec in enumerate(records, start=first_id):
        base = {"id": rid, "source": path, "line": rec.line, "raw": rec.text, "valid": False, "format": "invalid",
                "label": None}
        rows.append(base)
        if rec.error is not None and rec.rule != "format.invalid_json":  # too large: the frame keeps a prefix only
            base["raw"] = rec.text[:TOO_LARGE_PREFIX]
            flag(rec, rid, rec.rule, None, f"line {rec.line}: {rec.error}. The record is not audited or trained on. "
                 f"{FIX_HINT}")
            continue
        if rec.error is not None:
            flag(rec, rid, "format.invalid_json", None, f"line {rec.line} is not valid JSON: {rec.error}. "
                 f"The record cannot be read, so it is not audited or trained on. {FIX_HINT}")
            continue
        obj = rec.obj
        if not isinstance(obj, dict):
            flag(rec, rid, "format.not_an_object", None, f"record is a JSON {type(obj).__name__}, not an object "
                 f"with fields. {FIX_HINT}")
            continue
        base["label"] = _label_text(obj, label_field)
        fmt = detect_format(obj)
        if fmt is None:
            keys = ", ".join(list(obj)[:8]) or "no fields"
            flag(rec, rid, "format.unknown_format", None, f"record has fields ({keys}) that match no known format: "
                 "expected Alpaca (instruction/output), ShareGPT (conversations: [{from, value}]) or messages "
                 f"([{{role, content}}]). Rename the fields or convert the file. {FIX_HINT}")
            continue
        try:
            row, problems = _row_from(fmt, obj)
        except ValidationError as e:
            field, what = _describe(e)
            flag(rec, rid, "format.schema", field, f"{fmt} record: {what}. The record cannot be trained on "
                 f"as it stands. {FIX_HINT}")
            base["format"] = fmt
            continue
        base.update(row, valid=True)
        for rule, field, msg in problems:
            flag(rec, rid, rule, field, msg)
    frame = pl.DataFrame(rows, schema=BASE_SCHEMA)
    return Dataset(path=path, frame=frame, read_findings=findings_frame(findings))


def load(path: Any, label_field: str | None = None) -> Dataset:
    """Read and normalise one whole file into memory (for small inputs: eval sets, a training set, tests); the audit
    itself reads batch by batch (`datakit.engine`)."""
    from datakit.io.read import read_raw

    raw = read_raw(path)
    ds = normalise(raw.records, raw.path, label_field)
    ds.container, ds.gzip, ds.checksum = raw.container, raw.gzip, raw.checksum
    ds.notes = [note_finding(raw.path, n) for n in raw.notes]
    return ds


def note_finding(path: str, note: Any) -> dict:
    """A reader's `FileNote` as a file-level finding row (no record)."""
    return {"rule": note.rule, "severity": note.severity, "source": path, "line": note.line, "message": note.message}
