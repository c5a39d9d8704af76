"""`datakit balance`: even out a class distribution by resampling, or write per-class loss weights instead.

Strategies: `cap` downsamples classes above a ceiling, `floor` upsamples classes below a floor by
duplication, `shares` resamples every class to a target share (uniform, or given). A record left
out by downsampling goes to the rejected file with the reason `balance.capped` (nothing is lost);
a duplicate made by upsampling carries `_datakit_upsampled_from: <line of its original>` and sits
right after it (the duplicate rules will flag it: it is a copy by design). `weights` writes
{label: weight} (inverse frequency, mean 1) for `trainkit train --class-weights`, resampling nothing.
Records without the label field are kept as they are. Deterministic for a given seed.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from datakit.config import build_config
from datakit.io.atomic import write_text
from datakit.io.read import read_raw
from datakit.io.write import refuse_overwrite, rejection, sibling, unreadable, write_records
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
    """Rebalance the classes of field `by` into `output` (the input's format), or write loss weights to `weights`.

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
    raw = read_raw(path)
    classes: dict[str, list[int]] = {}
    unlabelled: list[int] = []
    for i, rec in enumerate(raw.records):
        if rec.error is not None:
            continue
        label = _label(rec.obj, by)
        (classes.setdefault(label, []) if label is not None else unlabelled).append(i)
    if not classes:
        raise ValueError(f"{path}: no record has the field '{by}', so there is nothing to balance. Check --by "
                         "(the field holding the class label, e.g. class or category).")
    before = {k: len(v) for k, v in sorted(classes.items())}
    result = BalanceResult(source=raw.path, by=by, strategy="weights" if weights is not None else strategy,
                           before=before, after=dict(before), unlabelled=len(unlabelled),
                           unreadable=sum(r.error is not None for r in raw.records))
    if weights is not None:
        result.weights = class_weights(before)
        result.weights_path = Path(weights)
        write_text(weights, json.dumps(result.weights, ensure_ascii=False, indent=2) + "\n")
        return result
    ratio = config.balance.max_imbalance_ratio
    targets = _targets(before, strategy, shares, max_per_class, min_per_class, ratio)
    keep: dict[int, int] = {}  # record index -> copies to write (1 = the record, more = upsampled)
    capped: dict[int, str] = {}
    for label, members in sorted(classes.items()):
        rng = random.Random(f"{seed}/{label}")
        target = targets[label]
        if target < len(members):
            chosen = set(rng.sample(members, target))
            for i in members:
                if i not in chosen:
                    capped[i] = label
            keep.update((i, 1) for i in members if i in chosen)
        else:
            order = members[:]
            rng.shuffle(order)
            for j in range(target):
                keep[order[j % len(order)]] = keep.get(order[j % len(order)], 0) + 1
    keep.update((i, 1) for i in unlabelled)
    result.after = {label: targets[label] for label in before}
    result.capped, result.upsampled = len(capped), sum(n - 1 for n in keep.values())
    result.output = Path(output)
    result.rejected_path = rejected_path

    def records() -> Any:
        for i, rec in enumerate(raw.records):
            for copy_no in range(keep.get(i, 0)):
                yield rec.obj if copy_no == 0 else rec.obj | {UPSAMPLED: rec.line}

    rows = [rejection(raw.path, raw.records[i].line, raw.records[i].text, raw.records[i].obj, [{
        "rule": CAPPED, "severity": "info", "fix": "drop",
        "message": f"class '{label}' has {before[label]} records, more than its target {targets[label]} ({strategy}, "
                   f"seed {seed}); this one was not drawn. Kept here so nothing is lost: re-run with another target, or "
                   "use --weights to train on every record with a weighted loss."}])
        for i, label in sorted(capped.items())] + unreadable(raw)
    rows.sort(key=lambda r: r["line"])
    write_records(result.rejected_path, rows, "jsonl")
    write_records(result.output, records(), raw.container, raw.gzip)
    if result.unreadable:
        result.notes.append(f"{result.unreadable} record(s) are not valid JSON and went to {result.rejected_path}; "
                            "run `datakit fix` before balancing.")
    if result.upsampled:
        result.notes.append(f"{result.upsampled} duplicate(s) added, each marked with '{UPSAMPLED}'; `datakit audit` "
                            "reports them as duplicates by design.")
    return result


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
