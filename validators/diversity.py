"""diversity.*: are the prompts varied: how they open, how many distinct words they use, and fill-in templates.

All three look at the user's request (an Alpaca instruction, else the first user turn), not at the
system prompt many datasets repeat on every record, and are CJK-aware: Chinese and Japanese have no
spaces, so an opening is counted in characters and a character is a token.
"""
from __future__ import annotations

import math
from typing import ClassVar

import polars as pl

from schemas.config import DiversityConfig
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info

W = Severity.warning

CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
# Common Chinese openings counted whole: 为什么 is one phrasing, not 为什; 请 (please) leads any request.
OPENINGS = ("为什么", "怎么样", "是什么", "有哪些", "如何", "怎么", "什么", "哪些", "请问", "请", "写")
TOKEN = rf"[{CJK}]|[\p{{L}}\p{{N}}]+"
MIN_GROUP = 5  # records a phrasing or template needs before its share is judged: 2 of 4 prompts says nothing
MIN_SAMPLE = 1000  # tokens distinct-n needs to mean something
EXAMPLES = 5  # example lines named in a dataset-level finding


def request() -> pl.Expr:
    """The user's request: the Alpaca instruction (its input is the part that varies), else the first user turn."""
    first_user = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")).list.first()
    return pl.coalesce(pl.col("instruction"), first_user)


def opening(text: pl.Expr, words: int, chars: int) -> pl.Expr:
    """How a text opens: its first `words` words lower-cased or, when it starts with a CJK character, a common
    Chinese opening (如何, 为什么, 请) or its first `chars` characters. Leading punctuation is skipped."""
    head = text.str.slice(0, 300).str.replace(r"^[^\p{L}\p{N}]+", "")
    cjk = head.str.extract(rf"^((?:{'|'.join(OPENINGS)})|[{CJK}]{{1,{chars}}})", 1)
    latin = head.str.to_lowercase().str.extract_all(r"[\p{L}\p{N}'’]+").list.head(words).list.join(" ")
    found = pl.when(head.str.contains(rf"^[{CJK}]")).then(cjk).otherwise(latin)
    return pl.when(found != "").then(found)


def template(text: pl.Expr) -> pl.Expr:
    """A prompt with what usually varies in a fill-in template masked: quoted spans, numbers, and capitalised
    names after the first word (`Translate "x" into French` and `Translate "y" into German` are one template)."""
    quoted = (r"\"[^\"\n]{0,200}\"|“[^”]{0,200}”|‘[^’]{0,200}’|「[^」]{0,200}」|『[^』]{0,200}』|《[^》]{0,200}》"
              r"|(?:^|\s)'[^'\n]{1,200}'")
    return (text.str.replace_all(quoted, " ‹q› ")
            .str.replace_all(r"\p{N}+(?:[.,:/-]\p{N}+)*", "‹n›")
            .str.replace_all(r"([\p{Ll}\p{N},;:]\s+)\p{Lu}[\p{L}\p{N}-]+(?:\s+\p{Lu}[\p{L}\p{N}-]+)*", "${1}‹e›")
            .str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars())


def prompts(ds: Dataset) -> pl.DataFrame:
    """Valid records with a non-blank request: id, source, line, request."""
    return (ds.valid.select("id", "source", "line", request().alias("request"))
            .filter(pl.col("request").str.contains(r"[\p{L}\p{N}]")))


def distinct_n(texts: pl.Series, budget: int, step: int | None = None) -> dict:
    """distinct-1 and distinct-2 (unique uni-/bigrams over all of them) of the texts' tokens, on every k-th text
    so that about `budget` tokens are counted whatever the dataset's size: the ratios fall as text grows, so
    only equal-sized samples compare."""
    tokens = pl.DataFrame({"t": texts.str.to_lowercase().str.extract_all(TOKEN)}).with_columns(pl.col("t").list.len().alias("n"))
    total = int(tokens["n"].sum())
    if total == 0:
        return {"distinct_1": None, "distinct_2": None, "sample_tokens": 0}
    step = step or max(1, math.ceil(total / budget))
    sample = tokens.gather_every(step)
    uni = sample.select(pl.col("t").explode().drop_nulls())["t"]
    bi = sample.select(pl.col("t").list.eval(pl.concat_str([pl.element(), pl.element().shift(-1)], separator=" "))
                       .explode().drop_nulls())["t"]
    return {"distinct_1": round(uni.n_unique() / uni.len(), 3) if uni.len() else None,
            "distinct_2": round(bi.n_unique() / bi.len(), 3) if bi.len() else None,
            "sample_tokens": uni.len()}


class DiversityRules(Rule):
    family: ClassVar[str] = "diversity"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("diversity.leading_phrase", W, "When most prompts open the same way ('如何...', 'Write a...'), the model "
                 "learns that phrasing and handles others worse.", "max_leading_share = 0.3, leading_words = 2"),
        RuleCode("diversity.low_distinct", W, "Few distinct word pairs across prompts means the data repeats itself: more "
                 "records, little new to learn.", "min_distinct_2 = 0.3 over a 5,000-token sample"),
        RuleCode("diversity.repeated_template", W, "One fill-in template behind many prompts teaches its wording, not the task.",
                 "max_template_share = 0.05"),
    )

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per prompt: how it opens, its fill-in template (and a hash of it), a hash of the request, its token count
        (distinct-n samples by tokens) and the request itself (read back only for the sample)."""
        cfg = ctx.config.diversity
        rows = prompts(batch)
        return rows.select("id", "line", opening(pl.col("request"), cfg.leading_words, cfg.leading_words).alias("opening"),
                           template(pl.col("request")).alias("template"), pl.col("request").hash(seed=0).alias("request_hash"),
                           pl.col("request").str.to_lowercase().str.extract_all(TOKEN).list.len().cast(pl.Int64).alias("tokens"),
                           "request").with_columns(pl.col("template").hash(seed=0).alias("template_hash"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.diversity
        n = state.select(pl.len()).collect(engine="streaming").item() if state is not None else 0
        if n == 0:
            return empty_findings(), {"prompts": 0, "leading_words": cfg.leading_words, "leading_phrases": [],
                                      **distinct_n(pl.Series([], dtype=pl.String), cfg.distinct_sample_tokens), "templates": []}
        openings, templates = _openings(state), _templates(state)
        stats = _distinct_sample(state, cfg.distinct_sample_tokens)
        base = {"source": ctx.path, "line": None, "record_id": None, "field": "prompt"}
        found = [self._leading(base, group, n, cfg) for group in openings
                 if group["count"] >= MIN_GROUP and group["count"] / n > cfg.max_leading_share]
        found += [self._template(base, group, n, cfg) for group in templates
                  if group["count"] >= MIN_GROUP and group["count"] / n > cfg.max_template_share]
        if stats["sample_tokens"] >= MIN_SAMPLE and stats["distinct_2"] < cfg.min_distinct_2:
            info = code_info(self, "diversity.low_distinct")
            found.append(base | {
                "rule": info.code, "severity": info.severity.value,
                "detail": f"distinct-2 {stats['distinct_2']} < {cfg.min_distinct_2}; distinct-1 {stats['distinct_1']}",
                "message": f"prompts repeat the same words: only {stats['distinct_2']:.0%} of word pairs are distinct "
                           f"(distinct-2 over {stats['sample_tokens']} tokens; varied instruction data scores 0.6-0.85, this "
                           f"rule fires under {cfg.min_distinct_2}). Rewrite prompts in varied words, or add data from other "
                           "sources, before adding more of the same."})
        share = lambda k: round(k / n, 4) if n else 0.0
        summary = {
            "prompts": n,
            "leading_words": cfg.leading_words,
            "leading_phrases": [{"phrase": g["key"], "count": g["count"], "share": share(g["count"])} for g in openings[:10]],
            **stats,
            "templates": [{"template": g["key"], "count": g["count"], "share": share(g["count"]), "example_line": g["lines"][0]}
                          for g in templates[:5]],
        }
        return findings_frame(found), summary

    def _leading(self, base: dict, group: dict, total: int, cfg: DiversityConfig) -> dict:
        info = code_info(self, "diversity.leading_phrase")
        count, phrase = group["count"], group["key"]
        return base | {
            "rule": info.code, "severity": info.severity.value, "excerpt": phrase, "related_line": group["lines"][0],
            "detail": f"{count} of {total} prompts; e.g. lines {_lines(group)}",
            "message": f"{count / total:.0%} of prompts ({count} of {total}) open with '{phrase}', over the "
                       f"{cfg.max_leading_share:.0%} limit: the model learns that phrasing and handles other ways of asking "
                       "worse. Rephrase some of them (questions, commands, context first), or add prompts that open "
                       "differently."}

    def _template(self, base: dict, group: dict, total: int, cfg: DiversityConfig) -> dict:
        info = code_info(self, "diversity.repeated_template")
        count, tpl = group["count"], group["key"]
        return base | {
            "rule": info.code, "severity": info.severity.value, "excerpt": tpl[:200], "related_line": group["lines"][0],
            "detail": f"{count} of {total} prompts; e.g. lines {_lines(group)}",
            "message": f"{count / total:.0%} of prompts ({count} of {total}) are one template, '{tpl[:80]}' (quoted text, "
                       f"numbers and names masked as ‹q› ‹n› ‹e›), over the {cfg.max_template_share:.0%} limit: the model "
                       "learns the template's wording rather than the task. Vary the wording, or keep fewer of them."}


TOP_GROUPS = 50  # groups (openings, templates) looked at: the largest, by size then key


def _openings(state: pl.LazyFrame) -> list[dict]:
    """Prompts per opening phrase (groups of at least two), most frequent first."""
    return _top_groups(state.filter(pl.col("opening").is_not_null()), "opening")


def _templates(state: pl.LazyFrame) -> list[dict]:
    """Prompts per template that at least two different prompts fill (identical prompts are duplicate.*'s)."""
    return [g for g in _top_groups(state, "template") if g["requests"] > 1]


def _top_groups(state: pl.LazyFrame, key: str) -> list[dict]:
    """The TOP_GROUPS largest groups of `key` with more than one member (ties by key), each with its key, size, the
    number of different requests in it and its lines in order. Long keys (templates) are grouped by their hash, and
    only the candidates' texts are read back."""
    by = key + "_hash" if key == "template" else key
    sizes = (state.group_by(by).agg(pl.len().alias("count"), pl.col("request_hash").n_unique().alias("requests"))
             .filter(pl.col("count") > 1).collect(engine="streaming"))
    if sizes.height == 0:
        return []
    floor = sizes["count"].sort(descending=True)[min(TOP_GROUPS, sizes.height) - 1]
    candidates = sizes.filter(pl.col("count") >= floor)
    columns = list(dict.fromkeys([by, key, "line"]))
    members = (state.filter(pl.col(by).is_in(candidates[by].implode())).select(columns)
               .collect(engine="streaming").sort("line"))
    groups = (members.group_by(by, maintain_order=True).agg(*([pl.col(key).first()] if key != by else []), pl.col("line"))
              .join(candidates, on=by).sort(["count", key], descending=[True, False]).head(TOP_GROUPS))
    return [{"key": k, "count": c, "requests": r, "lines": lines}
            for k, c, r, lines in groups.select(key, "count", "requests", "line").iter_rows()]


def _distinct_sample(state: pl.LazyFrame, budget: int) -> dict:
    """distinct-n of every k-th prompt, k chosen from the total token count as `distinct_n` does; only the sampled
    prompts are read back."""
    total = state.select(pl.col("tokens").sum()).collect(engine="streaming").item() or 0
    step = max(1, math.ceil(total / budget)) if total else 1
    sample = (state.select("request").with_row_index("row").filter(pl.col("row") % step == 0)
              .collect(engine="streaming")["request"])
    return distinct_n(sample, budget, step=1)


def _lines(group: dict) -> str:
    shown = ", ".join(map(str, group["lines"][:EXAMPLES]))
    return shown + (f" (+{group['count'] - EXAMPLES} more)" if group["count"] > EXAMPLES else "")
