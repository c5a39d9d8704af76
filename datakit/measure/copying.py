"""How much of each answer is copied from its prompt: the share of response tokens inside a run of tokens also found
in the prompt. Columns added ("answer_copy"): `answer_tokens` and `answer_share` (null for answers too short to
judge, under leakage.answer_min_tokens tokens)."""
from __future__ import annotations

import polars as pl

from datakit.measure.contamination import token_lists
from schemas.config import AuditConfig
from schemas.dataset import Dataset

_SLICE = 1_000  # records per pass: every token of a slice becomes a row with its n-gram, ~2 KB a record


def add_answer_copy(ds: Dataset, config: AuditConfig, evals: object = None) -> None:
    cfg = config.leakage
    valid = ds.frame.filter(pl.col("valid")).select("id", "prompt", "response")
    shares = answer_shares(valid, cfg.answer_run, cfg.answer_min_tokens).rename({"tokens": "answer_tokens",
                                                                                 "share": "answer_share"})
    ds.frame = ds.frame.join(shares, on="id", how="left", maintain_order="left")


def answer_shares(frame: pl.DataFrame, run: int, min_tokens: int) -> pl.DataFrame:
    """Per record (`id`, `prompt`, `response`) with at least `min_tokens` response tokens: `tokens` and `share`, the
    share of response tokens inside a run of `run` tokens also found in the prompt (a response shorter than `run`
    counts whole). Runs, not single words: a rewrite reuses its input's words, a copied answer its sentences."""
    schema = {"id": pl.Int64, "tokens": pl.UInt32, "share": pl.Float64}
    out = [pl.DataFrame(schema=schema)]
    for part in frame.iter_slices(_SLICE):
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
