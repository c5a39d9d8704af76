"""Train/eval contamination of each training record: its closest eval record by exact prompt, near copy (MinHash)
or a shared long run of tokens (GPT-3's 13-gram decontamination), strongest evidence first.

The eval sets are indexed once per audit (`EvalIndex`, shipped to every batch worker); each batch is then matched
record by record, so a record's answer never depends on the batch it is in. Columns added ("contamination"):
`eval_rule` (leakage.eval_exact | eval_near | eval_overlap, null when clean), `eval_field`, `eval_source`,
`eval_line`, `eval_detail`, `eval_excerpt`.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from datakit.measure.lsh import near_matches
from datakit.measure.minhash import signatures
from datakit.measure.normal import normalised
from schemas.config import AuditConfig
from schemas.dataset import Dataset

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


@dataclass
class EvalIndex:
    """The eval sets (`--against`) prepared once: rows to match prompts exactly, signatures to match near copies
    (whole records and prompts alone), and the n-gram index with where each indexed text came from."""

    exact: pl.DataFrame
    near: dict[str, tuple[pl.DataFrame, np.ndarray]]
    refs: list[tuple[str, int, str]]
    ngrams: NgramIndex

    @classmethod
    def build(cls, evals: list[Dataset], config: AuditConfig) -> EvalIndex:
        """From eval sets already measured ("norm_hash", "minhash")."""
        evals = [e for e in evals if e.valid.height]
        if not evals:  # eval sets without one readable record: nothing to match (the index is `empty`)
            return cls(pl.DataFrame(), {}, [], NgramIndex([], config.leakage.ngram, config.leakage.cjk_ngram))
        asked = normalised("prompt") != ""
        said = asked | (normalised("response") != "")
        exact = _eval_rows(evals, "prompt", "prompt_hash", "record_hash").filter(asked).rename(
            {"source": "eval_source", "line": "eval_line", "record_hash": "eval_record_hash"}).drop("prompt")
        rows = _eval_rows(evals, "minhash", "prompt", "response").with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        near = {}
        for field, keep in (("record", said), ("prompt", asked)):
            chosen = rows.filter(keep)
            if chosen.height:
                near[field] = (chosen.drop("minhash", "response"), _record_sigs(chosen) if field == "record"
                               else signatures(chosen["prompt"].to_list(), config.near_duplicate))
        refs: list[tuple[str, int, str]] = []
        texts: list[tuple[int, str]] = []
        for e in evals:
            for source, line, msgs in e.valid.select("source", "line", "messages").iter_rows():
                for m in msgs:
                    if m["role"] != "system" and m["content"]:
                        texts.append((len(refs), m["content"]))
                        refs.append((source, line, "response" if m["role"] == "assistant" else "prompt"))
        return cls(exact, near, refs, NgramIndex(texts, config.leakage.ngram, config.leakage.cjk_ngram))

    @property
    def empty(self) -> bool:
        return not self.refs and self.exact.height == 0


def add_contamination(ds: Dataset, config: AuditConfig, evals: EvalIndex | None) -> None:
    """Adds the contamination columns (see the module docstring); all null without eval sets."""
    valid = ds.frame.filter(pl.col("valid"))
    found = _contamination(valid, evals, config) if evals is not None and not evals.empty and valid.height \
        else pl.DataFrame(schema=_MATCH_SCHEMA)
    ds.frame = ds.frame.join(found.rename({c: f"eval_{c}" for c in ("rule", "field", "detail", "excerpt")}),
                             on="id", how="left", maintain_order="left")


def _contamination(valid: pl.DataFrame, evals: EvalIndex, config: AuditConfig) -> pl.DataFrame:
    """One row per contaminated training record: id, rule, field, eval_source, eval_line, detail, excerpt. The
    strongest evidence wins: exact, else near, else a shared n-gram."""
    exact = _exact(valid, evals)
    near = _near(valid.filter(~pl.col("id").is_in(exact["id"].implode())), evals, config)
    done = pl.concat([exact["id"], near["id"]])
    overlap = _overlap(valid.filter(~pl.col("id").is_in(done.implode())), evals)
    return pl.concat([exact, near, overlap], how="vertical").sort("id")


def _record_sigs(f: pl.DataFrame) -> np.ndarray:
    return f["minhash"].to_numpy().reshape(f.height, -1)


_MATCH_SCHEMA = {"id": pl.Int64, "rule": pl.String, "field": pl.String, "eval_source": pl.String, "eval_line": pl.Int64,
                 "detail": pl.String, "excerpt": pl.String}


def _eval_rows(evals: list[Dataset], *columns: str) -> pl.DataFrame:
    """The valid rows of every eval set, in --against order, with their set's position as `eval_order`."""
    return pl.concat([e.valid.select("source", "line", *columns).with_columns(pl.lit(k).alias("eval_order"))
                      for k, e in enumerate(evals)], how="vertical")


def _exact(valid: pl.DataFrame, evals: EvalIndex) -> pl.DataFrame:
    """Training records whose normalised prompt equals an eval record's; the eval record whose response also
    matches is preferred, then the first in --against order."""
    asked = normalised("prompt") != ""
    joined = valid.filter(asked).select("id", "prompt", "prompt_hash", "record_hash").join(evals.exact, on="prompt_hash",
                                                                                           how="inner")
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


def _near(valid: pl.DataFrame, evals: EvalIndex, config: AuditConfig) -> pl.DataFrame:
    """Training records within near_threshold estimated Jaccard of an eval record: whole records (the `minhash`
    column, prompt + response) and prompts alone, since eval sets of bare questions (MT-Bench) have no answer
    to compare and a reworded eval question is contamination whatever answer follows it. Empty texts are left
    out: all empty texts are alike, and alike in nothing."""
    threshold = config.leakage.near_threshold
    said = (normalised("prompt") != "") | (normalised("response") != "")
    asked = normalised("prompt") != ""

    def prompt_sigs(f: pl.DataFrame) -> np.ndarray:
        return signatures(f["prompt"].to_list(), config.near_duplicate)

    prepared = evals.near
    train = valid.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    pairs = []
    for field, keep, sigs in (("record", said, _record_sigs), ("prompt", asked, prompt_sigs)):
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


def _overlap(valid: pl.DataFrame, evals: EvalIndex) -> pl.DataFrame:
    """Training prompts and responses sharing an n-gram (or a whole short eval text) with any eval text."""
    refs, index = evals.refs, evals.ngrams
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
