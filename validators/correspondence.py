"""correspondence.*: does each answer belong to its own instruction ("instruction和output对应正确")?

Without a model the judge is lexical: how much of a prompt's weighted vocabulary (TF-IDF weights over words and CJK
character pairs) an answer contains, its *coverage* of that prompt. An answer covers its own prompt far better than a
random one; an answer that covers another prompt several times better than its own was written for that prompt, which
is what shifted or shuffled columns look like. Per record, `state` keeps the hashed term ids of prompt and answer
(hashing needs no shared vocabulary, so batches are independent); `finish` weighs the terms by their document
frequency over all prompts and compares every answer with its own prompt, the prompts next to it (where a column
shifted by one puts the true one) and every k-th prompt of the dataset, reading the state in chunks (scipy sparse
products), so memory holds one chunk and the sample, never the dataset.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import polars as pl
from scipy import sparse

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message

W = Severity.warning
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
BUCKETS = 1 << 22  # hashed term ids: collisions between distinct words stay rare at millions of distinct terms
PROMPT_TERMS, ANSWER_TERMS = 64, 256  # distinct terms kept per text (its first ones): enough to judge relevance
MIN_TERMS = 3  # a prompt with fewer distinct terms says too little to be another answer's better match
MIN_ANSWERS = 20  # answers needed before a comparison with the others means anything
# Two answers that fit each other's prompts (a swap) need only this coverage and ratio each; each answer's best
# SWAP_CANDIDATES sampled prompts are tried.
SWAP_RELEVANCE, SWAP_RATIO, SWAP_CANDIDATES = 0.1, 2.0, 5
CHUNK = 4096  # answers compared at a time in `finish`
STOP = ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for",
        "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me",
        "my", "no", "not", "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them", "then",
        "there", "these", "they", "this", "to", "too", "was", "we", "were", "what", "when", "where", "which", "who",
        "why", "will", "with", "would", "you", "your"]
BINS = [round(0.1 * k, 1) for k in range(11)]


def terms(text: pl.Expr, keep: int) -> pl.Expr:
    """The text's first `keep` distinct terms as hashed ids: lower-cased words outside CJK (stop words dropped) and
    overlapping CJK character pairs (Chinese has no spaces; a pair is about a word)."""
    low = text.fill_null("").str.to_lowercase()
    words = low.str.extract_all(rf"[[\p{{L}}\p{{N}}]--[{CJK}]]{{2,}}").list.set_difference(pl.lit(STOP))
    runs = low.str.extract_all(rf"[{CJK}]{{2,}}")
    pair = rf"[{CJK}]{{2}}"  # runs joined by spaces: matching restarts at each run, so these are each run's pairs
    pairs = pl.concat_list(runs.list.join(" ").str.extract_all(pair),
                           runs.list.eval(pl.element().str.slice(1)).list.join(" ").str.extract_all(pair))
    return (pl.concat_list(words, pairs).list.eval(pl.element().hash(seed=0) % BUCKETS).list.unique(maintain_order=True)
            .list.head(keep).cast(pl.List(pl.UInt32)))


class CorrespondenceRules(Rule):
    family: ClassVar[str] = "correspondence"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("correspondence.unrelated_answer", W, "An answer that fits another instruction far better than its own "
                 "teaches the model to answer a different question than the one asked.",
                 "another prompt's coverage >= 0.5 and >= 3x the own prompt's"),
        RuleCode("correspondence.columns_shifted", W, "When many answers fit other instructions, or answers are no closer "
                 "to their own instruction than to random ones, the columns were shifted or shuffled: the whole set teaches "
                 "wrong answers.", "shifted_share = 0.2"),
        RuleCode("correspondence.high_ifd", W, "With --score-model: an answer the instruction does not help a language model "
                 "predict (IFD >= 1) teaches little about following instructions, or belongs to another one.",
                 "max_ifd = 1.0, only with --score-model"),
        RuleCode("correspondence.below_top_ifd", Severity.info, "With --keep-top-ifd: a record outside the chosen share of the "
                 "most instructive ones (highest IFD under max_ifd); `datakit fix` rejects it.",
                 "only with --score-model and keep_top_ifd"),
    )

    def fix_for(self, code: RuleCode, ctx: RuleContext) -> str | None:
        """With keep_top_ifd, `datakit fix` keeps only the chosen records: the others and the high-IFD ones are dropped."""
        ranked = ctx.config.correspondence.keep_top_ifd is not None
        return "drop" if ranked and code.code in ("correspondence.high_ifd", "correspondence.below_top_ifd") else code.fix

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per valid record with a prompt and an answer: the hashed term ids of each (and the model's scores)."""
        scores = [c for c in ("perplexity", "ifd") if c in batch.frame.columns]  # with --score-model
        rows = batch.valid.select("id", "line", terms(pl.col("prompt"), PROMPT_TERMS).alias("p"),
                                  terms(pl.col("response"), ANSWER_TERMS).alias("r"), *scores)
        return rows.filter((pl.col("p").list.len() > 0) & (pl.col("r").list.len() > 0))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.correspondence
        n = state.select(pl.len()).collect(engine="streaming").item() if state is not None else 0
        model_found, model_summary = empty_findings(), {}
        if state is not None and "ifd" in state.collect_schema().names():
            model_found, model_summary = self._model_scores(state, ctx)
        if n < MIN_ANSWERS:
            return model_found, {"answers_compared": n, "note": f"fewer than {MIN_ANSWERS} answers: not judged"} | model_summary
        idf = _idf(state, n)
        step = max(1, math.ceil(n / cfg.sample_prompts))
        sample = (state.with_row_index("row").filter(pl.col("row") % step == 0).select("row", "line", "p")
                  .collect(engine="streaming"))
        weighted = _weights(sample["p"], idf)
        sample_terms = sample["p"].list.len().to_numpy()
        chunks = [_score_chunk(state, start, n, idf, sample, weighted, sample_terms) for start in range(0, n, CHUNK)]
        scored, fits = pl.concat([c[0] for c in chunks]), pl.concat([c[1] for c in chunks])
        own_mean, base_mean = float(scored["own"].mean()), float(scored["baseline"].mean())
        clear = (pl.col("other") >= cfg.min_relevance) & (pl.col("other") >= cfg.ratio * pl.col("own"))
        share = scored.filter(clear).height / n
        # an answer found only as one of an exchanged pair names its partner instead of the prompt that fits it best
        swap = pl.col("partner_line").is_not_null() & ~clear
        scored = scored.join(_swapped(fits, scored), on="row", how="left", maintain_order="left").with_columns(
            pl.when(swap).then("partner_line").otherwise("other_line").alias("other_line"),
            pl.when(swap).then("partner_cov").otherwise("other").alias("other"), clear.alias("clear"))
        clear = pl.col("clear") | pl.col("partner_line").is_not_null()
        misaligned = share >= cfg.shifted_share or own_mean < 2 * base_mean
        flagged = scored.filter(clear | _misaligned(scored) if misaligned else clear)
        found = [flag(flagged.with_columns(ctx.source_of().alias("source")), code_info(self, "correspondence.unrelated_answer"),
                      message("this answer fits the prompt on line {} better than its own: it contains {} of that prompt's "
                              "weighted words and {} of its own. If the columns slipped, realign them; otherwise check that "
                              "the answer was meant for this instruction.", pl.col("other_line"),
                              _pct(pl.col("other")), _pct(pl.col("own"))),
                      field="response", related_line=pl.col("other_line"),
                      detail=pl.format("coverage of own prompt {}, of line {}'s {}", pl.col("own").round(3),
                                       pl.col("other_line"), pl.col("other").round(3)))]
        if misaligned:
            info = code_info(self, "correspondence.columns_shifted")
            found.append(findings_frame([{
                "rule": info.code, "severity": info.severity.value, "source": ctx.path, "line": None, "record_id": None,
                "field": "response", "detail": f"{flagged.height} of {n} answers flagged; mean coverage of own prompt "
                                               f"{own_mean:.3f}, of other prompts {base_mean:.3f}",
                "message": f"the columns look shifted or shuffled: {flagged.height} of {n} answers fit another prompt "
                           f"better than their own, and answers cover {own_mean:.0%} of their own prompt's words against "
                           f"{base_mean:.0%} of a random prompt's (aligned data: about 45% against 2%). Check how instruction "
                           "and output were joined (an off-by-one, one column sorted) before training on this file."}]))
        found.append(model_found)
        counts = np.histogram(scored["own"].to_numpy(), bins=BINS)[0]
        summary = {
            "answers_compared": n,
            "prompts_sampled": sample.height,
            "unrelated_answers": flagged.height,
            "unrelated_share": round(flagged.height / n, 4),
            "mean_own_relevance": round(own_mean, 4),
            "mean_other_relevance": round(base_mean, 4),
            "own_relevance_histogram": {f"{lo:.1f}-{hi:.1f}": int(c) for lo, hi, c in zip(BINS, BINS[1:], counts)},
        }
        return concat_findings(found), summary | model_summary

    def _model_scores(self, state: pl.LazyFrame, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        """--score-model: records with IFD at or above the limit (and, with keep_top_ifd, those outside the kept share)."""
        cfg = ctx.config.correspondence
        rows = state.select("id", "line", "perplexity", "ifd").collect(engine="streaming")
        high = rows.filter(pl.col("ifd") >= cfg.max_ifd).with_columns(ctx.source_of().alias("source"))
        found = flag(high, code_info(self, "correspondence.high_ifd"),
                     message("the instruction does not help the model predict this answer (IFD {} >= {}: the answer's loss "
                             "with the instruction over its loss alone): it teaches little about following instructions, "
                             "or answers another one. Check it belongs to its instruction; `datakit fix --keep-top-ifd` "
                             "keeps the most instructive records below 1.", pl.col("ifd").round(3), pl.lit(cfg.max_ifd)),
                     field="response", detail=pl.format("perplexity {}, IFD {}", pl.col("perplexity").round(1),
                                                        pl.col("ifd").round(3)))
        if cfg.keep_top_ifd is not None:
            found = concat_findings([found, self._below_top(rows, ctx)])
        ifd, ppl = rows["ifd"].drop_nulls(), rows["perplexity"].drop_nulls()
        # the per-record scores are columns of the report (`record_scores`), drawn as histograms on its page
        return found, {
            "scored_answers": len(ifd),
            "high_ifd_answers": high.height,
            "median_ifd": round(float(ifd.median()), 4) if len(ifd) else None,
            "median_perplexity": round(float(ppl.median()), 2) if len(ppl) else None,
        }

    def _below_top(self, rows: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Records under max_ifd outside the keep_top_ifd share of them, ranked by IFD (highest first, ties by line)."""
        cfg = ctx.config.correspondence
        under = rows.filter(pl.col("ifd") < cfg.max_ifd).sort(["ifd", "line"], descending=[True, False])
        keep = math.ceil(cfg.keep_top_ifd * under.height)
        rest = under.slice(keep).sort("line").with_columns(ctx.source_of().alias("source"),
                                                           pl.lit(under["ifd"][keep - 1] if keep else None).alias("floor"))
        return flag(rest, code_info(self, "correspondence.below_top_ifd"),
                    message("IFD {} is below the {} of records kept by --keep-top-ifd {} (those with IFD {} and above): "
                            "the instruction makes this answer easy to predict, so it teaches less than the kept ones.",
                            pl.col("ifd").round(3), pl.lit(f"{keep:,} of {under.height:,}"), pl.lit(cfg.keep_top_ifd),
                            pl.col("floor").round(3)),
                    field="response", detail=pl.format("IFD {}", pl.col("ifd").round(3)))


def _swapped(fits: pl.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """Answers exchanged between two records: per answer, the partner row and line, and the partner prompt's coverage,
    where answer a fits prompt b and answer b fits prompt a (each among the other's best few, `fits`) at least
    SWAP_RATIO times better than their own prompts, and both at least SWAP_RELEVANCE. Either side alone is weaker
    evidence than `unrelated_answer` asks for; both agreeing is a coincidence aligned data does not show."""
    pairs = fits.unique(["row", "partner"])
    back = pairs.select(pl.col("row").alias("partner"), pl.col("partner").alias("row"))
    lines = scored.select(pl.col("row").alias("partner"), pl.col("line").alias("partner_line"))
    return (pairs.join(back, on=["row", "partner"]).sort(["row", "cov"], descending=[False, True]).unique("row", keep="first")
            .join(lines, on="partner").select("row", "partner_line", pl.col("cov").alias("partner_cov")))


def _misaligned(scored: pl.DataFrame) -> pl.Expr:
    """In a file whose columns look shifted, the records that show it: where most answers fit the previous (or next)
    record's prompt better than their own, every record where that neighbour wins (its true prompt); otherwise
    (shuffled) every answer that shares little with its prompt and more with another."""
    judged = scored.filter(pl.max_horizontal("prev", "own", "next") >= 0.1)
    for side in ("prev", "next"):
        if judged.height and judged.select((pl.col(side) > pl.col("own")).mean()).item() >= 0.5:
            return pl.col(side) > pl.col("own")
    return (pl.col("own") < 0.2) & (pl.col("other") > pl.col("own"))


def _idf(state: pl.LazyFrame, n: int) -> np.ndarray:
    """Smoothed inverse document frequency of every term id over the prompts (scikit-learn's formula)."""
    df = state.select(pl.col("p").explode().alias("t")).group_by("t").len().collect(engine="streaming")
    idf = np.full(BUCKETS, math.log(1 + n) + 1, dtype=np.float32)
    idf[df["t"].to_numpy()] = np.log((1 + n) / (1 + df["len"].to_numpy())) + 1
    return idf


def _matrix(lists: pl.Series, values: np.ndarray | None = None) -> sparse.csr_matrix:
    """Rows of term ids as a sparse matrix (value 1, or the given values per term)."""
    lengths = lists.list.len().to_numpy()
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = lists.explode().drop_nulls().to_numpy().astype(np.int64)
    data = np.ones(len(cols), dtype=np.float32) if values is None else values
    return sparse.csr_matrix((data, cols, indptr), shape=(len(lists), BUCKETS))


def _weights(prompts: pl.Series, idf: np.ndarray) -> sparse.csr_matrix:
    """Prompts as rows of term weights summing to 1: a row times an answer's 0/1 row is the answer's coverage."""
    m = _matrix(prompts)
    m.data = idf[m.indices]
    sums = np.asarray(m.sum(axis=1)).ravel()
    return sparse.diags(1 / np.maximum(sums, 1e-9)).astype(np.float32) @ m


def _score_chunk(state: pl.LazyFrame, start: int, n: int, idf: np.ndarray, sample: pl.DataFrame,
                 sample_weights: sparse.csr_matrix, sample_terms: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For answers start..start+CHUNK: coverage of the own prompt, the best other prompt (the neighbours and the sample)
    with its line, and the mean coverage of the sampled prompts (what a random prompt scores); and the prompts among
    each answer's best few that it fits well enough for the swap test (row, partner row, coverage)."""
    lo = max(0, start - 1)
    rows = state.slice(lo, min(n, start + CHUNK + 1) - lo).collect(engine="streaming")
    core = slice(start - lo, start - lo + min(CHUNK, n - start))
    weights, answers = _weights(rows["p"], idf), _matrix(rows["r"])
    own = np.asarray(weights.multiply(answers).sum(axis=1)).ravel()
    many = (rows["p"].list.len() >= MIN_TERMS).to_numpy()
    lines = rows["line"].to_numpy()
    k = np.arange(core.start, core.stop)
    prev = np.where((k > 0) & many[np.maximum(k - 1, 0)],
                    np.asarray(weights[np.maximum(k - 1, 0)].multiply(answers[k]).sum(axis=1)).ravel(), 0.0)
    nxt_idx = np.minimum(k + 1, rows.height - 1)
    nxt = np.where((k + 1 < rows.height) & many[nxt_idx],
                   np.asarray(weights[nxt_idx].multiply(answers[k]).sum(axis=1)).ravel(), 0.0)
    against = (answers[k] @ sample_weights.T).toarray()  # answers x sampled prompts
    global_rows = lo + k
    self_col = np.searchsorted(sample["row"].to_numpy(), global_rows)
    is_self = (self_col < sample.height) & (sample["row"].to_numpy()[np.minimum(self_col, sample.height - 1)] == global_rows)
    against[np.nonzero(is_self)[0], self_col[is_self]] = 0.0
    against[:, sample_terms < MIN_TERMS] = 0.0
    best_col = against.argmax(axis=1) if against.shape[1] else np.zeros(len(k), dtype=np.int64)
    best = against[np.arange(len(k)), best_col] if against.shape[1] else np.zeros(len(k))
    sample_lines = sample["line"].to_numpy()
    other = np.maximum.reduce([prev, nxt, best])
    other_line = np.where(other == prev, lines[np.maximum(k - 1, 0)],
                          np.where(other == nxt, lines[nxt_idx], sample_lines[best_col] if len(sample_lines) else 0))
    # the prompts each answer fits best (the sample's top few and both neighbours), for the swap test in `finish`
    sample_rows = sample["row"].to_numpy()
    top = (np.argpartition(-against, SWAP_CANDIDATES - 1, axis=1)[:, :SWAP_CANDIDATES]
           if against.shape[1] > SWAP_CANDIDATES else np.tile(np.arange(against.shape[1]), (len(k), 1)))
    cand_rows = np.concatenate([sample_rows[top], (lo + np.maximum(k - 1, 0))[:, None], (lo + nxt_idx)[:, None]], axis=1)
    cand_cov = np.concatenate([np.take_along_axis(against, top, axis=1), prev[:, None], nxt[:, None]], axis=1)
    rows_of = np.broadcast_to((lo + k)[:, None], cand_rows.shape)
    keep = (cand_cov >= SWAP_RELEVANCE) & (cand_cov >= SWAP_RATIO * own[k][:, None]) & (cand_rows != rows_of)
    fits = pl.DataFrame({"row": rows_of[keep].astype(np.int64), "partner": cand_rows[keep].astype(np.int64),
                         "cov": cand_cov[keep].astype(np.float64)})
    baseline = against.sum(axis=1) / max(1, int((sample_terms >= MIN_TERMS).sum()) - 1)
    f64 = lambda a: np.asarray(a, dtype=np.float64)
    scored = pl.DataFrame({"id": rows["id"].to_numpy()[k], "row": (lo + k).astype(np.int64),
                           "line": lines[k], "own": f64(own[k]), "prev": f64(prev),
                           "next": f64(nxt), "prev_line": lines[np.maximum(k - 1, 0)], "next_line": lines[nxt_idx],
                           "other": f64(other), "other_line": other_line.astype(np.int64), "baseline": f64(baseline)})
    return scored, fits


def _pct(share: pl.Expr) -> pl.Expr:
    return pl.format("{}%", (share * 100).round(0).cast(pl.Int64))
