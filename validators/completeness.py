"""completeness.*: answers cut off mid-sentence or mid-structure ("完整性").

A cut answer (a generation limit, a truncated export) teaches the model to stop in the middle. What one answer
shows alone is judged per record: a code fence, bracket or quote left open at the end, a list whose last item is
empty or unfinished, a last word no sentence ends with (and / the / of, 以及 / 因为). Whether a missing full stop
means anything depends on the dataset: it is judged in `finish`, against the share of the dataset's own prose
answers that end with closing punctuation, so a dataset of code, labels or verse is never flagged wholesale.
Only the last answer of a record is judged (that is where a cut lands), and at most one code per record.
"""
from __future__ import annotations

import re
from typing import ClassVar

import polars as pl

from schemas.config import CompletenessConfig
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, flag, message
from validators.empty import BLANK, text_fields
from validators.masks import CODE, LINK, blank

W = Severity.warning

FENCE = r"```|(?m:^[ \t]*~~~)"
LIST_MARKER = r"^[^\S\n]*(?:[-*+•]|\d{1,3}[.)、]|[a-zA-Z][.)]|[(（]\d{1,3}[)）])"
HAN = "\u4e00-\u9fff"
# A marker, then a space, the line's end or (Chinese writes '1.保持冷静') a Han character. Python's re keeps that
# character out of the match with a lookahead; polars' regex has none, so it captures it and puts it back.
LIST_ITEM = LIST_MARKER + rf"(?:[^\S\n]+|$|(?=[{HAN}]))"
LIST_ITEM_PL = LIST_MARKER + rf"(?:[^\S\n]+|$|([{HAN}]))"
LABEL = r"^[^\n:：]{1,20}[:：][^\S\n]*"  # "Step 2: ", "朋友B：": set aside before the prose test, like a list marker
# An ending that leaves the sentence open: a letter or CJK character, or a comma, colon, dash or joining sign (polars
# regex, and the same for Python's re).
OPEN_END = r"[\p{L},，:：;；、\-–—/&+=(（]$"
# A number closing words ('...is approximately $31,000', '并在202'): the sentence is as open as after a word.
DIGIT_END = r"(?:[A-Za-z][,，]?[^\S\n]+[$€£¥]?|\p{Han})\d(?:[\d,.]*\d)?$"
OPEN_END_RE = re.compile(r"(?:[^\W\d_]|[,，:：;；、\-–—/&+=(（])$")
# Not prose: a table row, heading, quote or code line, a line ending in a formula or markup, a list written on one line ('1. a 2. b
# 3. c'), or a line ending on a hashtag, a link, an attribution ('" - Albert Einstein') or a sign-off ('祝好，艾米丽').
NOT_PROSE = (r"^[^\S\n]*[|#>}{]|[{};]\s*$|\s=[^=\n]{0,30}$|=>|</?[A-Za-z]|#\w+$|(?:https?://|www\.)\S+$"
             r"|\s[—–-]{1,2}\s*\p{Lu}[\p{L}.' ]{1,40}$|(?:祝好|祝福|敬礼|此致|谢谢|问候|敬上|爱你的)[,，]\s*\p{Han}{2,4}$"
             r"|(?:(?:^|\s)\d{1,2}[.)、]\s*\S[^\n]*){3}")
LABELS = r"\w[:：][^\S\n]"  # two or more in one line: a record written out ('Main: fish, Side: rice'), not prose
PAIRS = {"(": ")", "[": "]", "{": "}", "（": "）", "【": "】", "《": "》", "“": "”", "「": "」", "『": "』"}
QUOTES = ("“", "「", "『")
CLOSERS = {v: k for k, v in PAIRS.items()}
SENTENCE_END = re.compile(r"[.!?。！？]")
# Words that end in a dangling character but end sentences themselves (温和 "mild" ends in 和 "and").
COMPOUNDS = ("温和", "平和", "总和", "缓和", "柔和", "饱和", "暖和", "调和", "附和", "随和", "中和", "祥和", "谦和", "共和", "讲和")
EXCERPT = 80
PER_RECORD = ("completeness.unclosed_code_fence", "completeness.unclosed_bracket", "completeness.unclosed_quote",
              "completeness.truncated_list", "completeness.truncated_table", "completeness.dangling_word")
TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")


def last_answer() -> pl.Expr:
    """The record's last assistant text (where a cut lands)."""
    return pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "assistant").struct.field("content")).list.last()


def endings(valid: pl.DataFrame) -> pl.DataFrame:
    """Per answered record: its last answer and what its ending shows, vectorised: the last line; whether that line
    (past a list marker or a "label:") is prose long enough to judge punctuation on; whether the answer ends open
    (on a letter, a digit after words, or a joining sign); and whether a closer look in Python is needed (a fence
    count, bracket or quote imbalance, a list item or an open ending).

    Long enough: a sentence end inside the line or closing the paragraph before it (with 2 words / 1 CJK character
    after it: a new paragraph that stops at once was cut), a clause joined by a comma (6 words / 6 CJK characters),
    or a sentence of 12 words / 25 CJK characters, or 6 / 10 when it runs on over lines ending with a comma (verse,
    a long sentence broken into lines). Shorter lines without any of these are often titles or list entries."""
    answer = last_answer().fill_null("").str.strip_chars_end()
    rows = valid.filter(pl.col("format") != "prompts").select("id", "source", "line", answer.alias("answer")).filter(
        ~pl.col("answer").str.contains(BLANK))
    words = lambda text: text.str.count_matches(r"[A-Za-z]+")
    cjk = lambda text: text.str.count_matches(rf"[{HAN}]")
    # Computed in steps, each column once (polars does not share a sub-expression between columns).
    rows = rows.with_columns(
        pl.col("answer").str.extract(r"([^\n]*)$", 1).alias("last_line"),
        # the unfinished sentence the answer ends with runs back over lines ending with a comma
        pl.col("answer").str.extract(r"((?:[^\n]*[,，;；][^\S\n]*\n)*)[^\n]*$", 1).alias("before"))
    rows = rows.with_columns(
        pl.col("last_line").str.replace(LIST_ITEM_PL, "${1}").str.replace(LABEL, "").alias("content"),
        pl.col("before").str.replace(LIST_ITEM_PL, "${1}").str.extract(r"([^.!?。！？]*)$", 1).alias("before"),
        # a comma joining a clause (3 words / 4 CJK characters) ('Based on ..., it'; '现在，我们可以'); the items of an
        # enumeration ('China, US, Brazil') are shorter
        pl.col("last_line").str.extract_groups(r"((?:[^,，]|,\S)*)(?:, |，)((?:[^,，]|,\S)*)$").alias("clauses"))  # not 31,000
    clause = lambda part: (words(part) >= 3) | (cjk(part) >= 4)
    rows = rows.with_columns(
        words(pl.col("content")).alias("words"), cjk(pl.col("content")).alias("cjk"),
        words(pl.col("before")).alias("before_words"), cjk(pl.col("before")).alias("before_cjk"),
        pl.col("content").str.contains(r"(?:[^\d\s][.!?]['\"”’)）]?\s+\S|[。！？]['\"”’)）]?\s*\S)").alias("inner_end"),  # not "2. "
        # on a line that is neither a list item nor "label:"
        ((clause(pl.col("clauses").struct[0]) | clause(pl.col("clauses").struct[1]))
         & (pl.col("content") == pl.col("last_line"))).fill_null(False).alias("comma"),
        # a new paragraph after one that ended a sentence: the text is punctuated prose, so a short last line counts
        (pl.col("answer").str.contains(r"[.!?。！？]['\"”’)）]?[^\S\n]*\n\s*[^\n]+$")
         & ~pl.col("last_line").str.contains(LIST_ITEM_PL)).alias("after_sentence"),
        (pl.col("answer").str.ends_with("```") | pl.col("answer").str.ends_with("~~~")).alias("in_code"))
    w, c = pl.col("words"), pl.col("cjk")
    sentence_words, sentence_cjk = w + pl.col("before_words"), c + pl.col("before_cjk")
    long_enough = ((pl.col("inner_end") & ((w >= 3) | (c >= 5))) | (pl.col("after_sentence") & ((w >= 2) | (c >= 1)))
                   | (pl.col("comma") & ((w >= 6) | (c >= 6)))
                   | ((pl.col("before_words") + pl.col("before_cjk") > 0) & ((sentence_words >= 6) | (sentence_cjk >= 10)))
                   | (sentence_words >= 12) | (sentence_cjk >= 25))
    imbalance = pl.any_horizontal([pl.col("answer").str.count_matches(o, literal=True)
                                   > pl.col("answer").str.count_matches(c, literal=True) for o, c in PAIRS.items()]
                                  + [pl.col("answer").str.count_matches('"', literal=True) % 2 == 1])
    # Digits end a sentence left open too ('...is approximately $31,000') once words come before them.
    open_end = pl.col("answer").str.contains(OPEN_END) | pl.col("answer").str.contains(DIGIT_END)
    unbalanced = imbalance | (pl.col("last_line").str.count_matches('"', literal=True) % 2 == 1)
    return rows.select(
        "id", "source", "line", "answer", "last_line", unbalanced.alias("unbalanced"),
        (~pl.col("last_line").str.contains(NOT_PROSE) & (pl.col("last_line").str.count_matches(LABELS) < 2)
         & ~pl.col("in_code") & long_enough).alias("prose"),
        (open_end & ~pl.col("in_code")).alias("open"),
        ((pl.col("answer").str.count_matches(FENCE) % 2 == 1) | imbalance | pl.col("last_line").str.contains(LIST_ITEM_PL)
         | pl.col("answer").str.contains(OPEN_END) | pl.col("last_line").str.contains(r"^\s*\|")).alias("suspect"))


class CompletenessRules(Rule):
    family: ClassVar[str] = "completeness"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("completeness.unclosed_code_fence", W, "A code block opened (```) and never closed: the answer was cut "
                 "inside its code, and templates render the rest of the text as code."),
        RuleCode("completeness.unclosed_bracket", W, "An opening bracket whose text runs to the end of the answer unclosed: "
                 "the answer stops mid-structure."),
        RuleCode("completeness.unclosed_quote", W, "A quotation opened near the end and never closed: the answer stops "
                 "mid-quote."),
        RuleCode("completeness.truncated_list", W, "A list whose last item is empty ('4.') or unfinished while the other "
                 "items are complete: the answer stops mid-list."),
        RuleCode("completeness.truncated_table", W, "A Markdown table whose last row stops before its closing '|' while "
                 "the rows above it are whole: the answer stops mid-table."),
        RuleCode("completeness.dangling_word", W, "An answer ending on a word no sentence ends with (and, the, of; 以及, 因为) "
                 "was cut off mid-sentence.", "dangling_words"),
        RuleCode("completeness.no_end_punctuation", W, "A prose answer with no closing punctuation where the dataset's "
                 "answers normally have one (calibrated per dataset) probably stops mid-sentence.",
                 "min_closed_share = 0.8"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.completeness
        rows = _endings_of(batch).filter(pl.col("suspect"))
        found = []
        for row in rows.iter_rows(named=True):
            hit = structural(row["answer"], cfg, row["unbalanced"])
            if hit is None:
                continue
            code, template, values, excerpt = hit
            found.append({"rule": code, "severity": code_info(self, code).severity.value, "source": row["source"],
                          "line": row["line"], "record_id": row["id"], "template": template, "values": values,
                          "excerpt": excerpt})
        fields = _answer_fields(batch, pl.Series([f["record_id"] for f in found], dtype=pl.Int64))
        for f in found:
            f["field"] = fields.get(f["record_id"])
        return findings_frame(found)

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per prose answer: whether it ends open, and for open ones not flagged already (candidates) the field and the
        ending, which `finish` flags once the dataset's usual ending is known. Each code's record count for the batch
        rides on its first row."""
        rows = _endings_of(batch).filter(pl.col("prose")).with_columns(
            (pl.col("open") & ~pl.col("id").is_in(found["record_id"].implode())).alias("candidate"))
        fields = _answer_fields(batch, rows.filter(pl.col("candidate"))["id"])
        first = pl.int_range(pl.len()) == 0
        return rows.select(
            "id", "line", "open", "candidate",
            pl.when(pl.col("candidate")).then(pl.col("answer").str.slice(-EXCERPT)).alias("ending"),
            pl.col("id").replace_strict(fields, default=None, return_dtype=pl.String).alias("field"),
            *[pl.when(first).then(found.filter(pl.col("rule") == code)["record_id"].n_unique()).otherwise(0)
              .cast(pl.Int64).alias(_tally(code)) for code in PER_RECORD])

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.completeness
        if state is None:
            return empty_findings(), {"prose_answers": 0}
        counts = state.select(pl.len().alias("prose"), (~pl.col("open")).sum().alias("closed"),
                              *[pl.col(_tally(c)).sum() for c in PER_RECORD]).collect(engine="streaming").row(0, named=True)
        prose, closed = counts["prose"], counts["closed"]
        share = closed / prose if prose else None
        judged = prose >= cfg.min_prose_answers and share is not None and share >= cfg.min_closed_share
        found = empty_findings()
        if judged:
            rows = state.filter(pl.col("candidate")).select("id", "line", "field", "ending").collect(engine="streaming")
            pct = f"{100 * share:.0f}%"
            found = flag(rows.with_columns(ctx.source_of().alias("source")), code_info(self, "completeness.no_end_punctuation"),
                         message("the answer ends without closing punctuation ('...{}') while {} of this dataset's prose answers "
                                 "end with one: it probably stops mid-sentence (a generation limit or a cut export). Finish "
                                 "the sentence or drop the record.", pl.col("ending").str.slice(-40), pct),
                         field=pl.col("field"), excerpt=pl.col("ending"))
        reason = (f"judged: {100 * share:.1f}% of {prose:,} prose answers end with closing punctuation" if judged else
                  f"not judged: {prose:,} prose answers" + (f", {100 * share:.1f}% ending with closing punctuation"
                                                             if share is not None else "")
                  + f" (needs at least {cfg.min_prose_answers} and {100 * cfg.min_closed_share:.0f}%)")
        return found, {
            "prose_answers": prose,
            "ending_with_closing_punctuation": closed,
            "no_end_punctuation": reason,
            "records_by_rule": {c: counts[_tally(c)] for c in PER_RECORD} | {"completeness.no_end_punctuation": found.height},
        }


_last: list = [None, None]  # the frame `endings` last read and its result: `check` and `state` read the same batch


def _endings_of(batch: Dataset) -> pl.DataFrame:
    if _last[0] is not batch.frame:  # polars frames are immutable: the same object holds the same records
        _last[:] = [batch.frame, endings(batch.valid)]
    return _last[1]


def _tally(code: str) -> str:
    return "n_" + code.split(".")[1]


def structural(answer: str, cfg: CompletenessConfig, unbalanced: bool = True) -> tuple[str, str, list[str], str] | None:
    """(code, message template, values, excerpt) for what the answer's own text shows was cut, most specific first.
    `unbalanced`: the answer holds more openers than closers of some bracket, or an odd number of '"' (in its last line);
    when it does not, no bracket or quote can be left open and that walk over the text is skipped."""
    fences = list(re.finditer(FENCE, answer))
    if len(fences) % 2:
        opened = fences[-1].start()
        template = ("a code block opened at '{}' is never closed: the answer was cut inside its code (and templates show "
                    "the rest as code). Finish the code and close the fence, or drop the record.")
        return "completeness.unclosed_code_fence", template, [answer[opened:opened + 20].strip()], _tail(answer, opened)
    listed = _truncated_list(blank(answer, CODE), cfg)
    if listed is not None:
        return ("completeness.truncated_list", "{}: the answer stops mid-list. Finish the list or drop the record.",
                [listed], _tail(answer, len(answer) - EXCERPT))
    row = _truncated_row(answer)
    if row is not None:
        return ("completeness.truncated_table", ("the table's last row '{}' stops before its closing '|' while the rows "
                "above it are whole: the answer stops mid-table. Finish the table or drop the record."), [row],
                _tail(answer, len(answer) - EXCERPT))
    text = blank(answer, CODE, LINK)
    opened = _unclosed(text) if unbalanced else None
    if opened is not None:
        mark = text[opened]
        code = "completeness.unclosed_quote" if mark in QUOTES or mark == '"' else "completeness.unclosed_bracket"
        template = ("'{}' opened near the end is never closed (the text after it runs to the end): the answer stops "
                    "mid-{}. Close it and finish the sentence, or drop the record.")
        return code, template, [mark, "quote" if code.endswith("quote") else "structure"], _tail(answer, opened)
    word = _dangling(text, cfg)
    if word is not None:
        template = ("the answer ends on '{}', a word no sentence ends with: it was cut off mid-sentence. Finish the sentence "
                    "or drop the record.")
        return "completeness.dangling_word", template, [word], _tail(answer, len(answer) - EXCERPT)
    return None


def _truncated_row(answer: str) -> str | None:
    """The last line when it starts a table row ('|') but does not close it, under at least two whole rows."""
    lines = answer.rstrip().split("\n")
    last = lines[-1].strip()
    if not last.startswith("|") or last.endswith("|") or len(lines) < 3:
        return None
    return last[:40] if all(TABLE_ROW.match(ln) for ln in lines[-3:-1]) else None


def _unclosed(text: str) -> int | None:
    """Position of an opening bracket or quote left open whose text runs to the end of the answer on one line, with
    at most one sentence in it; None otherwise. Stray closers (list markers '1)', smileys) are ignored."""
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch in PAIRS and not (ch == "(" and i and text[i - 1] in ":;"):
            stack.append(i)
        elif ch in CLOSERS and stack and text[stack[-1]] == CLOSERS[ch]:
            stack.pop()
    candidates = stack[-1:]
    quote = _open_straight_quote(text)
    if quote is not None:
        candidates.append(quote)
    for start in sorted(candidates, reverse=True):
        rest = text[start + 1:]
        if rest.strip() and "\n" not in rest and len(SENTENCE_END.findall(rest.rstrip(".!?。！？"))) == 0:
            return start
    return None


def _open_straight_quote(text: str) -> int | None:
    """The last '"' of the last line when the line holds an odd number of them and it opens a quote (after a space or
    at the line start, after a colon, comma or list mark "6、", not an inch mark after a digit)."""
    line_start = text.rfind("\n") + 1
    marks = [m.start() for m in re.finditer('"', text[line_start:])]
    if len(marks) % 2 == 0:
        return None
    last = line_start + marks[-1]
    before = text[last - 1] if last > line_start else " "
    return last if before.isspace() or before in "(（:：、，" else None


def _truncated_list(text: str, cfg: CompletenessConfig) -> str | None:
    """Why the list that ends the answer is cut, or None: its last item is empty, ends on a dangling word, or lacks
    the closing punctuation every earlier item has."""
    lines = text.rstrip().split("\n")
    item = re.match(LIST_ITEM, lines[-1])
    if item is None:
        return None
    content = lines[-1][item.end():].strip()
    if not content:
        return f"the last list item '{lines[-1].strip()}' is empty"
    word = _dangling(content, cfg, min_words=1)
    if word is not None:
        return f"the last list item ends on '{word}', a word no sentence ends with"
    earlier = []  # the items of the same list before it (blank lines between items allowed)
    for ln in reversed(lines[:-1]):
        if ln.strip() and not re.match(LIST_ITEM, ln):
            break
        if ln.strip():
            earlier.append(ln.rstrip())
    # Items that end with punctuation: two of them, or one when the last item is itself a sentence (5 words / 6 CJK
    # characters: "2. K2 - Located in the Karakoram Range, on"), not a short entry ("2. Call mom").
    sentence = len(re.findall(r"[A-Za-z]+", content)) >= 5 or len(re.findall(rf"[{HAN}]", content)) >= 6
    if (len(earlier) >= 2 or len(earlier) == 1 and sentence) and all(ln[-1:] in ".!?。！？;；" for ln in earlier) \
            and OPEN_END_RE.search(content):
        return ("every earlier list item ends with punctuation but the last one stops" if len(earlier) > 1 else
                "the list item before the last ends with punctuation but the last one stops mid-sentence")
    return None


def _dangling(text: str, cfg: CompletenessConfig, min_words: int = 3) -> str | None:
    """The word a text ends on when no sentence can end with it (and the text has no closing punctuation)."""
    line = text.rstrip().rsplit("\n", 1)[-1]
    if not re.search(r"[\w\u4e00-\u9fff]$", line):
        return None
    latin = re.findall(r"[A-Za-z]+", line)
    if latin and re.search(r"[A-Za-z]$", line):
        if len(latin) >= min_words and latin[-1] in cfg.dangling_words:
            return latin[-1]
        return None
    if len(re.findall(r"[\u4e00-\u9fff]", line)) < 4 or line.endswith(COMPOUNDS):
        return None
    return next((w for w in sorted(cfg.dangling_words, key=len, reverse=True) if not w.isascii() and line.endswith(w)), None)


def _tail(answer: str, start: int) -> str:
    start = max(0, min(start, len(answer) - EXCERPT))
    return ("..." if start else "") + answer[start:][:200]


def _answer_fields(batch: Dataset, ids: pl.Series) -> dict[int, str | None]:
    """Per record id: the source field of its last answer (`output`, `conversations[5]`)."""
    rows = batch.frame.filter(pl.col("id").is_in(ids.implode()))
    return {row["id"]: next((name for name, role, _ in reversed(text_fields(row)) if role == "assistant"), None)
            for row in rows.iter_rows(named=True)}
