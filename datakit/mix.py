"""`datakit mix`: blend a task set with general data at a fixed ratio, the documents' remedy for catastrophic forgetting.

Each output record carries `_source` (the input it came from; a record that already has one keeps
it) and the mix is shuffled with the seed, so the same inputs, ratio and seed give the same file.
Without --total the mix is the largest one that repeats no record; a source asked for more than it
has is repeated, each repeat marked with `_datakit_upsampled_from`. All records must end in one
format: inputs in different formats need `--to` (converted through `datakit convert`), else the
command refuses. Unreadable records and records of no known format are left out and counted.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from datakit.balance import UPSAMPLED, proportional_counts
from datakit.convert import TARGETS, NotRepresentable, convert_record
from datakit.io.read import read_raw
from datakit.io.write import container_of, refuse_overwrite, write_records
from datakit.normalise import detect_format

SOURCE = "_source"


@dataclass
class SourceShare:
    path: str
    available: int  # usable records
    taken: int  # records written from this source (repeats included)
    repeated: int
    left_out: int  # unreadable, of no known format, or refused by --to conversion


@dataclass
class MixResult:
    output: Path
    format: str
    total: int
    sources: list[SourceShare]
    container: str
    gzip: bool
    notes: list[str] = field(default_factory=list)


def mix(paths: list[str | Path], output: str | Path, *, ratio: list[float] | None = None, total: int | None = None,
        seed: int = 0, to: str | None = None) -> MixResult:
    """Mix the records of `paths` at `ratio` (one share per input, normalised; default: every record once) into
    `output`, whose suffix picks the container (.jsonl, .json, .parquet, optionally .gz; default JSON Lines)."""
    if not paths:
        raise ValueError("mix needs at least one input file.")
    if ratio is not None and len(ratio) != len(paths):
        raise ValueError(f"--ratio has {len(ratio)} share(s) for {len(paths)} input(s); give one per input, e.g. "
                         f"--ratio {','.join(['0.5'] * len(paths))}.")
    if ratio is not None and (any(not math.isfinite(r) or r < 0 for r in ratio) or sum(ratio) <= 0):
        raise ValueError("--ratio: shares must be >= 0 and not all 0, e.g. --ratio 0.8,0.2.")
    if to is not None and to not in TARGETS:
        raise ValueError(f"--to {to}: expected one of {', '.join(TARGETS)}.")
    out_path = Path(output)
    refuse_overwrite("mix", paths, [out_path])
    pools = [_pool(p, to) for p in paths]
    formats = {fmt for _, records, _ in pools for fmt in records}
    if len(formats) > 1:
        found = "; ".join(f"{p}: {', '.join(sorted(r))}" for p, r, _ in pools)
        raise ValueError(f"the inputs hold different record formats ({found}); pass --to alpaca|sharegpt|openai to "
                         "convert them into one.")
    fmt = formats.pop() if formats else (to or "unknown")
    records = [[rec for by_format in r.values() for rec in by_format] for _, r, _ in pools]
    sizes = [len(r) for r in records]
    shares = [s / sum(ratio) for s in ratio] if ratio is not None else [n / max(sum(sizes), 1) for n in sizes]
    if any(n == 0 and s > 0 for n, s in zip(sizes, shares)):
        empty = next(str(p) for p, n, s in zip(paths, sizes, shares) if n == 0 and s > 0)
        raise ValueError(f"{empty}: no usable record to mix (run `datakit audit {empty}` to see why).")
    if total is None:
        total = min(math.floor(n / s + 1e-9) for n, s in zip(sizes, shares) if s > 0)
    if total < 0:
        raise ValueError(f"--total {total}: must be >= 0.")
    counts = proportional_counts({str(i): s for i, s in enumerate(shares)}, total)
    mixed: list[Any] = []
    result = MixResult(output=out_path, format=fmt, total=total, sources=[], container="jsonl", gzip=False)
    for i, (path, pool) in enumerate(zip(paths, records)):
        want = counts[str(i)]
        order = random.Random(f"{seed}/{i}").sample(pool, len(pool))  # every record once before any repeats
        for j in range(want):
            line, obj = order[j % len(order)]
            tagged = obj | ({} if SOURCE in obj else {SOURCE: str(path)})
            mixed.append(tagged | {UPSAMPLED: line} if j >= len(order) else tagged)
        result.sources.append(SourceShare(str(path), len(pool), want, max(want - len(pool), 0), pools[i][2]))
    random.Random(f"{seed}/mix").shuffle(mixed)
    result.container, result.gzip = container_of(out_path)
    write_records(out_path, mixed, result.container, result.gzip)
    left_out = sum(s.left_out for s in result.sources)
    if left_out:
        result.notes.append(f"{left_out} record(s) left out: unreadable, of no known format"
                            f"{' or not convertible to ' + to if to else ''}; run `datakit fix` / `datakit convert` on the inputs.")
    if any(s.repeated for s in result.sources):
        result.notes.append(f"some sources have fewer records than their share of {total}; repeats carry '{UPSAMPLED}'.")
    return result


def _pool(path: str | Path, to: str | None) -> tuple[str, dict[str, list[tuple[int, Any]]], int]:
    """(path, {format: [(line, record)]}, records left out) of one input, converted to `to` when given."""
    raw = read_raw(path)
    by_format: dict[str, list[tuple[int, Any]]] = {}
    left_out = 0
    for rec in raw.records:
        fmt = detect_format(rec.obj) if isinstance(rec.obj, dict) else None
        if rec.error is not None or fmt in (None, "prompts"):
            left_out += 1
            continue
        obj = rec.obj
        if to is not None:
            try:
                obj, _ = convert_record(obj, to)
            except NotRepresentable:
                left_out += 1
                continue
            fmt = to
        by_format.setdefault(fmt, []).append((rec.line, obj))
    return str(path), by_format, left_out


def print_summary(result: MixResult, console: Console) -> None:
    table = Table(title=f"mix -> {result.output} ({result.format}, {result.total} records)", header_style="bold")
    for col in ("source", "available", "taken", "share", "repeated"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in result.sources:
        share = f"{s.taken / result.total:.1%}" if result.total else "-"
        table.add_row(s.path, str(s.available), str(s.taken), share, str(s.repeated))
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")


def parse_ratio(text: str) -> list[float]:
    """`0.8,0.2` -> [0.8, 0.2]; the CLI's --ratio."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--ratio {text}: expected numbers separated by commas, one per input, e.g. --ratio 0.8,0.2.") from None
