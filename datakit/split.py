"""`datakit split`: train / eval (/ test) files that cannot leak into each other, stratified by label when asked.

Records are grouped first (same prompt or same record by the normalised hashes, near-duplicates by the
near_duplicate rule's MinHash clusters), and whole groups are assigned, so no cluster straddles two splits.
The grouping comes from one streamed audit pass (`datakit.audit.Audit`, near-duplicate family only), which keeps
a few numbers per record; the files are then written by streaming the input again, so memory never holds the
records. When the held-out splits are small enough to index (DECONTAMINATE_MAX records), the leakage rule then
checks train against them exactly as `datakit audit --against` would; any eval/test group it still finds in train
(a shared 13-gram is looser than a near-duplicate cluster) is moved into train, until none is left. The same input
and seed give the same files.
"""
from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from datakit.audit import Audit
from datakit.config import build_config
from datakit.engine.inputs import BATCH_BYTES, BATCH_RECORDS
from datakit.engine.spill import Spill, remove_stale_dirs
from datakit.io.atomic import atomic_open
from datakit.io.lock import output_lock
from datakit.io.read import InputError, open_raw
from datakit.io.write import refuse_overwrite, suffix_for, unreadable_row, write_records
from datakit.measure.lsh import components
from schemas.config import AuditConfig

SPLITS = ("train", "eval", "test")
MAX_ROUNDS = 20  # leakage re-checks; each moves groups out of eval/test, so it ends, and usually after one
DRAFTS = ".datakit-split-"  # the working folder beside the outputs where each round's files are checked
# The n-gram leakage check indexes every held-out text in memory: above this many held-out records it is skipped
# (and said so); duplicates, shared prompts and near-duplicate clusters are still kept whole.
DECONTAMINATE_MAX = 20_000
_EMPTY_PROMPT = pl.Series([""]).hash(seed=0)[0]  # the normalised hash of an empty prompt: not a shared prompt


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
          config_file: str | Path | None = None, progress: bool = False, **options: Any) -> SplitResult:
    """Split `path` into OUTPUT_DIR/train, eval (and test when `test_share` > 0), in the input's format; the default
    OUTPUT_DIR is `<input name>_split` next to the input.

    `options` are audit settings the grouping and the leakage check use (threshold, ...), as for `datakit.audit`.
    """
    if config is None:
        config = build_config(config_file, **options)
    if not (0 < eval_share < 1) or not (0 <= test_share < 1) or eval_share + test_share >= 1:
        raise ValueError(f"--eval {eval_share} --test {test_share}: shares must be in (0, 1) and leave records for "
                         "train, e.g. --eval 0.1 --test 0.1.")
    out_dir = Path(output_dir) if output_dir is not None else Path(path).with_name(Path(path).name.split(".")[0] + "_split")
    names = [s for s in SPLITS if s != "test" or test_share > 0]
    grouping = config.model_copy(update={"only": ["near_duplicate"], "skip": [], "label_field": stratify})
    with Audit(path, grouping, extra_measures=("norm_hash",), progress=progress) as run:
        rows = run.records().select("id", "line", "valid", "label", "prompt_hash", "record_hash").collect(engine="streaming")
        clusters = run.measured["near_dup"]
        container = run.report.profile.container
        gzip_ = run.report.profile.gzip
        checksum = run.report.checksum
    if stratify and rows.filter(pl.col("valid"))["label"].null_count() == rows.filter(pl.col("valid")).height:
        raise ValueError(f"{path}: no record has the field '{stratify}'; check --stratify (the class/label field).")
    files = {s: out_dir / f"{s}{suffix_for(container, gzip_)}" for s in names}
    refuse_overwrite("split", [path], [*files.values(), out_dir / "rejected.jsonl"])
    from validators import select  # imported when called: rule families import datakit.measure, and so datakit

    leakage = any(r.family == "leakage" for r in select())
    with output_lock("datakit split", [*files.values(), out_dir / "rejected.jsonl"]):
        remove_stale_dirs(out_dir, DRAFTS)
        group_of = leak_groups(rows, clusters)
        parsed, unreadable = _reject_unreadable(path, out_dir / "rejected.jsonl")
        assigned = assign_groups(rows, parsed, group_of, stratify is not None, eval_share, test_share, seed)
        result = SplitResult(source=str(path), counts={}, files=files, groups=0, grouped_records=0, moved_for_leakage=0)
        held_out = int((assigned > 0).sum())
        if leakage and held_out <= DECONTAMINATE_MAX:
            result.moved_for_leakage = _decontaminate(path, files, assigned, group_of, config, (container, gzip_, checksum))
        else:
            _write_splits(path, files, assigned, container, gzip_, checksum)
    if leakage and held_out > DECONTAMINATE_MAX:
        result.notes.append(f"{held_out:,} held-out records are more than the {DECONTAMINATE_MAX:,} the n-gram leakage "
                            "check indexes in memory: duplicates, shared prompts and near-duplicate clusters were kept "
                            "whole, but train was not checked against eval with n-grams. Audit it with `datakit audit "
                            "train --against eval` on a machine with the memory, or split a smaller eval share.")
    if not leakage:
        result.notes.append("the leakage rule is not installed: groups of near-duplicates were kept whole, but train was "
                            "not checked against eval with n-grams.")
    sizes = Counter(group_of[assigned >= 0].tolist())
    result.counts = {s: int((assigned == k).sum()) for k, s in enumerate(SPLITS) if s in names}
    result.groups = sum(1 for n in sizes.values() if n > 1)
    result.grouped_records = sum(n for n in sizes.values() if n > 1)
    if stratify:
        labels = rows["label"].to_list()
        result.labels = {s: dict(sorted(Counter(labels[i] or "(missing)" for i in np.flatnonzero(assigned == k).tolist()).items()))
                         for k, s in enumerate(SPLITS) if s in names}
    if unreadable:
        result.rejected, result.rejected_path = unreadable, out_dir / "rejected.jsonl"
        result.notes.append(f"{unreadable} unreadable record(s) -> {result.rejected_path}; run `datakit fix` before splitting.")
    asked = {"eval": eval_share, "test": test_share}
    total = int((assigned >= 0).sum())
    for s in names[1:]:
        if result.counts[s] < 0.5 * asked[s] * total:
            result.notes.append(f"{s} holds {result.counts[s]} records, under half of the {asked[s]:.0%} asked: most "
                                "records share text with others (duplicates, near-duplicates or long common passages), "
                                "so few can be held out without leaking. Deduplicate first (`datakit fix`).")
    return result


def leak_groups(rows: pl.DataFrame, clusters: pl.DataFrame) -> np.ndarray:
    """Group id per record: records that share a prompt (the leakage rule's exact match), a whole record, or a
    near-duplicate cluster share one, linked through any chain of these (connected components, as near-duplicate
    clusters are found)."""
    valid = rows.filter(pl.col("valid")).join(clusters.select("id", "near_dup_cluster"), on="id", how="left")
    keyed = {"prompt_hash": valid.filter(pl.col("prompt_hash") != _EMPTY_PROMPT), "record_hash": valid,
             "near_dup_cluster": valid}
    edges = pl.concat([part.select("id", key).drop_nulls().select(pl.col("id").min().over(key).alias("first"), "id")
                       for key, part in keyed.items()])
    return components(rows.height, edges["first"].to_numpy(), edges["id"].to_numpy())[1]


def assign_groups(rows: pl.DataFrame, readable: np.ndarray, group_of: np.ndarray, stratified: bool, eval_share: float,
                  test_share: float, seed: int) -> np.ndarray:
    """Split per record (0 train, 1 eval, 2 test, -1 unreadable): whole groups, in a seeded order, fill eval then test
    up to their share of each stratum."""
    labels = rows["label"].to_list() if stratified else None
    groups: dict[int, list[int]] = {}
    for i in np.flatnonzero(readable).tolist():
        groups.setdefault(int(group_of[i]), []).append(i)
    strata: dict[str, list[list[int]]] = {}
    for members in groups.values():
        key = Counter(labels[i] or "" for i in members).most_common(1)[0][0] if labels else ""
        strata.setdefault(key, []).append(members)
    assigned = np.full(rows.height, -1, dtype=np.int8)
    for key in sorted(strata):
        stratum = sorted(strata[key])  # by first member: the order does not depend on hashing
        random.Random(f"{seed}/{key}").shuffle(stratum)
        n = sum(len(g) for g in stratum)
        want = {1: int(n * eval_share + 0.5), 2: int(n * test_share + 0.5)}
        have = {1: 0, 2: 0}
        for members in stratum:
            target = next((s for s in (1, 2) if have[s] + len(members) <= want[s]), 0)
            have[target] = have.get(target, 0) + len(members)
            assigned[members] = target
    return assigned


def _decontaminate(path: str | Path, files: dict[str, Path], assigned: np.ndarray, group_of: np.ndarray,
                   config: AuditConfig, written_as: tuple[str, bool, str]) -> int:
    """Write the splits, and move into train every eval/test group the leakage rule finds in train, until it finds
    none; returns records moved. Each round's files are drafts in a working folder beside the outputs; only the last
    round's are renamed into place, so a run killed between rounds leaves no split that still leaks."""
    held_out = [s for s in files if s != "train" and (assigned == SPLITS.index(s)).any()]
    if not held_out or not (assigned == 0).any():  # an empty split leaks nothing (and an empty file is no audit input)
        _write_splits(path, files, assigned, *written_as)
        return 0
    moved = 0
    with Spill(files["train"].parent, prefix=DRAFTS) as work:
        drafts = {s: work.dir / target.name for s, target in files.items()}
        for _ in range(MAX_ROUNDS):
            _write_splits(path, drafts, assigned, *written_as)
            check = config.model_copy(update={"only": ["leakage"], "skip": [], "leakage": config.leakage.model_copy(
                update={"against": [str(drafts[s]) for s in held_out]})})
            with Audit(drafts["train"], check) as run:
                hits = (run.findings().filter(pl.col("related_source").is_in([str(drafts[s]) for s in held_out])
                                              & pl.col("related_line").is_not_null())
                        .select("related_source", "related_line").collect(engine="streaming"))
            if hits.height == 0:
                break
            groups = set()
            for source, line in hits.iter_rows():
                k = SPLITS.index(next(s for s in held_out if str(drafts[s]) == source))
                members = np.flatnonzero(assigned == k)
                groups.add(int(group_of[members[line - 1]]))  # line n of a held-out file is its n-th record
            moving = np.isin(group_of, list(groups)) & (assigned > 0)
            moved += int(moving.sum())
            assigned[moving] = 0
        else:  # the last round moved records: write what it decided
            _write_splits(path, drafts, assigned, *written_as)
        for s, target in files.items():
            os.replace(drafts[s], target)
    return moved


def _write_splits(path: str | Path, files: dict[str, Path], assigned: np.ndarray, container: str, gzip_: bool,
                  checksum: str) -> None:
    """Each split's file, streaming the input once per file (records in input order)."""
    for k, s in enumerate(SPLITS):
        if s in files:
            write_records(files[s], _records_of(path, assigned, k, checksum), container, gzip_)


def _records_of(path: str | Path, assigned: np.ndarray, k: int, checksum: str):
    stream = open_raw(path)
    first = 0
    for batch in stream.batches(BATCH_BYTES, BATCH_RECORDS):
        for offset, rec in enumerate(batch):
            if assigned[first + offset] == k:
                yield rec.obj
        first += len(batch)
    if stream.checksum != checksum:
        raise InputError(f"{path}: the file changed while it was being split; run `datakit split` again once nothing "
                         "writes to it.")


def _reject_unreadable(path: str | Path, target: Path) -> tuple[np.ndarray, int]:
    """(per record: it parsed as JSON, how many did not): those, with the reason, go to `target`, which is kept only
    when there are some."""
    parsed: list[bool] = []
    with atomic_open(target) as out:
        for batch in open_raw(path).batches(BATCH_BYTES, BATCH_RECORDS):
            for r in batch:
                parsed.append(r.error is None)
                if r.error is not None:
                    out.write(json.dumps(unreadable_row(str(path), r), ensure_ascii=False) + "\n")
    count = parsed.count(False)
    if not count:
        target.unlink()
    return np.array(parsed, dtype=bool), count


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
