"""empty.*: a record whose instruction, answer or any conversation turn is empty or only whitespace.

Also home of `text_fields`, which maps a normalised record back to the source fields its texts came
from, so that every record-level finding can name the field (`output`, `conversations[3]`) to edit.
"""
from __future__ import annotations

import json
from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from schemas.records import INSTRUCTION_ALIASES, OUTPUT_ALIASES
from validators.base import Rule, RuleCode, RuleContext, code_info, sums

E = Severity.error

# Whitespace by Unicode's definition plus the invisible characters that make a field look filled.
BLANK = r"^[\s\x{200B}-\x{200D}\x{2060}\x{FEFF}]*$"


def text_fields(row: dict) -> list[tuple[str, str, str]]:
    """(source field, canonical role, text) for every text of a valid normalised row, in record order.

    Field names are those of the file as written (`std_answer` for BELLE, `conversations[2]` for
    ShareGPT), so a finding points at what the user has to edit.
    """
    fmt, msgs = row["format"], row["messages"] or []
    try:
        obj = json.loads(row["raw"])
    except (TypeError, ValueError):
        obj = {}
    obj = obj if isinstance(obj, dict) else {}
    if fmt == "alpaca":
        ikey = "instruction" if "instruction" in obj else next((k for k in INSTRUCTION_ALIASES if k in obj), "instruction")
        instances = "output" not in obj and isinstance(obj.get("instances"), list)
        okey = "instances" if instances else next((k for k in ("output",) + OUTPUT_ALIASES if k in obj), "output")
        out = [("system", "system", row["system"])] if row["system"] else []
        history = [m for m in msgs if m["role"] != "system"][:-2]
        out += [(f"history[{i // 2}][{i % 2}]", m["role"], m["content"]) for i, m in enumerate(history)]
        out.append((ikey, "user", row["instruction"] or ""))
        if row["input"]:
            out.append(("instances" if instances else "input", "user", row["input"]))
        out.append((okey, "assistant", msgs[-1]["content"] if msgs else ""))
        return out
    if fmt == "prompts":
        return [(f"turns[{i}]", m["role"], m["content"]) for i, m in enumerate(msgs)]
    key = "messages" if fmt == "openai" and "messages" in obj else "conversations"
    listed = obj.get(key)
    offset = len(msgs) - len(listed) if isinstance(listed, list) else 0
    return [("system" if i < offset else f"{key}[{i - offset}]", m["role"], m["content"]) for i, m in enumerate(msgs)]


class EmptyRules(Rule):
    family: ClassVar[str] = "empty"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("empty.output", E, "An empty answer trains the model to reply with nothing.", fix="drop"),
        RuleCode("empty.instruction", E, "A record with no instruction trains the model to answer a question nobody asked.",
                 "check_instruction = true", fix="drop"),
        RuleCode("empty.turn", E, "An empty turn in a conversation breaks the dialogue the model learns from; templates may drop it "
                 "and merge its neighbours.", fix="drop"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        """Vectorised pre-selection of records with a blank text; field attribution only for those."""
        check_instruction = ctx.config.empty.check_instruction
        found: list[dict] = []
        for row in _candidates(batch).iter_rows(named=True):
            fields = text_fields(row)
            base = {"source": row["source"], "line": row["line"], "record_id": row["id"]}
            if row["format"] == "alpaca":
                *head, (okey, _, output) = fields
                user = [f for f in head if f[1] == "user" and not f[0].startswith("history")]
                if check_instruction and all(_is_blank(t) for _, _, t in user):
                    found.append(base | self._finding("empty.instruction", user[0][0],
                                 "instruction is empty: the model would learn to answer a question nobody asked. Write the "
                                 "instruction or drop the record (`datakit fix` drops it)."))
                if _is_blank(output):
                    found.append(base | self._finding("empty.output", okey,
                                 "answer is empty or whitespace only: the model would learn to reply with nothing. Write the "
                                 "answer or drop the record (`datakit fix` drops it)."))
                fields = [f for f in head if f[0].startswith("history")]
            for name, role, text in fields:
                if role != "system" and _is_blank(text):
                    found.append(base | self._finding("empty.turn", name,
                                 "{} turn is empty: the conversation has a gap the model learns as a real turn. Fill it, "
                                 "remove the turn pair, or drop the record (`datakit fix` drops it).", role))
        return findings_frame(found)

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        checked = batch.valid.filter(pl.col("format") != "prompts").height
        return pl.DataFrame({"records_checked": [checked], "records_with_a_blank_text": [_candidates(batch).height]},
                            schema={"records_checked": pl.Int64, "records_with_a_blank_text": pl.Int64})

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        return empty_findings(), sums(state, ["records_checked", "records_with_a_blank_text"])

    def _finding(self, code: str, field: str, template: str, *values: str) -> dict:
        info = code_info(self, code)
        return {"rule": code, "severity": info.severity.value, "field": field, "template": template, "values": list(values)}


def _candidates(ds: Dataset) -> pl.DataFrame:
    """Valid training records with a blank turn, or an Alpaca record whose instruction and input are both blank.

    Question-only (`prompts`) records are left to format.no_response.
    """
    blank = lambda c: pl.col(c).fill_null("").str.contains(BLANK)
    turn = pl.element().struct
    any_blank_turn = pl.col("messages").list.eval(
        (turn.field("role") != "system") & turn.field("content").fill_null("").str.contains(BLANK)).list.any()
    return ds.valid.filter((pl.col("format") != "prompts")
                           & (any_blank_turn | ((pl.col("format") == "alpaca") & blank("instruction") & blank("input"))))


def _is_blank(text: str | None) -> bool:
    return not (text or "").translate(_INVISIBLE).strip()


_INVISIBLE = dict.fromkeys([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF])
