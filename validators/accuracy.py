"""accuracy.*: answers that hedge ("好像是这样...", "I could be wrong") or defer instead of answering ("建议咨询律师").

The documents' bad example of 准确性 is an unsure answer: a model trained on it learns to sound unsure, or to send
the user elsewhere, even when it knows. Phrases are literal lists in config (English matched as whole words,
case-insensitive; Chinese as written); records are pre-selected with polars' `contains_any` and confirmed in
Python with code, links and quoted text blanked (a hedge in a line of dialogue is the character's, not the
answer's). A prompt that asks for an opinion, a guess or a probability exempts its record: there an unsure
answer is the honest one. A deferral is flagged only when it is (nearly) the whole answer; advice to see a doctor
at the end of a full answer is good practice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from schemas.config import AccuracyConfig
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, sums
from validators.empty import text_fields
from validators.masks import blank, prose

W = Severity.warning

# A line of a written dialogue or script: a short speaker label, then a colon.
SPEAKER = re.compile(r"(?m)^[ \t]*[^\s:：,，.。]{1,12}[ \t]*[:：].*$")
SENTENCE = re.compile(r"[^.!?。！？\n]*(?:[.!?。！？]+|\n|$)")
SUBSTANCE = re.compile(r"[\w]")
CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Phrases:
    hedges: re.Pattern
    deferrals: re.Pattern
    opinion: tuple[str, ...]  # lower-case
    listed: tuple[str, ...]  # every hedge and deferral, for the polars pre-selection

    def asks_opinion(self, prompt: str) -> bool:
        prompt = prompt.lower()
        return any(w in prompt for w in self.opinion)


def phrases(cfg: AccuracyConfig) -> Phrases:
    return Phrases(_alternation(cfg.hedges), _alternation(cfg.deferrals), tuple(w.lower() for w in cfg.opinion_prompts),
                   tuple(_plain(p) for p in cfg.hedges + cfg.deferrals))


def _plain(phrase: str) -> str:
    return phrase.replace("’", "'")


def _alternation(items: list[str]) -> re.Pattern:
    """The phrases as one case-insensitive pattern of literals; ASCII-edged phrases match whole words only. Literal
    alternatives with single-character look-arounds cannot backtrack badly, whatever a user lists."""
    parts = []
    for phrase in sorted({_plain(p) for p in items if p.strip()}, key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in phrase.split())
        head = r"(?<![\w-])" if phrase[0].isascii() and phrase[0].isalnum() else ""
        tail = r"(?![\w-])" if phrase[-1].isascii() and phrase[-1].isalnum() else ""
        parts.append(head + body + tail)
    return re.compile("|".join(parts) or "$^", re.IGNORECASE)


def substance(text: str) -> int:
    """Letters and digits of a text, CJK characters counting two (one carries about what a short word does)."""
    return len(SUBSTANCE.findall(text)) + len(CJK.findall(text))


class AccuracyRules(Rule):
    family: ClassVar[str] = "accuracy"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("accuracy.hedged", W, "An unsure answer ('好像是这样...', 'I could be wrong') teaches the model to sound unsure "
                 "even when it knows; the documents' bad example of 准确性.", "hedges"),
        RuleCode("accuracy.deferral", W, "An answer that only sends the user elsewhere ('建议咨询律师', 'consult a "
                 "professional') teaches the model not to answer.", "deferrals, deferral_rest = 25"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.accuracy
        lists = ctx.prepared("accuracy.phrases", lambda: phrases(cfg))
        if not lists.listed:
            return empty_findings()
        response = pl.col("response").fill_null("").str.replace_all("’", "'", literal=True)
        rows = batch.valid.filter(response.str.contains_any(list(lists.listed), ascii_case_insensitive=True))
        found = []
        for row in rows.iter_rows(named=True):
            if lists.asks_opinion(row["prompt"] or ""):
                continue
            base = {"source": row["source"], "line": row["line"], "record_id": row["id"]}
            for field, role, text in text_fields(row):
                if role != "assistant" or not text:
                    continue
                own = _own_words(text)
                hedges = list(lists.hedges.finditer(own))
                if hedges:
                    said = _listing(m.group() for m in hedges)
                    found.append(base | self._finding(
                        "accuracy.hedged", field, text, hedges[0].start(), _detail(hedges),
                        "the answer hedges ({}): a model trained on it learns to sound unsure even when it knows. State "
                        "the answer with its source (\"根据《劳动法》第XX条...\"), or drop the record if nobody can.", [said]))
                deferral = _deferral(own, lists.deferrals, cfg.deferral_rest)
                if deferral is not None:
                    said = _listing(m.group() for m in deferral)
                    found.append(base | self._finding(
                        "accuracy.deferral", field, text, deferral[0].start(), _detail(deferral),
                        "the answer only defers ({}) with next to nothing else: the model learns to send users elsewhere "
                        "instead of answering. Answer the question (with a pointer to a professional where it matters), or "
                        "drop the record.", [said]))
        return findings_frame(found)

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per batch: answers checked, records flagged per code, and the phrases found (for the summary)."""
        said = found.select("rule", pl.col("detail").str.split("; ")).explode("detail").select(
            pl.concat_str([pl.col("rule"), pl.lit("|"), pl.col("detail").str.to_lowercase()]).alias("phrase"))
        answered = batch.valid.filter(pl.col("response").fill_null("").str.strip_chars() != "").height
        return pl.DataFrame({"answers_checked": [answered],
                             **{c.code: [found.filter(pl.col("rule") == c.code)["record_id"].n_unique()] for c in self.codes},
                             "phrases": [said["phrase"].to_list()]},
                            schema={"answers_checked": pl.Int64, **{c.code: pl.Int64 for c in self.codes},
                                    "phrases": pl.List(pl.String)})

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        codes = [c.code for c in self.codes]
        totals = sums(state, ["answers_checked", *codes])
        common = (state.select(pl.col("phrases").explode()).drop_nulls().group_by("phrases").len()
                  .sort(["len", "phrases"], descending=[True, False]).head(20).collect(engine="streaming")
                  if state is not None else pl.DataFrame({"phrases": [], "len": []}))
        rows = [{"phrase": p.partition("|")[2], "rule": p.partition("|")[0], "count": n} for p, n in common.iter_rows()]
        return empty_findings(), {"answers_checked": totals["answers_checked"],
                                  "records_by_rule": {c: totals[c] for c in codes}, "most_common_phrases": rows}

    def _finding(self, code: str, field: str, text: str, at: int, detail: str, template: str, values: list[str]) -> dict:
        start, end = max(0, at - 40), min(len(text), at + 80)
        excerpt = ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
        return {"rule": code, "severity": code_info(self, code).severity.value, "field": field, "template": template,
                "values": values, "excerpt": excerpt, "detail": detail}


def _own_words(text: str) -> str:
    """The answer's own prose: code, links and quotes blanked, and a dialogue's lines too (two or more speakers'
    lines: 'B：我也不太确定' is a character speaking)."""
    own = prose(text).replace("’", "'")
    lines = SPEAKER.findall(own)
    return blank(own, SPEAKER) if len(lines) >= 2 else own


def _deferral(own: str, deferrals: re.Pattern, rest: int) -> list[re.Match] | None:
    """The deferring phrases when, without the sentences holding them, less than `rest` of substance is left."""
    hits = list(deferrals.finditer(own))
    if not hits:
        return None
    left = "".join(s.group() for s in SENTENCE.finditer(own) if not deferrals.search(s.group()))
    return hits if substance(left) < rest else None


def _listing(items) -> str:
    return ", ".join(dict.fromkeys(f"'{s}'" for s in items))


def _detail(matches: list[re.Match]) -> str:
    return "; ".join(dict.fromkeys(" ".join(m.group().split()) for m in matches))
