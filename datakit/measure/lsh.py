"""LSH over MinHash signatures: band keys, candidate pairs, near-duplicate clusters and cross-set matches.

Everything here works from band keys (one 64-bit key per record and band: records share a bucket iff their
keys are equal) and a way to fetch the signatures of the few records that turn out to be candidates. So the
same code clusters a few thousand records held in memory and millions whose keys and signatures lie on disk
(`cluster_state`): only the band keys (8 bytes a band: 128 bytes a record with the default 16 bands) and the
candidates' signatures are ever loaded.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from datakit.measure.minhash import mix64

# A band bucket of m rows yields at most m * BUCKET_WINDOW candidate pairs (each row with its next
# BUCKET_WINDOW rows in the bucket), so a bucket of thousands of copies cannot explode into
# millions of pairs; its rows are still joined into one cluster through chains of neighbours.
BUCKET_WINDOW = 64
_PAIR_CHUNK = 65_536

# How much a missed pair weighs against a false candidate when bands are chosen (datasketch's `weights`). Every
# candidate is verified against the threshold, so a false candidate costs one comparison while a missed pair is a
# duplicate left in the data: at threshold 0.8 and 128 permutations, datasketch's equal weights (9 bands of 13 rows)
# find only 40% of the pairs at Jaccard 0.8 and 69% at 0.85; these weights (16 bands of 8 rows) find 95% and 99.4%,
# and make 6% of the pairs at 0.5 candidates.
LSH_WEIGHTS = (0.05, 0.95)  # (false positive, false negative)

# datasketch's choice for the default settings, so a default audit does not pay ~0.5 s to import datasketch
# (and scipy.integrate) for it; tests/test_near_duplicate.py checks it against datasketch.
DEFAULT_LSH_PARAMS = {(0.8, 128): (16, 8)}


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for this threshold with `LSH_WEIGHTS`."""
    if (threshold, num_perm) in DEFAULT_LSH_PARAMS:
        return DEFAULT_LSH_PARAMS[(threshold, num_perm)]
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, *LSH_WEIGHTS)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(records x bands) uint64: each band's `rows` signature values folded into one key. Equal bands give equal
    keys; different bands collide with probability 2^-64, and a collision only adds a candidate that
    verification then rejects."""
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    for b in range(bands):
        h = mix64(np.full(sigs.shape[0], b, dtype=np.uint64))
        for k in range(b * rows, (b + 1) * rows):
            h = mix64(h ^ sigs[:, k].astype(np.uint64))
        out[:, b] = h
    return out


def _bucket_pairs(bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (i < j) sharing a bucket, each row paired with its next BUCKET_WINDOW rows there."""
    order = np.lexsort((np.arange(bucket.size), bucket))
    sb = bucket[order]
    left, right = [], []
    for d in range(1, BUCKET_WINDOW + 1):
        if d >= sb.size:
            break
        same = sb[:-d] == sb[d:]
        if not same.any():
            break
        left.append(order[:-d][same])
        right.append(order[d:][same])
    if not left:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64)


def candidate_pairs(keys_per_band: Iterable[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct candidate pairs (i < j) over all bands; each band gives one key per row (rows 0..n-1)."""
    found = []
    for keys in keys_per_band:
        i, j = _bucket_pairs(keys)
        found.append(np.minimum(i, j) * n + np.maximum(i, j))
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pairs = np.unique(np.concatenate(found))
    return pairs // n, pairs % n


def similarity(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of rows a[i] and b[j] (datasketch's `MinHash.jaccard`: share of equal hash values)."""
    out = np.empty(i.size, dtype=np.float64)
    for lo in range(0, i.size, _PAIR_CHUNK):
        hi = lo + _PAIR_CHUNK
        out[lo:hi] = np.count_nonzero(a[i[lo:hi]] == b[j[lo:hi]], axis=1) / a.shape[1]
    return out


@dataclass(frozen=True)
class Clusters:
    """Near-duplicate clusters: connected components of verified candidate pairs, one kept row per cluster.

    Only rows in a cluster are listed (`rows`, ascending); per listed row: `cluster` (0.. in order of each
    cluster's first row), `kept` (the cluster's representative row), `similarity` (estimated Jaccard to the kept
    row), `match` and `match_similarity` (its most similar verified neighbour: the link that put it in the cluster,
    which differs from `kept` when it joined through a chain). Per cluster: `representative` and `sizes`.
    """

    rows: np.ndarray
    cluster: np.ndarray
    kept: np.ndarray
    similarity: np.ndarray
    match: np.ndarray
    match_similarity: np.ndarray
    representative: np.ndarray
    sizes: np.ndarray

    def groups(self, n: int) -> np.ndarray:
        """A group id for each of n rows (its cluster, or a group of its own): what a split must keep together."""
        out = np.arange(n, dtype=np.int64) + self.representative.size
        out[self.rows] = self.cluster
        return out


def components(n: int, i: np.ndarray, j: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the undirected graph on rows 0..n-1 with edges (i[k], j[k]): their number, and a
    component label per row (scipy's, no all-pairs matrix)."""
    from scipy.sparse import coo_matrix  # imported here: scipy.sparse costs every CLI command ~0.4 s to import
    from scipy.sparse.csgraph import connected_components

    return connected_components(coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n)), directed=False)


def cluster_candidates(i: np.ndarray, j: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray], threshold: float,
                       prefer: Callable[[np.ndarray], np.ndarray] | None = None) -> Clusters:
    """Clusters from candidate pairs of rows: `fetch(rows)` returns the signatures of those rows (ascending), and
    `prefer(rows)` a sort key per row (the smallest key in a cluster is kept; ties: the earliest row; default:
    the earliest row). Only the candidates' signatures are fetched."""
    rows = np.unique(np.concatenate([i, j]))
    sigs = fetch(rows) if rows.size else np.empty((0, 0), np.uint32)
    ci, cj = np.searchsorted(rows, i), np.searchsorted(rows, j)
    sim = similarity(sigs, sigs, ci, cj)
    keep = sim >= threshold
    ci, cj, sim = ci[keep], cj[keep], sim[keep]
    comps, comp = components(rows.size, ci, cj)
    member = np.flatnonzero(np.bincount(comp, minlength=comps)[comp] > 1) if rows.size else rows
    # cluster ids in order of each cluster's first row (members are ascending, so first sight is first row)
    comp_ids, first_pos = np.unique(comp[member], return_index=True)
    renum = np.full(comps, -1, dtype=np.int64)
    renum[comp_ids[np.argsort(first_pos)]] = np.arange(comp_ids.size)
    cluster = renum[comp[member]]
    key = np.zeros(member.size) if prefer is None else np.asarray(prefer(rows[member]), dtype=np.float64)
    ranked = np.lexsort((member, key, cluster))
    heads = ranked[np.r_[True, cluster[ranked][1:] != cluster[ranked][:-1]]] if member.size else ranked
    kept = member[heads][cluster]
    match = np.full(rows.size, -1, dtype=np.int64)
    match_sim = np.full(rows.size, np.nan)
    a, b, s = np.concatenate([ci, cj]), np.concatenate([cj, ci]), np.concatenate([sim, sim])
    best = np.lexsort((b, -s, a))
    head = best[np.r_[True, a[best][1:] != a[best][:-1]]] if best.size else best
    match[a[head]], match_sim[a[head]] = b[head], s[head]
    return Clusters(rows=rows[member], cluster=cluster, kept=rows[kept], similarity=similarity(sigs, sigs, member, kept),
                    match=rows[match[member]], match_similarity=match_sim[member], representative=rows[member[heads]],
                    sizes=np.bincount(cluster, minlength=heads.size))


def near_duplicate_clusters(sigs: np.ndarray, threshold: float, prefer: np.ndarray | None = None) -> Clusters:
    """Cluster rows of an in-memory signature matrix whose estimated Jaccard is at least `threshold` (through LSH
    candidates, never all pairs); `prefer` is a per-row sort key for the kept row (default: the earliest)."""
    bands, rows = lsh_params(threshold, sigs.shape[1])
    keys = band_keys(sigs, bands, rows)
    i, j = candidate_pairs((keys[:, b] for b in range(bands)), sigs.shape[0])
    return cluster_candidates(i, j, lambda r: sigs[r], threshold,
                              None if prefer is None else lambda r: np.asarray(prefer)[r])


def near_matches(query_sigs: np.ndarray, index_sigs: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(query row, index row, estimated Jaccard) for every cross-set pair at or above `threshold` (e.g. train vs
    eval), sorted by query row, then index row. Every query row is compared with every index row it shares a band
    bucket with, so a row's matches never depend on the other query rows (an audit's batches agree)."""
    if query_sigs.shape[0] == 0 or index_sigs.shape[0] == 0:
        return []
    bands, rows = lsh_params(threshold, query_sigs.shape[1])
    q_keys, x_keys = band_keys(query_sigs, bands, rows), band_keys(index_sigs, bands, rows)
    pairs = []
    for b in range(bands):
        found = (pl.DataFrame({"k": q_keys[:, b], "q": np.arange(q_keys.shape[0])})
                 .join(pl.DataFrame({"k": x_keys[:, b], "x": np.arange(x_keys.shape[0])}), on="k"))
        pairs.append(found["q"].to_numpy() * index_sigs.shape[0] + found["x"].to_numpy())
    unique = np.unique(np.concatenate(pairs))
    q, x = unique // index_sigs.shape[0], unique % index_sigs.shape[0]
    sim = similarity(query_sigs, index_sigs, q, x)
    keep = sim >= threshold
    return list(zip(q[keep].tolist(), x[keep].tolist(), sim[keep].tolist()))


# ---------------------------------------------------------------------------------------------------------------------
# Clustering an audit's state: band keys and signatures kept batch by batch (`lsh_state`), clustered at the end


def lsh_state(frame: pl.DataFrame, sigs: np.ndarray, threshold: float) -> pl.DataFrame:
    """What clustering needs of a batch's valid records: id, band keys (`band0`...), the response length (the kept
    record is the longest) and the signature (uint32: MinHash values are 32-bit)."""
    bands, rows = lsh_params(threshold, sigs.shape[1])
    keys = band_keys(sigs, bands, rows)
    return frame.select(
        pl.col("id"),
        pl.col("response").fill_null("").str.len_chars().cast(pl.Int64).alias("response_chars"),
        *(pl.Series(f"band{b}", keys[:, b]) for b in range(bands)),
        pl.Series("signature", sigs.astype(np.uint32)),
    )


def cluster_state(state: pl.LazyFrame, threshold: float, num_perm: int) -> pl.DataFrame:
    """Clusters of the records in `state` (every batch's `lsh_state`): one row per clustered record with
    `near_dup_cluster`, `near_dup_kept` (id of the kept record: the longest response, then the earliest),
    `near_dup_similarity` (to it), `near_dup_match` (id of its closest verified neighbour) and
    `near_dup_match_similarity`. Reads one band's keys at a time, then only the candidates' signatures."""
    ids = state.select("id").collect()["id"].to_numpy()
    bands, _ = lsh_params(threshold, num_perm)
    keys = (state.select(f"band{b}").collect()[:, 0].to_numpy() for b in range(bands))
    i, j = candidate_pairs(keys, ids.size)

    def rows_of(column: str, rows: np.ndarray) -> pl.DataFrame:
        wanted = pl.Series(rows, dtype=pl.UInt32).implode()
        return state.with_row_index("row").filter(pl.col("row").is_in(wanted)).select(column).collect()

    def fetch(rows: np.ndarray) -> np.ndarray:
        return rows_of("signature", rows)["signature"].to_numpy().reshape(rows.size, num_perm)

    def prefer(rows: np.ndarray) -> np.ndarray:
        return -rows_of("response_chars", rows)["response_chars"].to_numpy().astype(np.float64)

    return cluster_frame(cluster_candidates(i, j, fetch, threshold, prefer), ids)


def cluster_frame(found: Clusters, ids: np.ndarray) -> pl.DataFrame:
    """`cluster_state`'s frame of clusters found over rows whose record ids are `ids` (a row is a position in it)."""
    return pl.DataFrame({
        "id": ids[found.rows],
        "near_dup_cluster": found.cluster,
        "near_dup_kept": ids[found.kept],
        "near_dup_similarity": found.similarity,
        "near_dup_match": ids[found.match],
        "near_dup_match_similarity": found.match_similarity,
    }, schema={"id": pl.Int64, "near_dup_cluster": pl.Int64, "near_dup_kept": pl.Int64, "near_dup_similarity": pl.Float64,
               "near_dup_match": pl.Int64, "near_dup_match_similarity": pl.Float64})

