"""balance.*: is every class of the label field common enough to be learnt, and is each label spelt one way?

Counts are of the labels as written: 'closed\u00a0qa' (with a non-breaking space, as in BELLE) is its own
class to a trainer, so it is counted apart and reported as a variant of 'closed qa'. Without a label
field there is nothing to balance; the summary then shows how prompts open, so the report still says
what the data is about.
"""
from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import ClassVar

import polars as pl

from schemas.config import AuditConfig
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message
from validators.diversity import opening, prompts

W = Severity.warning
INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff"  # zero-width characters: invisible, yet part of the label
INVISIBLE = f"[{INVISIBLE_CHARS}]"
# Cyrillic and Greek letters drawn like Latin ones (a subset of Unicode TR39's confusables): 'positіve' with a
# Cyrillic і reads as 'positive' but is another class to a trainer.
LOOKALIKE_FROM = "аеорсухіјѕԁһԛԝАВЕКМНОРСТХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧο"
LOOKALIKE_TO = "aeopcyxijsdhqwABEKMHOPCTXIJSABEZHIKMNOPTYXo"
TOP_OPENINGS = 15  # openings listed in the summary when there is no label field


def canonical(label: pl.Expr) -> pl.Expr:
    """How a label reads: Unicode NFKC (a non-breaking space becomes a space), invisible characters dropped,
    look-alike Cyrillic and Greek letters as the Latin ones, whitespace runs as one space, trimmed."""
    return (label.str.normalize("NFKC").str.replace_all(INVISIBLE, "")
            .str.replace_many(list(LOOKALIKE_FROM), list(LOOKALIKE_TO)).str.replace_all(r"\s+", " ").str.strip_chars())


def shown(label: str) -> str:
    """The label with invisible and non-ASCII space characters written as \\uXXXX, so 'closed\\u00a0qa' does not
    look like 'closed qa'."""
    return "".join(c if c == " " or (c.isprintable() and not c.isspace()) else f"\\u{ord(c):04x}" for c in label)


def _difference(label: str, target: str) -> str:
    """What separates a label from its canonical spelling, in words."""
    what = []
    spaces = sorted({unicodedata.name(c, f"U+{ord(c):04X}").lower() for c in label if c.isspace() and c != " "})
    if spaces:
        what.append(f"a {' and a '.join(spaces)} where a space belongs")
    if any(c in INVISIBLE_CHARS for c in label):
        what.append("invisible characters")
    if lookalikes := sorted({c for c in label if c in LOOKALIKE_FROM}):
        what.append("look-alike letters from another script (" + ", ".join(
            f"{c} {unicodedata.name(c).lower()}" for c in lookalikes) + ")")
        label = label.translate(str.maketrans(LOOKALIKE_FROM, LOOKALIKE_TO))
    if label != label.strip() or "  " in label:
        what.append("extra spaces")
    text = " ".join("".join(c for c in label if c not in INVISIBLE_CHARS).split())
    if unicodedata.normalize("NFKC", text) != text:
        what.append("Unicode form (full-width or compatibility characters)")
    if unicodedata.normalize("NFKC", text) != target:
        what.append("letter case")
    return " and ".join(what)


class BalanceRules(Rule):
    family: ClassVar[str] = "balance"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("balance.imbalanced", W, "A skewed class distribution (80/15/5) teaches the model to favour the large "
                 "classes; aim for roughly even shares.", "max_imbalance_ratio = 3 (largest/smallest)"),
        RuleCode("balance.class_too_small", W, "A class with fewer than 10-100 examples is barely learnt.", "min_per_class = 10"),
        RuleCode("balance.label_variant", W, "Labels that differ only by spaces, case, Unicode form or look-alike letters "
                 "('closed\\u00a0qa' vs 'closed qa', a Cyrillic і in 'positіve') split one class in two and slip past filters."),
        RuleCode("balance.missing_label", W, "A record without the label field belongs to no class: it is left out of "
                 "balancing and per-class evaluation."),
    )

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """With a label field: each valid record's label (and, on the batch's first row, the record's field names,
        shown if no record turns out to have the label). Without: how each prompt opens."""
        if not ctx.config.label_field:
            return prompts(batch).select(opening(pl.col("request"), 1, 2).alias("opening")).drop_nulls("opening")
        valid = batch.valid
        first = pl.int_range(pl.len()) == 0
        return valid.select("id", "line", "label", pl.when(first).then(pl.col("raw")).alias("raw"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config
        if not cfg.label_field:
            return empty_findings(), self._openings(state)
        valid = state.collect(engine="streaming") if state is not None else pl.DataFrame(
            schema={"id": pl.Int64, "line": pl.Int64, "label": pl.String, "raw": pl.String})
        valid = valid.with_columns(ctx.source_of().alias("source"))
        labelled = valid.filter(_has_label())
        missing = self._missing(ctx.path, valid.filter(~_has_label()), labelled.height, cfg.label_field)
        if labelled.height == 0:
            return missing, self._summary(valid, labelled, cfg)
        counts = _counts(labelled)
        found = concat_findings([missing, self._variants(labelled, cfg.label_field),
                                 findings_frame(self._distribution(ctx.path, counts, cfg))])
        return found, self._summary(valid, labelled, cfg)

    def _openings(self, state: pl.LazyFrame | None) -> dict:
        """Without a label field the report still says what the data is about: how prompts open."""
        rows = state.collect(engine="streaming") if state is not None else pl.DataFrame(schema={"opening": pl.String})
        counts = rows.group_by("opening").len().sort(["len", "opening"], descending=[True, False])
        top = dict(counts.head(TOP_OPENINGS).iter_rows())
        rest = rows.height - sum(top.values())
        return {"label_field": None, "openings": top | ({"(other)": rest} if rest else {}),
                "openings_of": "first word of each prompt (Chinese: a common opening or the first 2 characters), "
                               "shown because no label field was given (--label-field)"}

    def _summary(self, valid: pl.DataFrame, labelled: pl.DataFrame, cfg: AuditConfig) -> dict:
        counts = _counts(labelled)
        n = labelled.height
        out = {"label_field": cfg.label_field, "labelled": n, "missing": valid.height - n,
               "classes": dict(counts.select("label", "len").iter_rows()),
               "shares": {k: round(v / n, 4) for k, v in counts.select("label", "len").iter_rows()},
               "max_imbalance_ratio": cfg.balance.max_imbalance_ratio, "min_per_class": cfg.balance.min_per_class}
        if counts.height:
            (big, big_n), (small, small_n) = counts.row(0)[:2], counts.row(-1)[:2]
            out |= {"largest": {"label": big, "count": big_n, "share": round(big_n / n, 4)},
                    "smallest": {"label": small, "count": small_n, "share": round(small_n / n, 4)},
                    "imbalance_ratio": round(big_n / small_n, 2), "verdict": _verdict(counts, n, cfg)}
        variants = _variant_map(labelled)
        out["variants"] = {r["label"]: r["target"] for r in variants.iter_rows(named=True)}
        out["shown"] = {k: shown(k) for k in out["classes"] if shown(k) != k}
        return out

    def _missing(self, path: str, rows: pl.DataFrame, labelled: int, field: str) -> pl.DataFrame:
        info = code_info(self, "balance.missing_label")
        if rows.height == 0:
            return findings_frame([])
        if labelled == 0:
            seen = _fields(rows)
            return findings_frame([{
                "rule": info.code, "severity": info.severity.value, "source": path, "line": None, "record_id": None,
                "field": field, "detail": f"0 of {rows.height} records",
                "message": f"no record has a non-empty '{field}' field, so there are no classes to balance. Check "
                           f"--label-field{f' (fields seen: {seen})' if seen else ''}."}])
        return flag(rows, info, message("record has no '{}' label (missing, null or empty): it belongs to no class, so "
                                        "balancing and per-class evaluation leave it out. Add its label, or drop the record.",
                                        field), field=field)

    def _variants(self, labelled: pl.DataFrame, field: str) -> pl.DataFrame:
        variants = _variant_map(labelled)
        rows = labelled.join(variants, on="label")
        return flag(rows, code_info(self, "balance.label_variant"),
                    message("label '{}' differs from '{}' only by {}: a trainer counts it as a separate class and filters "
                              "on '{}' miss it. Rewrite it as '{}' in the source.", pl.col("shown"), pl.col("target"),
                              pl.col("why"), pl.col("target"), pl.col("target")),
                    field=field, excerpt=pl.col("shown"), detail=pl.format("canonical: {}", pl.col("target")))

    def _distribution(self, path: str, counts: pl.DataFrame, cfg: AuditConfig) -> list[dict]:
        field, bal = cfg.label_field, cfg.balance
        n = int(counts["len"].sum())
        base = {"source": path, "line": None, "record_id": None, "field": field}
        found = []
        (big, big_n), (_small, small_n) = counts.row(0)[:2], counts.row(-1)[:2]
        if counts.height > 1 and big_n / small_n > bal.max_imbalance_ratio:
            info = code_info(self, "balance.imbalanced")
            found.append(base | {
                "rule": info.code, "severity": info.severity.value, "excerpt": shown(big),
                "detail": f"ratio {big_n / small_n:.1f} > {bal.max_imbalance_ratio:g}",
                "message": _verdict(counts, n, cfg) + f". Rebalance with `datakit balance {path} --by {field} -o "
                           "balanced.jsonl` (caps the large classes), or add examples of the small ones."})
        info = code_info(self, "balance.class_too_small")
        for label, count in counts.filter(pl.col("len") < bal.min_per_class).select("label", "len").iter_rows():
            found.append(base | {
                "rule": info.code, "severity": info.severity.value, "excerpt": shown(label),
                "detail": f"{count} < {bal.min_per_class}",
                "message": f"class '{shown(label)}' has {count} record(s), under the per-class minimum of "
                           f"{bal.min_per_class} (10-100 recommended): the model will barely learn it. Add examples, or "
                           "merge it into a related class."})
        return found


def label_variant_groups(labels: Iterable[str]) -> list[list[str]]:
    """Labels that are one class spelt several ways (the same canonical, case-folded form), in groups of two or more."""
    frame = pl.DataFrame({"label": list(labels)}, schema={"label": pl.String})
    keyed = frame.with_columns(canonical(pl.col("label")).str.to_lowercase().alias("key"))
    return [g for g in keyed.group_by("key", maintain_order=True).agg("label")["label"].to_list() if len(g) > 1]


def _has_label() -> pl.Expr:
    return pl.col("label").is_not_null() & (canonical(pl.col("label")) != "")


def _counts(labelled: pl.DataFrame) -> pl.DataFrame:
    """Records per label as written, largest first."""
    return labelled.group_by("label").len().sort(["len", "label"], descending=[True, False])


def _verdict(counts: pl.DataFrame, n: int, cfg: AuditConfig) -> str:
    """One sentence: balanced or not, naming the largest and smallest classes and their shares."""
    (big, big_n), (small, small_n) = counts.row(0)[:2], counts.row(-1)[:2]
    if counts.height == 1:
        return f"one class only ('{shown(big)}', {big_n} records): nothing to balance"
    ratio, limit = big_n / small_n, cfg.balance.max_imbalance_ratio
    shares = f"the largest class '{shown(big)}' has {big_n / n:.1%} of records ({big_n}), the smallest '{shown(small)}' " \
             f"{small_n / n:.1%} ({small_n})"
    if ratio > limit:
        return (f"unbalanced: {shares}, a ratio of {ratio:.1f} over the limit of {limit:g}. Like an 80/15/5 split, this "
                "teaches the model to favour the large classes; aim for roughly even shares")
    return f"balanced enough: {shares}, a ratio of {ratio:.1f} within the limit of {limit:g}"


def _variant_map(labelled: pl.DataFrame) -> pl.DataFrame:
    """label -> target, why, shown for every spelling that is not its class's canonical one.

    Spellings with the same canonical, case-folded form are one class; its canonical spelling is the most
    frequent clean one (already in canonical form), else the canonical form of the most frequent.
    """
    spellings = (labelled.group_by("label").len()
                 .with_columns(canonical(pl.col("label")).alias("clean"))
                 .with_columns(pl.col("clean").str.to_lowercase().alias("key"), (pl.col("clean") == pl.col("label")).alias("is_clean"))
                 .sort(["is_clean", "len", "label"], descending=[True, True, False]))
    targets = spellings.group_by("key", maintain_order=True).agg(
        pl.when(pl.col("is_clean").first()).then(pl.col("label").first()).otherwise(pl.col("clean").first()).alias("target"))
    variants = spellings.join(targets, on="key").filter(pl.col("label") != pl.col("target"))
    return pl.DataFrame([{"label": label, "target": target, "why": _difference(label, target), "shown": shown(label)}
                         for label, target in variants.select("label", "target").iter_rows()],
                        schema={"label": pl.String, "target": pl.String, "why": pl.String, "shown": pl.String})


def _fields(rows: pl.DataFrame) -> str:
    """Field names of the first record, to suggest the right --label-field."""
    try:
        obj = json.loads(rows["raw"][0])
    except (TypeError, ValueError):
        return ""
    return ", ".join(list(obj)[:12]) if isinstance(obj, dict) else ""
