"""leakage.*: training records that contain an eval set (exact, near or shared n-grams), answers already given in
their prompt, and answers that cite internal material.

Contamination is judged per training record, strongest evidence first: an exact copy of an eval item
(`eval_exact`), else a near copy of one (`eval_near`, MinHash), else a shared run of n tokens
(`eval_overlap`, GPT-3's 13-gram decontamination); a record gets one of the three, naming the eval
file and line it matched.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np
import polars as pl

from datakit.measure.normal import normalised
from datakit.measure.parallel import map_batches
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message

E, W = Severity.error, Severity.warning

# Scripts written without spaces (CJK ideographs, kana) are compared character by character, the rest by words.
_CJK = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_CJK_RUST = "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _CJK)
_CJK_PY = "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in _CJK)
_TOKEN = rf"[{_CJK_RUST}]|[^\W_{_CJK_RUST}]+"  # polars (Rust regex): what is compared
_TOKEN_SPANS = re.compile(rf"[{_CJK_PY}]|[^\W_{_CJK_PY}]+")  # Python: where those tokens sit, for excerpts
_IS_CJK = re.compile(rf"[{_CJK_PY}]")
# Polynomial hash of token windows (uint64, wrapping around); a window whose anchor hash hits is then confirmed
# against the units' own tuple hashes, so a false match needs two independent 64-bit collisions.
_BASE = np.uint64(1_000_003)
# Characters of training text tokenised and hashed per vectorised batch: bounds memory on large files.
BATCH_CHARS = 8_000_000


def comparison_text(text: str | None) -> str:
    """The text as compared: NFKC (full-width to ASCII, ligatures split) and lower case."""
    return unicodedata.normalize("NFKC", text or "").lower()


def token_lists(texts: Sequence[str | None]) -> pl.Series:
    """Comparison tokens of each text: a word per run of letters and digits, one token per CJK or kana character;
    punctuation and spacing are ignored, so re-punctuated or re-wrapped copies still match."""
    return pl.Series([comparison_text(t) for t in texts], dtype=pl.String).str.extract_all(_TOKEN)


def _span_text(text: str, toks: list[str], first: int, last: int) -> str:
    """The text from token `first` to `last` (inclusive) as written (after NFKC); the tokens joined by spaces when
    the two regex engines disagree on a script (marks in Indic scripts)."""
    shown = unicodedata.normalize("NFKC", text)
    lower = shown.lower()
    spans = [m.span() for m in _TOKEN_SPANS.finditer(lower)]
    if len(spans) != len(toks) or len(lower) != len(shown):
        return " ".join(toks[first:last + 1])
    return shown[spans[first][0]:spans[last][1]]


def _window_hashes(ids: np.ndarray, m: int) -> np.ndarray:
    """Polynomial hash of every window of `m` consecutive ids, vectorised over the whole array."""
    n = len(ids) - m + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(m):
            h = h * _BASE + (ids[k:k + n] + 2).astype(np.uint64)
    return h


def _clean_windows(ids: np.ndarray, m: int) -> np.ndarray:
    """True for windows of `m` ids holding no -1 (a token no eval text has, or the end of a text)."""
    bad = np.concatenate([[0], np.cumsum(ids < 0)])
    return (bad[m:] - bad[:-m]) == 0


def _char_batches(texts: Sequence[str]) -> Iterable[tuple[int, int]]:
    lo, size = 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= BATCH_CHARS or i == len(texts) - 1:
            yield lo, i + 1
            lo, size = i + 1, 0


class NgramIndex:
    """The n-grams of a set of eval texts, to find which of them a training text shares.

    Eval texts of at least n tokens contribute every n-gram; shorter ones of at least n/2 tokens count as a
    whole (GPT-3 counted a short example as overlapping when all of it was found). n is `n_word` for texts
    in spaced scripts and `n_cjk` (characters) for Chinese/Japanese-dominant ones. An n-gram taken from inside a
    longer text counts only when a third of its length is distinct telling tokens (words of 3+ characters, CJK
    characters): 13 tokens of a loop header or of numbers are shared by unrelated code and tables, not evidence
    of contamination (a whole eval text always counts). Every unit is keyed by its first `anchor` tokens, so
    training texts are scanned once, vectorised, whatever the unit lengths.
    """

    def __init__(self, texts: Sequence[tuple[int, str]], n_word: int, n_cjk: int):
        self.anchor = math.ceil(min(n_word, n_cjk) / 2)
        vocab: dict[str, int] = {}
        self.units: dict[int, int] = {}  # hash of the unit's id tuple -> ref of the first eval text holding it
        anchor_lengths: dict[int, set[int]] = {}
        for (ref, _), toks in zip(texts, token_lists([t for _, t in texts]).to_list()):
            n = n_cjk if _cjk_dominant(toks) else n_word
            if len(toks) < math.ceil(n / 2):
                continue
            ids = [vocab.setdefault(t, len(vocab)) for t in toks]
            telling = [t if len(t) >= 3 or _IS_CJK.match(t) else None for t in toks]
            length = min(n, len(ids))
            heads = _window_hashes(np.array(ids, dtype=np.int64), self.anchor).tolist()
            for i in range(len(ids) - length + 1):
                if length < len(ids) and 3 * len(set(telling[i:i + length]) - {None}) < length:
                    continue  # boilerplate inside a longer text: `for i in range(1, n + 1)`, a table of numbers
                self.units.setdefault(hash(tuple(ids[i:i + length])), ref)
                anchor_lengths.setdefault(heads[i], set()).add(length)
        self._vocab = (pl.Series(list(vocab), dtype=pl.String), pl.Series(list(vocab.values()), dtype=pl.Int64))
        self.anchor_lengths = {k: sorted(v) for k, v in anchor_lengths.items()}
        self._anchors = np.array(sorted(anchor_lengths), dtype=np.uint64)

    def matches(self, texts: Sequence[str]) -> list[list[tuple[int, int, int]]]:
        """For each text, every (start token, length, ref) of an eval unit it contains."""
        out: list[list[tuple[int, int, int]]] = [[] for _ in texts]
        if self.units:
            for lo, hi in _char_batches(texts):
                self._scan(texts[lo:hi], out[lo:hi])
        return out

    def _scan(self, texts: Sequence[str], out: list[list[tuple[int, int, int]]]) -> None:
        """Hash every anchor-sized window of the batch at once; confirm the few that hit an eval anchor."""
        toks = token_lists(texts)
        lens = toks.list.len().to_numpy().astype(np.int64)
        ids = toks.explode().drop_nulls().replace_strict(*self._vocab, default=-1, return_dtype=pl.Int64).to_numpy()
        flat = np.full(int(lens.sum()) + len(texts), -1, dtype=np.int64)  # -1 after each text: windows stop there
        flat[np.arange(ids.size) + np.repeat(np.arange(len(texts)), lens)] = ids
        starts = np.concatenate([[0], np.cumsum(lens + 1)])
        heads = _window_hashes(flat, self.anchor)
        if not heads.size or not self._anchors.size:
            return
        at = np.minimum(np.searchsorted(self._anchors, heads), self._anchors.size - 1)
        for pos in np.nonzero((self._anchors[at] == heads) & _clean_windows(flat, self.anchor))[0].tolist():
            t = int(np.searchsorted(starts, pos, side="right")) - 1
            for length in self.anchor_lengths[int(heads[pos])]:
                window = flat[pos:pos + length].tolist()
                if len(window) == length and -1 not in window and (ref := self.units.get(hash(tuple(window)))) is not None:
                    out[t].append((pos - int(starts[t]), length, ref))


def _cjk_dominant(toks: list[str]) -> bool:
    return bool(toks) and sum(1 for t in toks if _IS_CJK.match(t)) * 2 >= len(toks)


def _best_overlap(found: list[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """(ref, shared tokens, first, last token of the longest shared run) for the eval text sharing the most tokens."""
    covered: dict[int, set[int]] = {}
    for start, length, ref in found:
        covered.setdefault(ref, set()).update(range(start, start + length))
    ref = min(covered, key=lambda r: (-len(covered[r]), r))
    positions = sorted(covered[ref])
    best = (positions[0], positions[0])
    run_start = positions[0]
    for prev, cur in zip(positions, positions[1:] + [None]):
        if cur != prev + 1:
            if prev - run_start > best[1] - best[0]:
                best = (run_start, prev)
            run_start = cur
    return ref, len(positions), best[0], best[1]


def answer_shares(frame: pl.DataFrame, run: int, min_tokens: int) -> pl.DataFrame:
    """Per record (`id`, `prompt`, `response`) with at least `min_tokens` response tokens: `tokens` and `share`, the
    share of response tokens inside a run of `run` tokens also found in the prompt (a response shorter than `run`
    counts whole). Runs, not single words: a rewrite reuses its input's words, a copied answer its sentences."""
    schema = {"id": pl.Int64, "tokens": pl.UInt32, "share": pl.Float64}
    out = [pl.DataFrame(schema=schema)]
    for part in frame.iter_slices(50_000):
        t = part.select("id", p=token_lists(part["prompt"].to_list()), r=token_lists(part["response"].to_list()))
        t = t.with_columns(tokens=pl.col("r").list.len()).filter(pl.col("tokens") >= min_tokens)
        short = t.filter(pl.col("tokens") < run).select(
            "id", "tokens", share=_spaced("p").str.contains(_spaced("r"), literal=True).cast(pl.Float64))
        long = t.filter(pl.col("tokens") >= run)
        hits = _grams(long, "r", run).join(_grams(long, "p", run).select("id", "gram").unique(), on=["id", "gram"],
                                           how="semi")
        covered = (hits.select("id", c=pl.int_ranges("pos", pl.col("pos") + run)).explode("c").unique()
                   .group_by("id").len("covered"))
        out += [short, long.select("id", "tokens").join(covered, on="id", how="left").select(
            "id", "tokens", share=pl.col("covered").fill_null(0) / pl.col("tokens"))]
    return pl.concat([o.cast(schema) for o in out])


def _spaced(col: str) -> pl.Expr:
    """A token list as one string with a space before, between and after its tokens: whole-token containment."""
    return pl.concat_str(pl.lit(" "), pl.col(col).list.join(" "), pl.lit(" "))


def _grams(frame: pl.DataFrame, col: str, run: int) -> pl.DataFrame:
    """(`id`, `pos`, `gram`): every run of `run` consecutive tokens of the list column `col`, by start position."""
    words = frame.select("id", col, pos=pl.int_ranges(0, pl.col(col).list.len())).explode([col, "pos"])
    later = [pl.when(pl.col("id").shift(-j) == pl.col("id")).then(pl.col(col).shift(-j)) for j in range(run)]
    return words.select("id", "pos", gram=pl.concat_str(later, separator=" ")).drop_nulls("gram")


class LeakageRules(Rule):
    family: ClassVar[str] = "leakage"
    needs: ClassVar[tuple[str, ...]] = ("norm_hash", "minhash")
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("leakage.eval_exact", E, "A training record identical to an eval item makes that benchmark measure memory, "
                 "not skill.", "--against FILE", fix="drop"),
        RuleCode("leakage.eval_near", E, "A near copy of an eval item (reworded, re-punctuated) contaminates the benchmark "
                 "as surely as an exact one.", "near_threshold = 0.8", fix="drop"),
        RuleCode("leakage.eval_overlap", E, "A training text sharing a long run of words with an eval item (13 words, "
                 "GPT-3's decontamination rule) has seen part of the test.", "ngram = 13, cjk_ngram = 20", fix="drop"),
        RuleCode("leakage.answer_in_prompt", W, "When the answer is already in the prompt the model learns to copy its "
                 "input, not to answer.", "answer_in_prompt_share = 0.8"),
        RuleCode("leakage.internal_reference", W, "Answers citing internal documents, intranet URLs or personal file "
                 "paths cannot be verified by users and may leak internal material.", "internal_patterns"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        valid = batch.valid
        return concat_findings([
            self._contamination_findings(_contamination(valid, ctx), valid),
            self._answer_in_prompt(valid, ctx),
            self._internal_reference(valid, ctx),
        ])

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """The contaminated records of the batch: which eval record each matched, under which rule."""
        return found.filter(pl.col("rule").is_in(list(_EVAL_CODES))).select(
            pl.col("record_id").alias("id"), "rule", pl.col("related_source").alias("eval_source"),
            pl.col("related_line").alias("eval_line"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        """Per eval file: its records, and how many training records matched it under each rule."""
        found = state.collect(engine="streaming") if state is not None else pl.DataFrame(
            schema={"id": pl.Int64, "rule": pl.String, "eval_source": pl.String, "eval_line": pl.Int64})
        files = []
        for other in ctx.against:
            mine = found.filter(pl.col("eval_source") == other.path)
            files.append({
                "file": other.path,
                "records": other.frame.height,
                "valid_records": other.valid.height,
                "training_records_matched": mine["id"].n_unique(),
                "eval_records_matched": mine.select("eval_line").n_unique(),
                "by_rule": {r: n for r, n in mine.group_by("rule").len().sort("rule").iter_rows()},
            })
        cfg = ctx.config.leakage
        return empty_findings(), {"against": files, "ngram": cfg.ngram, "cjk_ngram": cfg.cjk_ngram,
                                  "near_threshold": cfg.near_threshold}

    # --- train/eval contamination ----------------------------------------------------------------------

    def _contamination_findings(self, found: pl.DataFrame, valid: pl.DataFrame) -> pl.DataFrame:
        if not found.height:
            return empty_findings()
        rows = found.join(valid.select("id", "source", "line"), on="id", how="left")
        frames = []
        for code, verb in _EVAL_CODES.items():
            mine = rows.filter(pl.col("rule") == code)
            frames.append(flag(
                mine, code_info(self, code),
                message("{} " + verb + " {} line {} ({}): training on an eval item inflates that benchmark's score. Drop "
                        "it (`datakit fix --against` does) or evaluate on another set.",
                        pl.col("field"), pl.col("eval_source"), pl.col("eval_line"), pl.col("detail")),
                field=pl.col("field"), excerpt=pl.col("excerpt"), detail=pl.col("detail"),
                related_line=pl.col("eval_line"), related_source=pl.col("eval_source")))
        return concat_findings(frames)

    # --- answers already in the prompt -----------------------------------------------------------------

    def _answer_in_prompt(self, valid: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config.leakage
        shares = answer_shares(valid.select("id", "prompt", "response"), cfg.answer_run, cfg.answer_min_tokens)
        rows = valid.join(shares.filter(pl.col("share") > cfg.answer_in_prompt_share), on="id").sort("id")
        percent = (pl.col("share") * 100).round(0).cast(pl.Int64).cast(pl.String) + "%"
        return flag(rows, code_info(self, "leakage.answer_in_prompt"),
                    message("{} of the response's {} tokens are copied from the prompt (runs of {}+ tokens): the model "
                            "learns to copy its input instead of answering. Expected for extraction tasks; otherwise "
                            "rewrite the answer or drop the record.", percent, pl.col("tokens"), str(cfg.answer_run)),
                    field="response", excerpt=pl.col("response"), detail=percent)

    # --- references to internal material ---------------------------------------------------------------

    def _internal_reference(self, valid: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        patterns = ctx.config.leakage.internal_patterns
        responses = [r or "" for r in valid["response"].to_list()]
        chunks = [(patterns, responses[i: i + _SEARCH_CHUNK]) for i in range(0, len(responses), _SEARCH_CHUNK)]
        spans = [span for part in map_batches(_first_matches, chunks, len(chunks)) for span in part]
        found = []
        for (rid, source, line), text, span in zip(valid.select("id", "source", "line").iter_rows(), responses, spans):
            if span is None:
                continue
            start, end = span
            matched = text[start:end]
            found.append({
                "rule": "leakage.internal_reference", "severity": W.value, "source": source, "line": line,
                "record_id": rid, "field": "response", "excerpt": text[max(0, start - 40):end + 40],
                "detail": matched[:100], "values": [matched[:60]],
                "template": "response cites internal material ('{}'): users cannot check it and it may leak what was "
                "meant to stay inside. Rewrite the answer without it, or drop the record if it is internal data.",
            })
        return findings_frame(found)


_SEARCH_CHUNK = 5_000  # responses per worker job: the patterns need Python's `re` (look-arounds), one text at a time


def _first_matches(job: tuple[list[str], list[str]]) -> list[tuple[int, int] | None]:
    """Span of the first pattern that matches each text (patterns tried in order), or None."""
    patterns, texts = [re.compile(p) for p in job[0]], job[1]
    return [next(((m.start(), m.end()) for p in patterns if (m := p.search(t))), None) for t in texts]


_EVAL_CODES = {"leakage.eval_exact": "is identical (ignoring case, width and spacing) to",
               "leakage.eval_near": "is a near copy of",
               "leakage.eval_overlap": "shares a long run of words with"}


def _contamination(valid: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
    """One row per contaminated training record: id, rule, field, eval_source, eval_line, detail, excerpt. The
    strongest evidence wins: exact, else near, else a shared n-gram."""
    evals = [e for e in ctx.against if e.valid.height]
    if not evals or not valid.height:
        return pl.DataFrame(schema=_MATCH_SCHEMA)
    exact = _exact(valid, evals)
    near = _near(valid.filter(~pl.col("id").is_in(exact["id"].implode())), evals, ctx)
    done = pl.concat([exact["id"], near["id"]])
    overlap = _overlap(valid.filter(~pl.col("id").is_in(done.implode())), evals, ctx)
    return pl.concat([exact, near, overlap], how="vertical").sort("id")


_MATCH_SCHEMA = {"id": pl.Int64, "rule": pl.String, "field": pl.String, "eval_source": pl.String, "eval_line": pl.Int64,
                 "detail": pl.String, "excerpt": pl.String}


def _eval_rows(evals: list[Dataset], *columns: str) -> pl.DataFrame:
    """The valid rows of every eval set, in --against order, with their set's position as `eval_order`."""
    return pl.concat([e.valid.select("source", "line", *columns).with_columns(pl.lit(k).alias("eval_order"))
                      for k, e in enumerate(evals)], how="vertical")


def _exact(valid: pl.DataFrame, evals: list[Dataset]) -> pl.DataFrame:
    """Training records whose normalised prompt equals an eval record's; the eval record whose response also
    matches is preferred, then the first in --against order."""
    asked = normalised("prompt") != ""
    ev = _eval_rows(evals, "prompt", "prompt_hash", "record_hash").filter(asked).rename(
        {"source": "eval_source", "line": "eval_line", "record_hash": "eval_record_hash"}).drop("prompt")
    joined = valid.filter(asked).select("id", "prompt", "prompt_hash", "record_hash").join(ev, on="prompt_hash", how="inner")
    if not joined.height:
        return pl.DataFrame(schema=_MATCH_SCHEMA)
    both = pl.col("record_hash") == pl.col("eval_record_hash")
    best = (joined.with_columns(both.alias("both"))
            .sort(["id", "both", "eval_order", "eval_line"], descending=[False, True, False, False])
            .unique("id", keep="first", maintain_order=True))
    return best.select(
        "id", pl.lit("leakage.eval_exact").alias("rule"), pl.lit("prompt").alias("field"), "eval_source", "eval_line",
        pl.when("both").then(pl.lit("prompt and response identical")).otherwise(pl.lit("prompt identical")).alias("detail"),
        pl.col("prompt").alias("excerpt"),
    )


def _near(valid: pl.DataFrame, evals: list[Dataset], ctx: RuleContext) -> pl.DataFrame:
    """Training records within near_threshold estimated Jaccard of an eval record: whole records (the `minhash`
    column, prompt + response) and prompts alone, since eval sets of bare questions (MT-Bench) have no answer
    to compare and a reworded eval question is contamination whatever answer follows it. Empty texts are left
    out: all empty texts are alike, and alike in nothing."""
    from datakit.measure.lsh import near_matches
    from datakit.measure.minhash import signatures

    config = ctx.config
    threshold = config.leakage.near_threshold
    said = (normalised("prompt") != "") | (normalised("response") != "")
    asked = normalised("prompt") != ""

    def record_sigs(f: pl.DataFrame) -> np.ndarray:
        return f["minhash"].to_numpy().reshape(f.height, -1)

    def prompt_sigs(f: pl.DataFrame) -> np.ndarray:
        return signatures(f["prompt"].to_list(), config.near_duplicate)

    def eval_side() -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
        """Per compared field, the eval rows that have it and their signatures: computed once per audit."""
        ev = _eval_rows(evals, "minhash", "prompt", "response").with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        return {field: (e, sigs(e)) for field, keep, sigs in (("record", said, record_sigs), ("prompt", asked, prompt_sigs))
                if (e := ev.filter(keep)).height}

    prepared = ctx.prepared("leakage.near", eval_side)
    train = valid.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    pairs = []
    for field, keep, sigs in (("record", said, record_sigs), ("prompt", asked, prompt_sigs)):
        q = train.filter(keep)
        if q.height and field in prepared:
            e, e_sigs = prepared[field]
            q_rows, e_rows = q["row"].to_list(), e["row"].to_list()
            pairs += [(q_rows[i], e_rows[j], sim, field) for i, j, sim in near_matches(sigs(q), e_sigs, threshold)]
    if not pairs:
        return pl.DataFrame(schema=_MATCH_SCHEMA)
    ev = next(iter(prepared.values()))[0] if len(prepared) == 1 else pl.concat([e for e, _ in prepared.values()]).unique("row")
    matched = pl.DataFrame(pairs, schema={"q": pl.Int64, "e": pl.Int64, "similarity": pl.Float64, "field": pl.String},
                           orient="row")
    best = (matched.join(ev.select(pl.col("row").alias("e"), "source", "line", "eval_order"), on="e")
            .join(train.select(pl.col("row").alias("q"), "id", "prompt"), on="q")
            .sort(["id", "similarity", "eval_order", "line", "field"], descending=[False, True, False, False, True])
            .unique("id", keep="first", maintain_order=True))
    return best.select(
        "id", pl.lit("leakage.eval_near").alias("rule"), "field",
        pl.col("source").alias("eval_source"), pl.col("line").alias("eval_line"),
        pl.format("{} estimated Jaccard {} >= {}", pl.col("field"), pl.col("similarity").round(2), pl.lit(threshold)).alias("detail"),
        pl.col("prompt").alias("excerpt"),
    )


def _overlap(valid: pl.DataFrame, evals: list[Dataset], ctx: RuleContext) -> pl.DataFrame:
    """Training prompts and responses sharing an n-gram (or a whole short eval text) with any eval text."""
    cfg = ctx.config.leakage

    def eval_index() -> tuple[list[tuple[str, int, str]], NgramIndex]:
        """Where each eval text came from, and their n-gram index: built once per audit."""
        refs: list[tuple[str, int, str]] = []
        texts: list[tuple[int, str]] = []
        for e in evals:
            for source, line, msgs in e.valid.select("source", "line", "messages").iter_rows():
                for m in msgs:
                    if m["role"] != "system" and m["content"]:
                        texts.append((len(refs), m["content"]))
                        refs.append((source, line, "response" if m["role"] == "assistant" else "prompt"))
        return refs, NgramIndex(texts, cfg.ngram, cfg.cjk_ngram)

    refs, index = ctx.prepared("leakage.ngrams", eval_index)
    rows = []
    for field in ("prompt", "response"):
        ids = valid["id"].to_list()
        values = valid[field].fill_null("").to_list()
        for rid, text, found in zip(ids, values, index.matches(values)):
            if not found:
                continue
            ref, shared, first, last = _best_overlap(found)
            toks = token_lists([text])[0].to_list()
            source, line, eval_field = refs[ref]
            rows.append({"id": rid, "rule": "leakage.eval_overlap", "field": field, "eval_source": source, "eval_line": line,
                         "detail": f"{last - first + 1} tokens in a row shared with the eval {eval_field}, {shared} in all",
                         "excerpt": _span_text(text, toks, first, last), "shared": shared})
    if not rows:
        return pl.DataFrame(schema=_MATCH_SCHEMA)
    # one finding per training record: the field sharing the most with an eval text
    best = (pl.DataFrame(rows).sort(["id", "shared"], descending=[False, True])
            .unique("id", keep="first", maintain_order=True))
    return best.select(list(_MATCH_SCHEMA)).cast(_MATCH_SCHEMA)
