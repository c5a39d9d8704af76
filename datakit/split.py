"""`datakit split`: train / eval (/ test) files that cannot leak into each other, stratified by label when asked.

Records are grouped first (same prompt or same record by the normalised hashes, near-duplicates by the
near_duplicate rule's MinHash clusters), and whole groups are assigned, so no cluster straddles two splits.
Then the leakage rule checks train against eval and test exactly as `datakit audit --against` would;
any eval/test group it still finds in train (a shared 13-gram is looser than a near-duplicate
cluster) is moved into train, until none is left. The same input and seed give the same files.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from datakit.config import build_config
from datakit.io.read import RawRecord, read_raw
from datakit.io.write import refuse_overwrite, suffix_for, unreadable, write_records
from datakit.measure import ensure
from datakit.measure.lsh import components, near_duplicate_clusters
from datakit.measure.normal import normalised
from datakit.normalise import normalise
from datakit.recheck import check, dataset_of
from schemas.config import AuditConfig
from schemas.dataset import Dataset

SPLITS = ("train", "eval", "test")
MAX_ROUNDS = 20  # leakage re-checks; each moves groups out of eval/test, so it ends, and usually after one


@dataclass
class SplitResult:
    source: str
    counts: dict[str, int]  # split -> records
    files: dict[str, Path]
    groups: int  # groups of duplicates / near-duplicates kept whole (more than one record)
    grouped_records: int
    moved_for_leakage: int  # eval/test records moved into train because the leakage rule matched them
    labels: dict[str, dict[str, int]] | None = None  # split -> label -> records, when stratified
    rejected: int = 0
    rejected_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def split(path: str | Path, output_dir: str | Path | None = None, *, eval_share: float = 0.1, test_share: float = 0.0,
          stratify: str | None = None, seed: int = 0, config: AuditConfig | None = None,
          config_file: str | Path | None = None, **options: Any) -> SplitResult:
    """Split `path` into OUTPUT_DIR/train, eval (and test when `test_share` > 0), in the input's format; the default
    OUTPUT_DIR is `<input name>_split` next to the input.

    `options` are audit settings the grouping and the leakage check use (threshold, ...), as for `datakit.audit`.
    """
    if config is None:
        config = build_config(config_file, **options)
    if not (0 < eval_share < 1) or not (0 <= test_share < 1) or eval_share + test_share >= 1:
        raise ValueError(f"--eval {eval_share} --test {test_share}: shares must be in (0, 1) and leave records for "
                         "train, e.g. --eval 0.1 --test 0.1.")
    raw = read_raw(path)
    ds = normalise(raw.records, raw.path, stratify)
    if stratify and ds.frame["label"].null_count() == ds.frame.height:
        raise ValueError(f"{path}: no record has the field '{stratify}'; check --stratify (the class/label field).")
    readable = [i for i, r in enumerate(raw.records) if r.error is None]
    group_of = _groups(ds, config)
    assigned = _assign(readable, group_of, ds.frame["label"].to_list() if stratify else None, eval_share, test_share, seed)
    out_dir = Path(output_dir) if output_dir is not None else Path(path).with_name(Path(path).name.split(".")[0] + "_split")
    suffix = suffix_for(raw.container, raw.gzip)
    names = [s for s in SPLITS if s != "test" or test_share > 0]
    files = {s: out_dir / f"{s}{suffix}" for s in names}
    refuse_overwrite("split", [path], [*files.values(), out_dir / "rejected.jsonl"])
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    leakage = [r for r in select() if r.family == "leakage"]
    moved = _decontaminate(raw.records, raw.path, files, assigned, group_of, config, leakage[0]) if leakage else 0
    sizes = Counter(group_of[i] for i in readable)
    result = SplitResult(source=raw.path, counts={s: sum(1 for i in readable if assigned[i] == s) for s in names},
                         files=files, groups=sum(1 for n in sizes.values() if n > 1),
                         grouped_records=sum(n for n in sizes.values() if n > 1), moved_for_leakage=moved)
    if stratify:
        labels = ds.frame["label"].to_list()
        result.labels = {s: dict(sorted(Counter(labels[i] or "(missing)" for i in readable if assigned[i] == s).items()))
                         for s in names}
    rows = unreadable(raw)
    if rows:
        result.rejected, result.rejected_path = len(rows), out_dir / "rejected.jsonl"
        write_records(result.rejected_path, rows, "jsonl")
        result.notes.append(f"{len(rows)} unreadable record(s) -> {result.rejected_path}; run `datakit fix` before splitting.")
    for s in names:
        write_records(files[s], (raw.records[i].obj for i in readable if assigned[i] == s), raw.container, raw.gzip)
    asked = {"eval": eval_share, "test": test_share}
    for s in names[1:]:
        if result.counts[s] < 0.5 * asked[s] * len(readable):
            result.notes.append(f"{s} holds {result.counts[s]} records, under half of the {asked[s]:.0%} asked: most "
                                "records share text with others (duplicates, near-duplicates or long common passages), "
                                "so few can be held out without leaking. Deduplicate first (`datakit fix`).")
    if not leakage:
        result.notes.append("the leakage rule is not installed: groups of near-duplicates were kept whole, but train was "
                            "not checked against eval with n-grams.")
    return result


def _groups(ds: Dataset, config: AuditConfig) -> list[int]:
    """Group id per row: rows that share a prompt (the leakage rule's exact match), a whole record, or a
    near-duplicate cluster (the near_duplicate rule's, from `datakit.measure.minhash`) share one, linked
    through any chain of these (connected components, as near-duplicate clusters are found)."""
    ensure(ds, ["norm_hash", "minhash"], config)
    valid = ds.frame.filter(pl.col("valid"))
    sigs = valid["minhash"].to_numpy().reshape(valid.height, config.near_duplicate.num_perm)
    found = near_duplicate_clusters(sigs, config.near_duplicate.threshold)
    cluster = np.full(valid.height, None, dtype=object)
    cluster[found.rows] = found.cluster
    valid = valid.with_columns(pl.Series("near_dup_cluster", cluster.tolist(), dtype=pl.Int64))
    keyed = {"prompt_hash": valid.filter(normalised("prompt") != ""), "record_hash": valid, "near_dup_cluster": valid}
    edges = pl.concat([rows.select("id", key).drop_nulls().select(pl.col("id").min().over(key).alias("first"), "id")
                       for key, rows in keyed.items()])
    return components(ds.frame.height, edges["first"].to_numpy(), edges["id"].to_numpy())[1].tolist()


def _assign(readable: list[int], group_of: list[int], labels: list[str | None] | None, eval_share: float,
            test_share: float, seed: int) -> dict[int, str]:
    """Split name per record: whole groups, in a seeded order, fill eval then test up to their share of each stratum."""
    groups: dict[int, list[int]] = {}
    for i in readable:
        groups.setdefault(group_of[i], []).append(i)
    strata: dict[str, list[list[int]]] = {}
    for members in groups.values():
        key = Counter(labels[i] or "" for i in members).most_common(1)[0][0] if labels else ""
        strata.setdefault(key, []).append(members)
    assigned: dict[int, str] = {}
    for key in sorted(strata):
        stratum = sorted(strata[key])  # by first member: the order does not depend on hashing
        random.Random(f"{seed}/{key}").shuffle(stratum)
        n = sum(len(g) for g in stratum)
        want = {"eval": int(n * eval_share + 0.5), "test": int(n * test_share + 0.5)}
        have = {"eval": 0, "test": 0}
        for members in stratum:
            target = next((s for s in ("eval", "test") if have[s] + len(members) <= want[s]), "train")
            have[target] = have.get(target, 0) + len(members)
            assigned.update((i, target) for i in members)
    return assigned


def _decontaminate(records: list[RawRecord], source: str, files: dict[str, Path], assigned: dict[int, str],
                   group_of: list[int], config: AuditConfig, leakage) -> int:
    """Move into train every eval/test group the leakage rule finds in train, until it finds none; returns records moved."""
    by_line = {r.line: i for i, r in enumerate(records)}
    held_out = [s for s in files if s != "train"]
    moved = 0
    for _ in range(MAX_ROUNDS):
        parts = {s: dataset_of(str(files[s]), [records[i] for i in sorted(assigned) if assigned[i] == s],
                               container="jsonl") for s in files}
        found = check(parts["train"], config, [parts[s] for s in held_out], [leakage])
        hits = found.filter(pl.col("related_source").is_in([str(files[s]) for s in held_out])
                            & pl.col("related_line").is_not_null())
        if hits.height == 0:
            break
        groups = {group_of[by_line[line]] for line in hits["related_line"].to_list()}
        for i, s in assigned.items():
            if s != "train" and group_of[i] in groups:
                assigned[i] = "train"
                moved += 1
    return moved


def print_summary(result: SplitResult, console: Console) -> None:
    table = Table(title=f"split {result.source}", header_style="bold")
    table.add_column("split")
    table.add_column("records", justify="right")
    table.add_column("file")
    if result.labels:
        table.add_column("labels")
    total = sum(result.counts.values()) or 1
    for s, n in result.counts.items():
        row = [s, f"{n} ({n / total:.0%})", str(result.files[s])]
        if result.labels:
            row.append(", ".join(f"{k}: {v}" for k, v in result.labels[s].items()))
        table.add_row(*row)
    console.print(table)
    console.print(f"{result.groups} group(s) of duplicates / near-duplicates ({result.grouped_records} records) kept whole; "
                  f"{result.moved_for_leakage} eval/test record(s) moved into train because train still leaked into them")
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")
