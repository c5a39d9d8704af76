"""near_duplicate.*: records that are near-copies of another (MinHash LSH clusters over prompt + response).

Clusters come from the "near_dup" measurement (`datakit.measure.minhash`), so `split` and `fix` see
the same clusters as the report. In each cluster one record is kept: the longest response, then
the earliest line; every other member is flagged, pointing at the kept record's line.
"""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from datakit.measure.minhash import lsh_params
from schemas.dataset import Dataset
from schemas.findings import Severity
from validators.base import Rule, RuleCode, RuleContext, code_info, flag

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
                 f"estimated Jaccard >= 0.8 on word 5-grams (CJK: character 5-grams); fix {KEPT_RULE}", fix="drop"),
    )

    def check(self, ds: Dataset, ctx: RuleContext) -> pl.DataFrame:
        threshold = ctx.config.near_duplicate.threshold
        members = _members(ds)
        chained = pl.col("near_dup_similarity") < threshold  # linked to the kept record only through others
        sim = lambda c: pl.col(c).round(2).cast(pl.String)
        message = pl.format(
            "near-duplicate of line {} (estimated Jaccard similarity {}, threshold {}){}: near-copies over-weight one "
            "example and leak across train/eval splits. `datakit fix` {} (line {}) and moves this record to the "
            "rejected file; raise --threshold to keep more.",
            pl.col("kept_line"), sim("near_dup_similarity"), pl.lit(str(threshold)),
            pl.when(chained).then(pl.format(", joined to the cluster through line {} ({})", pl.col("match_line"),
                                             sim("near_dup_match_similarity"))).otherwise(pl.lit("")),
            pl.lit(KEPT_RULE), pl.col("kept_line"))
        detail = pl.format("similarity {} to line {}; cluster {} of {} records", sim("near_dup_similarity"),
                           pl.col("kept_line"), pl.col("near_dup_cluster"), pl.col("cluster_size"))
        return flag(members.filter(pl.col("id") != pl.col("near_dup_kept")), code_info(self, "near_duplicate.cluster"),
                    message, excerpt=pl.col("prompt"), detail=detail, related_line=pl.col("kept_line"))

    def summary(self, ds: Dataset, ctx: RuleContext) -> dict:
        cfg = ctx.config.near_duplicate
        members = _members(ds)
        clusters = (members.group_by("near_dup_cluster")
                    .agg(pl.len().alias("size"), pl.col("kept_line").first(), pl.col("line").sort().alias("lines"))
                    .sort(["size", "near_dup_cluster"], descending=[True, False]))
        sizes = clusters.group_by("size").len().sort("size")
        bands, rows = lsh_params(cfg.threshold, cfg.num_perm)
        valid = ds.valid
        return {
            "clusters": clusters.height,
            "records_in_clusters": members.height,
            "records_flagged": members.height - clusters.height,
            "size_distribution": {str(s): n for s, n in sizes.iter_rows()},
            "largest": [{"size": size, "kept_line": kept, "lines": lines[:LINES_SHOWN]}
                        for size, kept, lines in clusters.head(LARGEST_SHOWN).select("size", "kept_line", "lines").iter_rows()],
            "shingled_by_characters": int(valid["minhash_cjk"].sum()) if valid.height else 0,
            "shingled_by_words": int((~valid["minhash_cjk"]).sum()) if valid.height else 0,
            "threshold": cfg.threshold,
            "num_perm": cfg.num_perm,
            "lsh_bands": bands,
            "lsh_rows_per_band": rows,
            "kept": KEPT_RULE,
        }


def _members(ds: Dataset) -> pl.DataFrame:
    """Rows in a near-duplicate cluster with the lines of their kept record and closest match, and the cluster size."""
    lines = ds.frame.select(pl.col("id"), pl.col("line"))
    return (ds.frame.filter(pl.col("near_dup_cluster").is_not_null())
            .join(lines.rename({"id": "near_dup_kept", "line": "kept_line"}), on="near_dup_kept", how="left")
            .join(lines.rename({"id": "near_dup_match", "line": "match_line"}), on="near_dup_match", how="left")
            .with_columns(pl.len().over("near_dup_cluster").alias("cluster_size"))
            .sort("id"))
