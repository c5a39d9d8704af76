"""near_duplicate.*: records that are near-copies of another (MinHash LSH clusters over prompt + response).

Clusters come from the "near_dup" measurement (`datakit.measure.minhash`), so `split` and `fix` see
the same clusters as the report. In each cluster one record is kept: the longest response, then
the earliest line; every other member is flagged, pointing at the kept record's line.
"""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity
from validators.base import Rule, RuleCode, RuleContext, code_info, flag, message

KEPT_RULE = "keeps the longest response in each cluster, then the earliest line"
LARGEST_SHOWN = 10
LINES_SHOWN = 20


class NearDuplicateRules(Rule):
    family: ClassVar[str] = "near_duplicate"
    needs: ClassVar[tuple[str, ...]] = ("minhash", "near_dup")
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("near_duplicate.cluster", Severity.warning,
                 "Near-copies (a few words changed) over-weight one example, waste training steps and leak across "
                 "train/eval splits; exact-match deduplication misses them.",
                 f"estimated Jaccard >= 0.8 on character 5-grams; fix {KEPT_RULE}", fix="drop"),
    )

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per valid record: its line, whether it was shingled by characters, and the head of its prompt (shown when
        it is flagged). The clusters themselves come from the engine (`ctx.measured["near_dup"]`)."""
        return batch.valid.select("id", "line", "minhash_cjk", pl.col("prompt").str.slice(0, 200).alias("prompt_head"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.near_duplicate
        members = _members(state, ctx)
        chained = pl.col("near_dup_similarity") < cfg.threshold  # linked to the kept record only through others
        sim = lambda c: pl.col(c).round(2).cast(pl.String)
        text = message(
            "near-duplicate of line {} (estimated Jaccard similarity {}, threshold {}){}: near-copies over-weight one "
            "example and leak across train/eval splits. `datakit fix` {} (line {}) and moves this record to the "
            "rejected file; raise --threshold to keep more.",
            pl.col("kept_line"), sim("near_dup_similarity"), str(cfg.threshold),
            pl.when(chained).then(pl.format(", joined to the cluster through line {} ({})", pl.col("match_line"),
                                             sim("near_dup_match_similarity"))).otherwise(pl.lit("")),
            KEPT_RULE, pl.col("kept_line"))
        detail = pl.format("similarity {} to line {}; cluster {} of {} records", sim("near_dup_similarity"),
                           pl.col("kept_line"), pl.col("near_dup_cluster"), pl.col("cluster_size"))
        flagged = members.filter(pl.col("id") != pl.col("near_dup_kept"))
        heads = state.filter(pl.col("id").is_in(flagged["id"].implode())).select("id", "prompt_head").collect(
            engine="streaming") if state is not None else pl.DataFrame(schema={"id": pl.Int64, "prompt_head": pl.String})
        found = flag(flagged.join(heads, on="id", how="left", maintain_order="left").with_columns(ctx.source_of().alias("source")),
                     code_info(self, "near_duplicate.cluster"), text, excerpt=pl.col("prompt_head"), detail=detail,
                     related_line=pl.col("kept_line"))
        return found, self._summary(members, state, ctx)

    def _summary(self, members: pl.DataFrame, state: pl.LazyFrame | None, ctx: RuleContext) -> dict:
        cfg = ctx.config.near_duplicate
        clusters = (members.group_by("near_dup_cluster")
                    .agg(pl.len().alias("size"), pl.col("kept_line").first(), pl.col("line").sort().alias("lines"))
                    .sort(["size", "near_dup_cluster"], descending=[True, False]))
        sizes = clusters.group_by("size").len().sort("size")
        bands, rows = ctx.measured.get("lsh_params", (None, None))
        shingled = state.select(pl.col("minhash_cjk").sum().alias("cjk"), pl.len().alias("n")).collect(
            engine="streaming") if state is not None else pl.DataFrame({"cjk": [0], "n": [0]})
        cjk, n = int(shingled["cjk"][0] or 0), int(shingled["n"][0])
        return {
            "clusters": clusters.height,
            "records_in_clusters": members.height,
            "records_flagged": members.height - clusters.height,
            "size_distribution": {str(s): n for s, n in sizes.iter_rows()},
            "largest": [{"size": size, "kept_line": kept, "lines": lines[:LINES_SHOWN]}
                        for size, kept, lines in clusters.head(LARGEST_SHOWN).select("size", "kept_line", "lines").iter_rows()],
            "shingled_by_characters": cjk,
            "shingled_by_words": n - cjk,
            "threshold": cfg.threshold,
            "num_perm": cfg.num_perm,
            "lsh_bands": bands,
            "lsh_rows_per_band": rows,
            "kept": KEPT_RULE,
        }


_CLUSTERS = {"id": pl.Int64, "near_dup_cluster": pl.Int64, "near_dup_kept": pl.Int64, "near_dup_similarity": pl.Float64,
             "near_dup_match": pl.Int64, "near_dup_match_similarity": pl.Float64}


def _members(state: pl.LazyFrame | None, ctx: RuleContext) -> pl.DataFrame:
    """Records in a near-duplicate cluster with their line, the lines of their kept record and closest match, and the
    cluster size."""
    clusters = ctx.measured.get("near_dup", pl.DataFrame(schema=_CLUSTERS))
    if state is None or clusters.height == 0:
        return clusters.with_columns(pl.lit(None, pl.Int64).alias(c) for c in ("line", "kept_line", "match_line")).with_columns(
            pl.len().over("near_dup_cluster").alias("cluster_size"))
    wanted = pl.concat([clusters["id"], clusters["near_dup_kept"], clusters["near_dup_match"]]).unique().implode()
    lines = state.filter(pl.col("id").is_in(wanted)).select("id", "line").collect(engine="streaming")
    return (clusters.join(lines, on="id", how="left")
            .join(lines.rename({"id": "near_dup_kept", "line": "kept_line"}), on="near_dup_kept", how="left")
            .join(lines.rename({"id": "near_dup_match", "line": "match_line"}), on="near_dup_match", how="left")
            .with_columns(pl.len().over("near_dup_cluster").alias("cluster_size"))
            .sort("id"))
