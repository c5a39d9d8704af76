"""hygiene.*: text debris that survives scraping and templating: HTML, invisible characters, U+FFFD, template markers, mojibake.

Records are pre-selected with vectorised polars regexes over `prompt` and `response`; only those are
looked at in Python, per source field, to name the field, cut an excerpt and weed out the cases a
regex alone cannot tell apart (markup inside code, emoji joiners, text that only looks like mojibake).
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import ClassVar

import polars as pl

from schemas.config import HygieneConfig, builtin_patterns
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from schemas.patterns import BoundedPattern, PatternTooSlow, bounded
from validators.base import Rule, RuleCode, RuleContext, code_info, sums
from validators.empty import text_fields
from validators.masks import FENCED_CODE, blank

W = Severity.warning

_TAG_NAMES = ("a|abbr|article|b|big|blockquote|body|br|button|center|cite|code|dd|del|div|dl|dt|em|figcaption|figure|font|"
              "footer|form|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|label|li|link|main|mark|meta|nav|ol|option|"
              "p|pre|q|s|script|section|select|small|span|strike|strong|style|sub|sup|table|tbody|td|textarea|tfoot|th|thead|"
              "title|tr|tt|u|ul")
_ENTITY_NAMES = ("amp|lt|gt|quot|apos|nbsp|ensp|emsp|thinsp|shy|mdash|ndash|hellip|lsquo|rsquo|ldquo|rdquo|laquo|raquo|middot|"
                 "bull|copy|reg|trade|deg|plusmn|times|divide|frac12|frac14|frac34|sup2|sup3|cent|pound|yen|euro|sect|para|"
                 "iexcl|iquest|[aeiouAEIOU](?:acute|grave|circ|uml)|ccedil|ntilde|szlig")
# A real tag has a known HTML name right after '<' and ends at '>' (so `a < b`, `x<y`, `List<String>` are not tags);
# an entity is a known name or a numeric reference between '&' and ';' (so C's `&count;` is not one).
HTML = rf"(?i)</?(?:{_TAG_NAMES})(?:\s[^<>]*)?/?>|&(?:{_ENTITY_NAMES}|#[0-9]{{1,7}}|#[xX][0-9a-fA-F]{{1,6}});"
# Prompts about markup: HTML in their answers (and prompts) is the subject, not debris. (No `\b`: a Unicode word
# boundary makes polars' regex engine fall back to a slow path on non-ASCII text.)
HTML_TOPIC = r"(?i)html|xml|svg|(?:^|[^a-z])css(?:[^a-z]|$)|jsx|markup|web ?page|website|网页"
# C0 and C1 controls except tab and newline (CR included: it is a stray half of a Windows line end),
# and the zero-width characters that hide inside words.
CONTROL = r"[\x00-\x08\x0B-\x1F\x7F-\x9F\u200B-\u200D\u2060\uFEFF]"
REPLACEMENT = "\ufffd"
# cp1252's printable characters for bytes 0x80-0x9F: what UTF-8 continuation bytes look like after a cp1252 decode.
_CP1252 = {bytes([b]).decode("cp1252"): b for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_CONT = "[\u0080-\u00BF" + "".join(sorted(c for c in _CP1252 if ord(c) > 0xFF)) + "]"
# A UTF-8 lead byte read as Latin-1 followed by the right number of continuation bytes. '×' (0xD7) is left out:
# it is the multiplication sign, and '× ' (with a no-break space) is everyday arithmetic, not mojibake.
MOJIBAKE = f"[\u00C2-\u00D6\u00D8-\u00DF]{_CONT}|[\u00E0-\u00EF]{_CONT}{{2}}|[\u00F0-\u00F4]{_CONT}{{3}}"

_BR = re.compile(r"(?i)<br\s*/?>")
_JOINERS = {"\u200c", "\u200d"}
_CJK = re.compile(r"[\u2E80-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF\uFF00-\uFFEF]")


class HygieneRules(Rule):
    family: ClassVar[str] = "hygiene"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("hygiene.html", W, "HTML tags and entities left from scraping teach the model to emit markup in plain answers.",
                 fix="repair"),
        RuleCode("hygiene.control_chars", W, "Control and zero-width characters are invisible in review, split words into odd "
                 "tokens and can break templates.", fix="repair"),
        RuleCode("hygiene.replacement_char", W, "U+FFFD marks characters lost in a bad decode; the original text cannot be "
                 "recovered from the file."),
        RuleCode("hygiene.template_marker", W, "Leftover template markers (`### 回答:`, `<|im_start|>`) and unfilled "
                 "placeholders ({{name}}) teach the model to print template syntax.", "template_markers, placeholders",
                 fix="repair"),
        RuleCode("hygiene.mojibake", W, "UTF-8 text decoded as Latin-1/cp1252 ('Ã©', 'â€™', 'å¤§') is garbage the model learns "
                 "as language."),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.hygiene
        detectors = _detectors(cfg.template_markers, cfg.placeholders)
        text = pl.concat_str([pl.col("prompt").fill_null(""), pl.col("response").fill_null("")], separator="\n")
        patterns = {"hygiene.html": HTML, "hygiene.control_chars": CONTROL, "hygiene.replacement_char": re.escape(REPLACEMENT),
                    "hygiene.template_marker": "|".join(f"(?:{p})" for p in cfg.template_markers + cfg.placeholders) or "$^",
                    "hygiene.mojibake": MOJIBAKE}
        suspects = {code: text.str.contains(p) for code, p in patterns.items()}
        suspects["hygiene.html"] &= ~pl.col("prompt").fill_null("").str.contains(HTML_TOPIC)
        flagged = batch.valid.with_columns(**{code: expr for code, expr in suspects.items()}).filter(
            pl.any_horizontal(list(patterns)))
        found: list[dict] = []
        for row in flagged.iter_rows(named=True):
            codes = [c for c in patterns if row[c]]
            base = {"source": row["source"], "line": row["line"], "record_id": row["id"]}
            for field, _, value in text_fields(row):
                masked = blank(value or "", FENCED_CODE)
                for code in codes:
                    try:
                        hit = detectors[code](value or "", masked)
                    except PatternTooSlow as e:
                        raise e.at(f"{row['source']}:{row['line']}, {field}") from None
                    if hit is not None:
                        template, values, excerpt, detail = hit
                        info = code_info(self, code)
                        found.append(base | {"rule": code, "severity": info.severity.value, "field": field,
                                             "template": template, "values": values, "excerpt": excerpt, "detail": detail})
        return findings_frame(found)

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per batch: records flagged, how many of them `datakit fix` will actually change (placeholders, U+FFFD and
        mojibake stay), and records per rule."""
        ids = found["record_id"].unique()
        flagged = batch.frame.filter(pl.col("id").is_in(ids.implode()))
        changed = sum(any(self.repair(t or "", ctx) != (t or "") for _, _, t in text_fields(row))
                      for row in flagged.iter_rows(named=True))
        per_rule = {c.code: found.filter(pl.col("rule") == c.code)["record_id"].n_unique() for c in self.codes}
        return pl.DataFrame({"records_flagged": [ids.len()], "records_fix_will_repair": [changed],
                             **{code: [n] for code, n in per_rule.items()}}).cast(pl.Int64)

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        codes = [c.code for c in self.codes]
        totals = sums(state, ["records_flagged", "records_fix_will_repair", *codes])
        return empty_findings(), {"records_flagged": totals["records_flagged"],
                                  "records_fix_will_repair": totals["records_fix_will_repair"],
                                  "records_by_rule": {c: totals[c] for c in codes}}

    def repair(self, text: str, ctx: RuleContext) -> str:
        """Controls and zero-width characters removed (CR becomes a newline), tags stripped and entities decoded, template
        markers stripped; code spans and whole HTML documents keep their markup. Repeated to a fixed point (so
        `&amp;lt;b&amp;gt;` ends as text the check no longer flags), which makes it idempotent; CJK text and punctuation
        are never touched (no pattern matches them)."""
        markers = _markers(ctx.config.hygiene.template_markers, shape=lambda p: rf"(?:{p})[ \t]*\n?")
        while True:  # ends: every pass that changes the text shortens it, but for CR -> LF, which cannot recur twice
            fixed = _repair_once(text, markers)
            if fixed == text:
                return text
            text = fixed


def _detectors(markers: list[str], placeholders: list[str]) -> dict[str, Callable[[str, str], tuple | None]]:
    """Per code: (text, text with code masked) -> (message template, its values, excerpt, detail) for the first real
    occurrence, or None."""
    html_re, control_re, moji_re = re.compile(HTML), re.compile(CONTROL), re.compile(MOJIBAKE)
    marker_res = _markers(markers)
    placeholder_res = bounded(placeholders, "hygiene.placeholders", builtin_patterns(HygieneConfig, "placeholders"))

    def html_hit(text: str, masked: str) -> tuple | None:
        hits = [] if _is_html_document(text) else list(html_re.finditer(masked))
        if not hits:
            return None
        shown = _listing(m.group() for m in hits)
        template = ("HTML markup in the text ({}): the model learns to emit tags and entities in plain answers. "
                    "`datakit fix` strips the tags and decodes the entities (code spans are left alone).")
        return template, [shown], _excerpt(text, hits[0]), shown

    def control_hit(text: str, _: str) -> tuple | None:
        hits = [m for m in control_re.finditer(text) if not _legitimate_joiner(text, m.start())]
        if not hits:
            return None
        names = _listing(f"U+{ord(m.group()):04X}" for m in hits)
        template = ("invisible control or zero-width characters ({}): they split words into odd tokens and hide from "
                    "review. `datakit fix` removes them (a carriage return becomes a newline).")
        return template, [names], _excerpt(text, hits[0]), names

    def replacement_hit(text: str, _: str) -> tuple | None:
        n = text.count(REPLACEMENT)
        if not n:
            return None
        first = re.search(REPLACEMENT, text)
        template = ("{} U+FFFD replacement character(s): the original characters were lost when the text was decoded and "
                    "cannot be recovered from this file. Re-export the source as UTF-8, or drop the record.")
        return template, [str(n)], _excerpt(text, first), f"U+FFFD x{n}"

    def template_hit(text: str, masked: str) -> tuple | None:
        marks = [m for r in marker_res for m in r.finditer(masked)]
        holes = [m for r in placeholder_res for m in r.finditer(masked)]
        if not marks and not holes:
            return None
        parts = []
        if marks:
            parts.append(f"leftover template marker(s) {_listing(m.group() for m in marks)}: the model learns to print template "
                         "syntax; `datakit fix` strips them")
        if holes:
            parts.append(f"unfilled placeholder(s) {_listing(m.group() for m in holes)}: the model learns to say them literally. "
                         "Fill in the real value (e.g. replace {{name}} with your assistant's name) before training; "
                         "`datakit fix` cannot invent it and leaves them")
        first = min(marks + holes, key=lambda m: m.start())
        return "{}", ["; ".join(parts) + "."], _excerpt(text, first), _listing(m.group() for m in sorted(marks + holes, key=lambda m: m.start()))

    def mojibake_hit(text: str, _: str) -> tuple | None:
        hits = [(m, d) for m in moji_re.finditer(text) if (d := _undo_mojibake(m.group())) is not None]
        if not hits:
            return None
        shown = _listing(f"{m.group()} -> {d}" for m, d in hits)
        template = ("mojibake ({}): UTF-8 text was decoded as Latin-1/cp1252 somewhere upstream. Re-decode the source "
                    "(e.g. with ftfy) or drop the record; `datakit fix` does not guess.")
        return template, [shown], _excerpt(text, hits[0][0]), shown

    return {"hygiene.html": html_hit, "hygiene.control_chars": control_hit, "hygiene.replacement_char": replacement_hit,
            "hygiene.template_marker": template_hit, "hygiene.mojibake": mojibake_hit}


def _markers(patterns: list[str], shape: Callable[[str], str] = str) -> list[BoundedPattern]:
    """The configured template markers, each search bounded in time (a user's pattern may backtrack catastrophically)."""
    return bounded(patterns, "hygiene.template_markers", builtin_patterns(HygieneConfig, "template_markers"), shape)


def _is_html_document(text: str) -> bool:
    """A whole page (doctype or <html>) is content someone asked for, not debris."""
    head = text.lower()
    return "<!doctype html" in head or "<html" in head


def _legitimate_joiner(text: str, i: int) -> bool:
    """ZWJ/ZWNJ between two non-ASCII, non-CJK characters is part of an emoji sequence or of Persian/Indic spelling."""
    if text[i] not in _JOINERS or i == 0 or i + 1 >= len(text):
        return False
    return all(ord(c) > 0x7F and not _CJK.match(c) and not c.isspace() for c in (text[i - 1], text[i + 1]))


def _undo_mojibake(candidate: str) -> str | None:
    """The character the candidate was before a UTF-8 -> Latin-1/cp1252 mis-decode, or None if it cannot be one."""
    data = bytearray()
    for c in candidate:
        b = ord(c) if ord(c) <= 0xFF else _CP1252.get(c)
        if b is None:
            return None
        data.append(b)
    if all(b == 0xA0 for b in data[1:]) and data[0] not in (0xC2, 0xC3):
        return None  # a letter followed by no-break spaces is real text; only 'Â ' and 'Ã ' are the classic mis-decodes
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _repair_once(text: str, markers: list[BoundedPattern]) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    control = re.compile(CONTROL)
    text = control.sub(lambda m: m.group() if _legitimate_joiner(m.string, m.start()) else "", text)
    if _is_html_document(text):
        return text
    pieces = FENCED_CODE.split(text)
    codes = FENCED_CODE.findall(text)
    out = []
    for i, piece in enumerate(pieces):
        piece = _BR.sub("\n", piece)
        piece = re.sub(HTML, lambda m: _decode_entity(m.group()), piece)
        for marker in markers:
            piece = marker.sub("", piece)
        out.append(piece)
        if i < len(codes):
            out.append(codes[i])
    return "".join(out)


def _decode_entity(markup: str) -> str:
    """A tag becomes nothing, an entity its character (a no-break space a plain space)."""
    if markup.startswith("<"):
        return ""
    return " " if markup.lower() == "&nbsp;" else html.unescape(markup)


def _excerpt(text: str, match: re.Match, context: int = 30) -> str:
    start, end = max(0, match.start() - context), min(len(text), match.end() + context)
    return ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")


def _listing(items, limit: int = 5) -> str:
    seen = list(dict.fromkeys(items))
    return ", ".join(repr(s) if not s.isprintable() else f"'{s}'" for s in seen[:limit]) + (" ..." if len(seen) > limit else "")
