"""`datakit balance`: even out a class distribution by resampling, or write per-class loss weights instead.

Strategies: `cap` downsamples classes above a ceiling, `floor` upsamples classes below a floor by
duplication, `shares` resamples every class to a target share (uniform, or given). A record left
out by downsampling goes to the rejected file with the reason `balance.capped` (nothing is lost);
a duplicate made by upsampling carries `_datakit_upsampled_from: <line of its original>` and sits
right after it (the duplicate rules will flag it: it is a copy by design). `weights` writes
{label: weight} (inverse frequency, mean 1) for `trainkit train --class-weights`, resampling nothing.
Records without the label field are kept as they are. Deterministic for a given seed.

The input is streamed twice: the first pass keeps only each record's class (indices per class), the second writes
the balanced file and the rejected file as it reads, and refuses a file that changed in between.
"""
from __future__ import annotations

import json
import math
import random
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from datakit.config import build_config
from datakit.engine.inputs import BATCH_BYTES, BATCH_RECORDS
from datakit.io.atomic import write_text
from datakit.io.lock import output_lock
from datakit.io.read import InputError, open_raw
from datakit.io.write import (
    container_notes,
    container_of,
    record_writer,
    refuse_overwrite,
    rejected_container,
    rejection,
    sibling,
    unreadable_row,
)
from schemas.config import AuditConfig

UPSAMPLED = "_datakit_upsampled_from"
CAPPED = "balance.capped"
Strategy = Literal["cap", "floor", "shares"]


@dataclass
class BalanceResult:
    source: str
    by: str
    strategy: str  # cap | floor | shares | weights
    before: dict[str, int]
    after: dict[str, int]
    unlabelled: int = 0
    capped: int = 0
    upsampled: int = 0
    unreadable: int = 0
    weights: dict[str, float] | None = None
    output: Path | None = None
    rejected_path: Path | None = None
    weights_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def balance(path: str | Path, by: str, output: str | Path | None = None, *, strategy: Strategy = "cap",
            shares: dict[str, float] | None = None, max_per_class: int | None = None, min_per_class: int | None = None,
            weights: str | Path | None = None, seed: int = 0, rejected: str | Path | None = None,
            config: AuditConfig | None = None, config_file: str | Path | None = None) -> BalanceResult:
    """Rebalance the classes of field `by` into `output` (the container its name says: .jsonl, .json, .parquet, optionally
    .gz), or write loss weights to `weights`.

    Defaults come from the balance rule's settings: cap at the smallest class x balance.max_imbalance_ratio,
    floor at the largest class / that ratio, so the result passes `datakit audit`'s balance check.
    """
    if config is None:
        config = build_config(config_file)
    if (output is None) == (weights is None):
        raise ValueError("balance needs exactly one of -o OUT (resample) or --weights OUT.json (loss weights instead "
                         "of resampling).")
    if strategy not in ("cap", "floor", "shares"):
        raise ValueError(f"--strategy {strategy}: expected cap, floor or shares.")
    rejected_path = None if output is None else Path(rejected) if rejected is not None else sibling(output, "rejected")
    refuse_overwrite("balance", [path], [output, rejected_path, weights])
    if rejected_path is not None:
        rejected_container(rejected_path)  # a rejected file that cannot be written is refused before the work
    census = _census(path, by)
    if not census.classes:
        raise ValueError(f"{path}: no record has the field '{by}', so there is nothing to balance. Check --by "
                         "(the field holding the class label, e.g. class or category).")
    before = {k: len(v) for k, v in sorted(census.classes.items())}
    result = BalanceResult(source=census.source, by=by, strategy="weights" if weights is not None else strategy,
                           before=before, after=dict(before), unlabelled=len(census.unlabelled),
                           unreadable=census.unreadable)
    from validators.balance import label_variant_groups, shown  # imported when called, as split does: no import cycle

    for group in label_variant_groups(before):
        spellings = ", ".join(f"'{shown(label)}'" for label in group)
        result.notes.append(f"{len(group)} classes are one label spelt {len(group)} ways: {spellings}; each was balanced "
                            f"as a class of its own. Rewrite them as one label (`datakit audit {path} --label-field {by}` "
                            "lists the records), then balance again.")
    if weights is not None:
        result.weights = class_weights(before)
        result.weights_path = Path(weights)
        with output_lock("datakit balance", [weights]):
            write_text(weights, json.dumps(result.weights, ensure_ascii=False, indent=2) + "\n")
        return result
    targets = _targets(before, strategy, shares, max_per_class, min_per_class, config.balance.max_imbalance_ratio)
    copies = _copies(census, targets, seed)
    result.after = {label: targets[label] for label in before}
    result.capped = sum(n - targets[label] for label, n in before.items() if targets[label] < n)
    result.upsampled = sum(targets[label] - n for label, n in before.items() if targets[label] > n)
    result.output = Path(output)
    result.rejected_path = rejected_path
    _write_resampled(path, census, copies, by, _capped_reasons(before, targets, strategy, seed), result)
    result.notes += container_notes(result.output, rejected_path)
    if result.unreadable:
        result.notes.append(f"{result.unreadable} record(s) are not valid JSON and went to {result.rejected_path}; "
                            "run `datakit fix` before balancing.")
    if result.upsampled:
        result.notes.append(f"{result.upsampled} duplicate(s) added, each marked with '{UPSAMPLED}'; `datakit audit` "
                            "reports them as duplicates by design.")
    return result


@dataclass
class _Census:
    """What the first pass keeps of a file: record indices per class and of unlabelled records (no record itself)."""

    source: str
    checksum: str
    records: int
    classes: dict[str, array]  # label -> indices of its records, in file order
    unlabelled: array
    unreadable: int


def _census(path: str | Path, by: str) -> _Census:
    """Pass 1: stream the file and note each record's class by its index (indices count unreadable records too)."""
    classes: dict[str, array] = {}
    unlabelled = array("q")
    unreadable_count = index = 0
    with open_raw(path) as stream:
        for batch in stream.batches(BATCH_BYTES, BATCH_RECORDS):
            for rec in batch:
                if rec.error is not None:
                    unreadable_count += 1
                elif (label := _label(rec.obj, by)) is not None:
                    classes.setdefault(label, array("q")).append(index)
                else:
                    unlabelled.append(index)
                index += 1
    return _Census(stream.path, stream.checksum, index, classes, unlabelled, unreadable_count)


def _copies(census: _Census, targets: dict[str, int], seed: int) -> array:
    """Copies to write of each record, by index: 0 capped (or unreadable), 1 kept, more upsampled. Each class draws
    from its own seeded generator, so a class's sample does not depend on the others."""
    copies = array("I", bytes(4 * census.records))
    for label, members in sorted(census.classes.items()):
        rng = random.Random(f"{seed}/{label}")
        target = targets[label]
        if target < len(members):
            for i in rng.sample(members, target):
                copies[i] = 1
            continue
        order = members[:]
        rng.shuffle(order)
        for j in range(target):
            copies[order[j % len(order)]] += 1
    for i in census.unlabelled:
        copies[i] = 1
    return copies


def _capped_reasons(before: dict[str, int], targets: dict[str, int], strategy: str, seed: int) -> dict[str, dict]:
    """The rejected-file reason of a record that was not drawn, for each class that was capped."""
    return {label: {
        "rule": CAPPED, "severity": "info", "fix": "drop",
        "message": f"class '{label}' has {n} records, more than its target {targets[label]} ({strategy}, seed {seed}); this "
                   "one was not drawn. Kept here so nothing is lost: re-run with another target, or use --weights to train "
                   "on every record with a weighted loss."} for label, n in before.items() if targets[label] < n}


def _write_resampled(path: str | Path, census: _Census, copies: array, by: str, capped: dict[str, dict],
                     result: BalanceResult) -> None:
    """Pass 2: stream the file again, writing each kept record (its upsampled copies right after it) and each capped
    or unreadable one to the rejected file, both in file order; the file must be the one pass 1 read."""
    changed = InputError(f"{path}: the file changed while it was being balanced; run `datakit balance` again once "
                         "nothing writes to it.")
    index = 0
    # The rejected file is renamed into place first: an output on disk always has its rejected file next to it.
    with (output_lock("datakit balance", [result.output, result.rejected_path]), open_raw(path) as stream,
          record_writer(result.output, *container_of(result.output)) as out,
          record_writer(result.rejected_path, *rejected_container(result.rejected_path)) as rejected):
        for batch in stream.batches(BATCH_BYTES, BATCH_RECORDS):
            if index + len(batch) > census.records:
                raise changed
            for rec in batch:
                n = copies[index]
                index += 1
                if rec.error is not None:
                    rejected.write([unreadable_row(census.source, rec)])
                elif n:
                    out.write([rec.obj, *(rec.obj | {UPSAMPLED: rec.line} for _ in range(n - 1))])
                elif (reason := capped.get(_label(rec.obj, by))) is not None:
                    rejected.write([rejection(census.source, rec.line, rec.text, rec.obj, [reason])])
                else:  # pass 1 saw a capped class here
                    raise changed
        if stream.checksum != census.checksum:
            raise changed


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """Per-class loss weights: inverse class frequency, normalised so their mean is 1 (rare classes weigh more)."""
    inverse = {k: 1 / n for k, n in counts.items()}
    mean = sum(inverse.values()) / len(inverse)
    return {k: round(v / mean, 6) for k, v in sorted(inverse.items())}


def parse_shares(text: str) -> dict[str, float]:
    """`a=0.3,b=0.7` -> {a: 0.3, b: 0.7}; the CLI's --shares."""
    out: dict[str, float] = {}
    for item in text.split(","):
        label, eq, value = item.rpartition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not eq or not label.strip() or share < 0 or not math.isfinite(share):
            raise ValueError(f"--shares: '{item}' is not label=share with a share >= 0, e.g. --shares qa=0.5,code=0.5.")
        out[label.strip()] = share
    return out


def _label(obj: Any, by: str) -> str | None:
    """The class of a record as `datakit audit --label-field` reads it: the field's value as text."""
    if not isinstance(obj, dict) or obj.get(by) is None:
        return None
    value = obj[by]
    return value if isinstance(value, str) else str(value)


def _targets(counts: dict[str, int], strategy: str, shares: dict[str, float] | None, max_per_class: int | None,
             min_per_class: int | None, ratio: float) -> dict[str, int]:
    """Records per class after resampling."""
    smallest, largest = min(counts.values()), max(counts.values())
    if strategy == "cap":
        ceiling = max_per_class if max_per_class is not None else math.floor(smallest * ratio)
        if ceiling < 1:
            raise ValueError(f"--max-per-class {ceiling}: must be at least 1.")
        return {k: min(n, ceiling) for k, n in counts.items()}
    if strategy == "floor":
        floor = min_per_class if min_per_class is not None else math.ceil(largest / ratio)
        return {k: max(n, floor) for k, n in counts.items()}
    wanted = shares or {k: 1.0 for k in counts}
    missing, unknown = sorted(set(counts) - set(wanted)), sorted(set(wanted) - set(counts))
    if unknown:
        raise ValueError(f"--shares names {', '.join(unknown)}, which no record has; the classes are {', '.join(counts)}.")
    if missing:
        raise ValueError(f"--shares gives no share to {', '.join(missing)}; give every class a share (0 removes it), "
                         "e.g. " + ",".join(f"{k}=..." for k in counts) + ".")
    total_share = sum(wanted.values())
    if total_share <= 0:
        raise ValueError("--shares: the shares add up to 0; give at least one class a positive share.")
    return proportional_counts({k: wanted[k] / total_share for k in counts}, sum(counts.values()))


def proportional_counts(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts proportional to `shares` (summing to 1) that add up to exactly `total` (Hamilton's method,
    ties by name)."""
    exact = {k: s * total for k, s in shares.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def print_summary(result: BalanceResult, console: Console) -> None:
    """Before/after class distribution, and where the files went."""
    table = Table(title=f"balance {result.source} by '{result.by}' ({result.strategy})", header_style="bold")
    columns = ("class", "before", "share") + (("after", "share") if result.weights is None else ("loss weight",))
    for col in columns:
        table.add_column(col, justify="left" if col == "class" else "right")
    total_before, total_after = sum(result.before.values()), sum(result.after.values())
    for label, n in result.before.items():
        if result.weights is not None:
            table.add_row(label, str(n), f"{n / total_before:.1%}", f"{result.weights[label]:.3f}")
            continue
        after = result.after[label]
        table.add_row(label, str(n), f"{n / total_before:.1%}", str(after), f"{after / total_after:.1%}" if total_after else "-")
    console.print(table)
    if result.weights_path is not None:
        console.print(f"loss weights -> {result.weights_path} (use: trainkit train ... --class-weights {result.weights_path})")
    else:
        console.print(f"{total_before} -> {total_after} labelled records ({result.capped} capped, {result.upsampled} "
                      f"upsampled); {result.unlabelled} without '{result.by}' kept as they are")
        console.print(f"balanced -> {result.output}; capped records with their reason -> {result.rejected_path}")
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")
