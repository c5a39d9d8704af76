"""format.*: the record can be read, matches a known schema, and its conversation is well formed.

Parse and schema problems are found while reading (`datakit.normalise`); this family reports them
together with the structural checks on the normalised messages.
"""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message

E, W, I = Severity.error, Severity.warning, Severity.info


class FormatRules(Rule):
    family: ClassVar[str] = "format"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("format.invalid_json", E, "A line that is not JSON cannot be read by any trainer; one bad line often aborts a whole run.", fix="drop"),
        RuleCode("format.record_too_large", E, "A record of millions of characters is no training example (a scraper loop, files run together) and would take ~100x its size in memory to audit.", "DATAKIT_MAX_RECORD_CHARS = 8388608", fix="drop"),
        RuleCode("format.not_an_object", E, "A record must be a JSON object with fields; a bare string or number has no instruction or answer.", fix="drop"),
        RuleCode("format.unknown_format", E, "Fields that match no known format are silently skipped or mis-read by trainers.", fix="drop"),
        RuleCode("format.schema", E, "A missing or wrong-typed field (e.g. output as a list) breaks templating or trains on garbage.", fix="drop"),
        RuleCode("format.unknown_role", E, "A turn with an unknown speaker role is mis-masked or dropped by chat templates.", fix="drop"),
        RuleCode("format.roles_not_alternating", E, "Chat templates require user and assistant turns to alternate; two in a row are merged or rejected.", fix="drop"),
        RuleCode("format.not_ending_with_assistant", E, "A conversation that ends on the user has no answer to learn from its last turn.", "require_assistant_last = true", fix="drop"),
        RuleCode("format.no_response", E, "Questions without answers (an eval set's shape) teach nothing as training data; use them with --against.", fix="drop"),
        RuleCode("format.mixed_formats", E, "Several record formats in one file usually mean sources were concatenated without conversion.", "allow_mixed_formats = false"),
        RuleCode("format.bom", I, "A UTF-8 byte-order mark makes strict JSON readers fail on the first line.", fix="repair"),
        RuleCode("format.crlf", I, "Windows line endings are read fine here but leak '\\r' into text with naive readers.", fix="repair"),
        RuleCode("format.encoding", W, "A UTF-16 or UTF-32 file (PowerShell's default) is read here by its byte-order mark, but most trainers read UTF-8 only.", fix="repair"),
        RuleCode("format.invalid_utf8", W, "Bytes that are not UTF-8 become U+FFFD and corrupt the text the model sees."),
        RuleCode("format.blank_line", I, "Blank lines in JSON Lines break strict readers."),
        RuleCode("format.truncated_file", W, "A JSON array that is not closed usually means an interrupted write or download."),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        valid = batch.valid
        return concat_findings([
            batch.read_findings,
            self._no_response(valid),
            self._structure(valid, ctx.config.format.require_assistant_last),
        ])

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        return batch.frame.select("id", "line", "valid", "format")

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        notes = findings_frame([n for source in ctx.sources for n in source.notes])
        first = ctx.sources[0] if ctx.sources else None
        summary = {"formats": {}, "container": first.container if first else None, "gzip": first.gzip if first else False}
        if state is None:
            return notes, summary
        counts = state.group_by("valid", "format").len().collect(engine="streaming")
        summary["formats"] = dict(counts.group_by("format").agg(pl.col("len").sum()).sort("format").iter_rows())
        mixed = self._mixed(state.filter(pl.col("valid")), counts.filter(pl.col("valid")).drop("valid"), ctx)
        return concat_findings([notes, mixed]), summary

    def _no_response(self, valid: pl.DataFrame) -> pl.DataFrame:
        rows = valid.filter(pl.col("format") == "prompts")
        return flag(rows, code_info(self, "format.no_response"), "record holds questions (turns) but no answers: nothing "
                    "to train on. This is an eval set's shape; pass it to `datakit audit --against` instead.",
                    field="turns")

    def _structure(self, valid: pl.DataFrame, require_assistant_last: bool) -> pl.DataFrame:
        convs = valid.filter(pl.col("format").is_in(["sharegpt", "openai"]))
        found: list[dict] = []
        alternating = code_info(self, "format.roles_not_alternating")
        last = code_info(self, "format.not_ending_with_assistant")
        field_name = {"sharegpt": "conversations", "openai": "messages"}
        for rid, source, line, fmt, msgs in convs.select("id", "source", "line", "format", "messages").iter_rows():
            problem = _alternation_problem([m["role"] for m in msgs])
            base = {"source": source, "line": line, "record_id": rid}
            if problem is not None:
                index, text = problem
                found.append(base | {"rule": alternating.code, "severity": alternating.severity.value,
                                     "field": f"{field_name[fmt]}[{index}]", "template": "{} Chat templates need user and "
                                     "assistant turns to alternate; merge the turns or split the record.", "values": [text]})
            roles = [m["role"] for m in msgs if m["role"] != "system"]
            if require_assistant_last and roles and roles[-1] != "assistant":
                found.append(base | {"rule": last.code, "severity": last.severity.value,
                                     "field": f"{field_name[fmt]}[{len(msgs) - 1}]",
                                     "template": "conversation ends with a '{}' turn, not the assistant's: the last "
                                     "turn has no answer to learn. Drop the trailing turn or add the answer.",
                                     "values": [roles[-1]]})
        return findings_frame(found)

    def _mixed(self, valid: pl.LazyFrame, counts: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Every record not in the file's main format, when the file mixes formats (and that is not allowed)."""
        counts = counts.sort(["len", "format"], descending=[True, False])
        if ctx.config.format.allow_mixed_formats or counts.height < 2:
            return empty_findings()
        main, main_n = counts.row(0)
        share = round(100 * main_n / counts["len"].sum())
        rows = valid.filter(pl.col("format") != main).with_columns(ctx.source_of().alias("source")).collect(engine="streaming")
        return flag(rows, code_info(self, "format.mixed_formats"),
                    message("record is {} while {}% of the file is {}: the file mixes formats, which trainers read "
                            "with one schema. Convert it with `datakit convert --to {}` or split the file.",
                            pl.col("format"), str(share), main, main),
                    field="format")


def _alternation_problem(roles: list[str]) -> tuple[int, str] | None:
    """Index and description of the first turn that breaks user/assistant alternation, or None.

    Tool results sit on the user's side (several in a row are fine: parallel tool calls); a system
    message is allowed only first.
    """
    expect_user = True
    previous = None
    for i, role in enumerate(roles):
        if role == "system":
            if i != 0:
                return i, f"turn {i} is a system message in the middle of the conversation."
            continue
        side_user = role in ("user", "tool")
        if previous is None and not side_user:
            return i, f"conversation starts with an '{role}' turn instead of the user's."
        if side_user != expect_user and not (role == "tool" and previous == "tool"):
            return i, f"turn {i} ('{role}') follows another '{previous}' turn."
        expect_user = not side_user
        previous = role
    return None
