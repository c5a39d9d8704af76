"""spelling.*: common misspellings ("没有明显的错别字"): English from codespell's dictionary, Chinese 错别字 from a curated list.

Both lists name known wrong forms, so a hit is a misspelling, not merely a word a dictionary lacks: names,
jargon and other languages are never "unknown words" here. English comes from the installed codespell package's
`dictionary.txt` (read at run time); Chinese from `validators/data/zh_typos.tsv`; both extendable in config.
Records are pre-selected in polars (words joined against the list, `contains_any` for Chinese); only those are
read in Python, where code, links, quoted text, identifiers, names (capitalised mid-sentence) and sentences in
another Latin-script language are left out, and so are records whose task is finding or fixing mistakes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

import polars as pl

from schemas.config import SpellingConfig
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, sums
from validators.empty import text_fields
from validators.masks import prose

W, I = Severity.warning, Severity.info

ZH_TYPOS = Path(__file__).parent / "data" / "zh_typos.tsv"
# codespell's entries of three letters or fewer are mostly abbreviations, slang or words of other languages in
# prose (ist, ser, vas, nam); these are kept because they are nothing but English typos.
SHORT_KEPT = frozenset({"teh", "hte", "adn", "tge", "tje", "tne", "yhe", "thn", "wih", "oyu", "yuo", "nwe", "fwe", "otu",
                        "cna", "mke", "lke", "oly", "hsa", "hsi", "ihs", "whn", "wqs", "fof", "ofo", "esy", "eyt", "oen"})
# A word: ASCII letters (with inner apostrophes), not glued to other word characters, digits, paths, handles,
# hyphenated compounds or file extensions (`self.heigh`, `x-serie`, `#tey`, `userA@host` are not prose words).
WORD = re.compile(r"(?<![\w@#/\\.\-'’])[A-Za-z]+(?:['’][A-Za-z]+)*(?![\w@/\\\-'’]|\.\w)")
# A sentence with letters of another Latin-script language (é, ü, ñ): French `branche`, German `sie` are not typos.
FOREIGN = re.compile(r"[^.!?。！？\n]*[\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u024F][^.!?。！？\n]*")
MOST_COMMON = 20  # misspellings listed in the summary
SENTENCE_START = re.compile(r"(?:^|[.!?:;。！？]|\n[ \t]*(?:[-*+•]|\d{1,3}[.)]|[A-Za-z][.)])?)[ \t\"“(]*$")


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    word: str
    fixes: tuple[str, ...]
    fixable: bool  # one correction the list applies on its own (`datakit fix` does); else a person chooses

    def shown(self) -> str:
        return f"{self.word} -> {' / '.join(self.fixes)}"


@dataclass(frozen=True)
class Entry:
    fixes: tuple[str, ...]
    fixable: bool
    name: bool  # written capitalised in the list (Britian -> Britain): checked even mid-sentence


@dataclass(frozen=True)
class Lexicon:
    en: dict[str, Entry]  # by lower-case misspelling
    zh: dict[str, str]
    ignored: frozenset[str]
    task_words: tuple[str, ...]  # lower-case; a prompt holding one asks to find or fix mistakes

    def is_task(self, prompt: str) -> bool:
        prompt = prompt.lower()
        return any(w in prompt for w in self.task_words)

    def hits(self, text: str) -> list[Hit]:
        """Every misspelling in the writer's own prose, in order."""
        masked = FOREIGN.sub(lambda m: " " * len(m.group()), prose(text))
        found = [h for m in WORD.finditer(masked) if (h := self._english(m, masked)) is not None]
        for wrong, right in self.zh.items():
            start = masked.find(wrong)
            while start >= 0:
                found.append(Hit(start, start + len(wrong), wrong, (right,), True))
                start = masked.find(wrong, start + len(wrong))
        return sorted(found, key=lambda h: h.start)

    def _english(self, m: re.Match, masked: str) -> Hit | None:
        word = m.group()
        key = word.lower().replace("’", "'")
        entry = self.en.get(key)
        if entry is None or key in self.ignored:
            return None
        if word[1:] != word[1:].lower() and not (entry.name and word[1:].islower()):
            return None  # camelCase, or an acronym (a shouted misspelling is rare; an acronym on the list is not)
        if word[0].isupper() and not entry.name and not SENTENCE_START.search(masked[: m.start()]):
            return None  # capitalised mid-sentence: a name
        return Hit(m.start(), m.end(), word, tuple(_cased(f, word) for f in entry.fixes), entry.fixable)


def _cased(fix: str, word: str) -> str:
    return fix[:1].upper() + fix[1:] if word[0].isupper() else fix


@cache
def codespell_entries() -> dict[str, Entry]:
    """codespell's dictionary by lower-case misspelling. Per its format, a line with a comma is not auto-fixed: the part
    before its last comma lists the candidates (after it, an optional reason why not)."""
    out: dict[str, Entry] = {}
    text = (files("codespell_lib") / "data" / "dictionary.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        wrong, _, data = line.partition("->")
        if not data or (len(wrong) <= 3 and wrong.lower() not in SHORT_KEPT):
            continue
        data = data.strip()
        fixes = tuple(f.strip() for f in data.rsplit(",", 1)[0].split(",") if f.strip()) if "," in data else (data,)
        out.setdefault(wrong.lower(), Entry(fixes, "," not in data, wrong[:1].isupper()))
    return out


@cache
def zh_entries() -> dict[str, str]:
    rows = [line.split("\t") for line in ZH_TYPOS.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    return {wrong.strip(): right.strip() for wrong, right in rows[1:]}


def lexicon(cfg: SpellingConfig) -> Lexicon:
    en = codespell_entries() | {w.lower(): Entry((f,), True, w[:1].isupper()) for w, f in cfg.extra_en.items()}
    return Lexicon(en, zh_entries() | cfg.zh_typos, frozenset(w.lower() for w in cfg.ignore_words),
                   tuple(w.lower() for w in cfg.task_words))


class SpellingRules(Rule):
    family: ClassVar[str] = "spelling"
    needs: ClassVar[tuple[str, ...]] = ()
    repair_roles: ClassVar[tuple[str, ...]] = ("assistant",)  # prompts keep their typos: users misspell
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("spelling.misspelling", W, "A common misspelling in an answer ('recieve', '一如继往') teaches the model to "
                 "misspell; it has one known correction, which `datakit fix` applies.", "codespell + zh_typos.tsv",
                 fix="repair"),
        RuleCode("spelling.ambiguous", W, "A known misspelling in an answer with several possible corrections ('wether': "
                 "weather or whether); a person has to choose."),
        RuleCode("spelling.prompt", I, "Misspellings in prompts are left alone: real users misspell, and a model should "
                 "cope with it; listed so you know they are there."),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        lex = ctx.prepared("spelling.lexicon", lambda: lexicon(ctx.config.spelling))
        found: list[dict] = []
        for row in _candidates(batch, lex).iter_rows(named=True):
            if lex.is_task(row["prompt"] or ""):
                continue
            base = {"source": row["source"], "line": row["line"], "record_id": row["id"]}
            for field, role, text in text_fields(row):
                hits = lex.hits(text or "")
                if role == "assistant":
                    for code, group in (("spelling.misspelling", [h for h in hits if h.fixable]),
                                        ("spelling.ambiguous", [h for h in hits if not h.fixable])):
                        if group:
                            found.append(base | self._finding(code, field, text, group))
                elif hits and ctx.config.spelling.check_prompts:
                    found.append(base | self._finding("spelling.prompt", field, text, hits))
        return findings_frame(found)

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per batch: records checked, skipped as proofreading tasks and flagged per code, and every misspelling found
        ("code|wrong -> right", from the findings' detail) for the summary's most common ones."""
        valid = batch.valid
        skipped = valid.filter(pl.col("prompt").fill_null("").str.contains_any(ctx.config.spelling.task_words,
                                                                               ascii_case_insensitive=True)).height
        words = (found.select("rule", pl.col("detail").str.split("; ")).explode("detail")
                 .select(pl.concat_str([pl.col("rule"), pl.lit("|"), pl.col("detail")]).alias("word")))
        return pl.DataFrame({"records_checked": [valid.height], "records_skipped_as_proofreading": [skipped],
                             **{c.code: [found.filter(pl.col("rule") == c.code)["record_id"].n_unique()] for c in self.codes},
                             "words": [words["word"].to_list()]},
                            schema={"records_checked": pl.Int64, "records_skipped_as_proofreading": pl.Int64,
                                    **{c.code: pl.Int64 for c in self.codes}, "words": pl.List(pl.String)})

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        codes = [c.code for c in self.codes]
        totals = sums(state, ["records_checked", "records_skipped_as_proofreading", *codes])
        common = (state.select(pl.col("words").explode()).drop_nulls().group_by("words").len()
                  .sort(["len", "words"], descending=[True, False]).head(MOST_COMMON).collect(engine="streaming")
                  if state is not None else pl.DataFrame({"words": [], "len": []}))
        rows = []
        for shown, n in common.iter_rows():
            code, _, pair = shown.partition("|")
            wrong, _, right = pair.partition(" -> ")
            rows.append({"misspelling": wrong, "correction": right, "rule": code, "count": n})
        return empty_findings(), {
            "records_checked": totals["records_checked"],
            "records_skipped_as_proofreading": totals["records_skipped_as_proofreading"],
            "records_by_rule": {c: totals[c] for c in codes},
            "lists": f"codespell {version('codespell')} dictionary.txt ({len(codespell_entries()):,} entries used), "
                     f"validators/data/zh_typos.tsv ({len(zh_entries()):,})",
            "most_common": rows,
        }

    def repair(self, text: str, ctx: RuleContext) -> str:
        """Every misspelling with a single known correction replaced (case kept: Teh -> The); the others, and code,
        links, quotes and names, untouched. Corrections are not themselves entries, so a second pass changes nothing."""
        lex = ctx.prepared("spelling.lexicon", lambda: lexicon(ctx.config.spelling))
        for hit in reversed([h for h in lex.hits(text) if h.fixable]):
            text = text[:hit.start] + hit.fixes[0] + text[hit.end:]
        return text

    def _finding(self, code: str, field: str, text: str, hits: list[Hit]) -> dict:
        info = code_info(self, code)
        shown = "; ".join(dict.fromkeys(h.shown() for h in hits))
        templates = {
            "spelling.misspelling": "misspelling(s) in the answer: {}. The model learns to misspell; `datakit fix` applies "
                                    "these corrections (see them with `datakit fix --dry-run`).",
            "spelling.ambiguous": "misspelling(s) with more than one possible correction in the answer: {}. Choose the "
                                  "right word and edit it; `datakit fix` does not guess.",
            "spelling.prompt": "misspelling(s) in the prompt: {}. Left alone on purpose (users misspell; the model should "
                               "cope); correct them only if the prompt is meant to be a clean example.",
        }
        first = hits[0]
        start, end = max(0, first.start - 30), min(len(text), first.end + 30)
        excerpt = ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
        return {"rule": code, "severity": info.severity.value, "field": field, "template": templates[code],
                "values": [shown], "excerpt": excerpt, "detail": shown}


def _candidates(batch: Dataset, lex: Lexicon) -> pl.DataFrame:
    """Valid records with a listed misspelling anywhere in their texts (before masks and exemptions): an English word
    of the list (a join of every word against it), or a Chinese wrong form (Aho-Corasick `contains_any`)."""
    valid = batch.valid
    text = pl.concat_str([pl.col("prompt").fill_null(""), pl.col("response").fill_null("")], separator="\n")
    words = (valid.select("id", text.str.replace_all("’", "'", literal=True).str.extract_all(r"[A-Za-z]+(?:'[A-Za-z]+)*")
                          .alias("word")).explode("word").with_columns(pl.col("word").str.to_lowercase()))
    listed = pl.DataFrame({"word": list(lex.en)}, schema={"word": pl.String})
    ids = words.join(listed, on="word", how="semi")["id"]
    zh = valid.filter(text.str.contains_any(list(lex.zh)))["id"] if lex.zh else ids.clear()
    return valid.filter(pl.col("id").is_in(pl.concat([ids, zh]).unique().implode()))
