"""`datakit mix`: blend a task set with general data at a fixed ratio, the documents' remedy for catastrophic forgetting.

Each output record carries `_source` (the input it came from; a record that already has one keeps
it) and the mix is shuffled with the seed, so the same inputs, ratio and seed give the same file.
Without --total the mix is the largest one that repeats no record; a source asked for more than it
has is repeated, each repeat marked with `_datakit_upsampled_from`. All records must end in one
format: inputs in different formats need `--to` (converted through `datakit convert`), else the
command refuses. Unreadable records and records of no known format are left out and counted.

Memory holds a few integers per record, never the records: a first pass over each input notes which records can be
mixed; the draws and the shuffle are decided on their indices; a second pass spills each drawn record into temporary
bucket files by its output position, and the output is written one bucket at a time.
"""
from __future__ import annotations

import math
import pickle
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from rich.console import Console
from rich.table import Table

from datakit.balance import UPSAMPLED, proportional_counts
from datakit.convert import TARGETS, NotRepresentable, convert_record
from datakit.engine.inputs import BATCH_BYTES, BATCH_RECORDS
from datakit.engine.spill import Spill
from datakit.io.lock import output_lock
from datakit.io.read import InputError, RawRecord, open_raw
from datakit.io.write import container_notes, container_of, refuse_overwrite, write_records
from datakit.normalise import detect_format

SOURCE = "_source"
MAX_BUCKETS = 256  # spill files open at once; past MAX_BUCKETS x BATCH_RECORDS records a bucket holds more than a batch


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
    `output`, whose name picks the container (.jsonl, .json, .parquet, optionally .gz; any other name: JSON Lines, with
    a note)."""
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
    formats = {fmt for pool in pools for fmt in pool.formats}
    if len(formats) > 1:
        found = "; ".join(f"{pool.path}: {', '.join(sorted(pool.formats))}" for pool in pools)
        raise ValueError(f"the inputs hold different record formats ({found}); pass --to alpaca|sharegpt|openai to "
                         "convert them into one.")
    fmt = formats.pop() if formats else (to or "unknown")
    sizes = [len(pool.usable) for pool in pools]
    shares = [s / sum(ratio) for s in ratio] if ratio is not None else [n / max(sum(sizes), 1) for n in sizes]
    if any(n == 0 and s > 0 for n, s in zip(sizes, shares)):
        empty = next(str(p) for p, n, s in zip(paths, sizes, shares) if n == 0 and s > 0)
        raise ValueError(f"{empty}: no usable record to mix (run `datakit audit {empty}` to see why).")
    if total is None:
        total = min(math.floor(n / s + 1e-9) for n, s in zip(sizes, shares) if s > 0)
    if total < 0:
        raise ValueError(f"--total {total}: must be >= 0.")
    counts = proportional_counts({str(i): s for i, s in enumerate(shares)}, total)
    wants = [counts[str(i)] for i in range(len(pools))]
    container, gzip_ = container_of(out_path)
    result = MixResult(output=out_path, format=fmt, total=total, container=container, gzip=gzip_, sources=[
        SourceShare(pool.path, len(pool.usable), want, max(want - len(pool.usable), 0), pool.left_out)
        for pool, want in zip(pools, wants)])
    positions = _slot_positions(total, seed)
    with output_lock("datakit mix", [out_path]), Spill() as work, _Buckets(work.dir, total) as buckets:
        slots = memoryview(positions)  # each input's draws take the next `want` slots
        for i, (pool, want) in enumerate(zip(pools, wants)):
            if want:
                _spill(pool, _draw_ranks(len(pool.usable), seed, i), slots[:want], to, buckets)
            slots = slots[want:]
        write_records(out_path, buckets.in_order(), container, gzip_)
    result.notes += container_notes(out_path)
    left_out = sum(s.left_out for s in result.sources)
    if left_out:
        result.notes.append(f"{left_out} record(s) left out: unreadable, of no known format"
                            f"{' or not convertible to ' + to if to else ''}; run `datakit fix` / `datakit convert` on the inputs.")
    if any(s.repeated for s in result.sources):
        result.notes.append(f"some sources have fewer records than their share of {total}; repeats carry '{UPSAMPLED}'.")
    return result


@dataclass
class _Pool:
    """What the first pass keeps of one input: which records can be mixed (by index), their formats, the rest counted."""

    path: str
    usable: array  # indices, in the file's record order, of the records that can be mixed
    formats: dict[str, int]  # format -> usable records in it
    left_out: int
    checksum: str


def _pool(path: str | Path, to: str | None) -> _Pool:
    """Pass 1 over one input: the indices and formats of its usable records (converted to `to` when given)."""
    usable = array("q")
    formats: dict[str, int] = {}
    left_out = index = 0
    with open_raw(path) as stream:
        for batch in stream.batches(BATCH_BYTES, BATCH_RECORDS):
            for rec in batch:
                if (found := _usable(rec, to)) is None:
                    left_out += 1
                else:
                    usable.append(index)
                    formats[found[0]] = formats.get(found[0], 0) + 1
                index += 1
    return _Pool(str(path), usable, formats, left_out, stream.checksum)


def _usable(rec: RawRecord, to: str | None) -> tuple[str, Any] | None:
    """(format, record as it is mixed) of a record that can be mixed; None for one that is unreadable, of no known
    format, or not convertible to `to`."""
    fmt = detect_format(rec.obj) if isinstance(rec.obj, dict) else None
    if rec.error is not None or fmt in (None, "prompts"):
        return None
    if to is None:
        return fmt, rec.obj
    try:
        return to, convert_record(rec.obj, to)[0]
    except NotRepresentable:
        return None


def _slot_positions(total: int, seed: int) -> array:
    """The output position of each slot of the mix (slots: the inputs in order, each input's draws in order), as
    shuffling the list of slots with the seed's generator would place them."""
    shuffled = array("q", range(total))
    random.Random(f"{seed}/mix").shuffle(shuffled)
    positions = array("q", bytes(8 * total))
    for position, slot in enumerate(shuffled):
        positions[slot] = position
    return positions


def _draw_ranks(n: int, seed: int, i: int) -> array:
    """For each of input i's n usable records, its rank in the input's seeded draw: draws 0..n-1 take every record
    once, draw j >= n repeats the record of rank j % n."""
    ranks = array("q", bytes(8 * n))
    for rank, record in enumerate(random.Random(f"{seed}/{i}").sample(range(n), n)):
        ranks[record] = rank
    return ranks


def _spill(pool: _Pool, ranks: array, positions: memoryview, to: str | None, buckets: _Buckets) -> None:
    """Pass 2 over one input: each record its draws take (one per output position in `positions`), tagged with its
    source (a repeat also with UPSAMPLED), goes to the bucket of that position. The input must be the file pass 1 read."""
    want = len(positions)
    changed = InputError(f"{pool.path}: the file changed while it was being mixed; run `datakit mix` again once nothing "
                         "writes to it.")
    n, next_usable, index = len(pool.usable), 0, 0
    with open_raw(pool.path) as stream:
        for batch in stream.batches(BATCH_BYTES, BATCH_RECORDS):
            for rec in batch:
                if next_usable < n and pool.usable[next_usable] == index:
                    if ranks[next_usable] < want:
                        if (found := _usable(rec, to)) is None:
                            raise changed
                        tagged = found[1] | ({} if SOURCE in found[1] else {SOURCE: pool.path})
                        for draw in range(ranks[next_usable], want, n):
                            buckets.add(positions[draw], tagged | {UPSAMPLED: rec.line} if draw >= n else tagged)
                    next_usable += 1
                index += 1
        if stream.checksum != pool.checksum:
            raise changed


class _Buckets:
    """Mixed records spilled to temporary files by output position: bucket b holds positions [b * size, (b + 1) * size),
    so the output is written one bucket in memory at a time, in order."""

    def __init__(self, folder: Path, total: int):
        self.total = total
        count = min(math.ceil(total / BATCH_RECORDS), MAX_BUCKETS)
        self.size = math.ceil(total / count) if count else 0
        self.paths = [folder / f"bucket-{b:05d}.pickle" for b in range(count)]
        self._files = [open(p, "wb") for p in self.paths]  # noqa: SIM115 -- closed by close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files:
            f.close()

    def add(self, position: int, record: Any) -> None:
        pickle.dump((position, record), self._files[position // self.size], protocol=pickle.HIGHEST_PROTOCOL)

    def in_order(self) -> Iterator[Any]:
        """Every record by output position, reading one bucket at a time (pickle keeps every value as it was)."""
        self.close()
        for b, path in enumerate(self.paths):
            first = b * self.size
            held: list[Any] = [None] * min(self.size, self.total - first)
            with open(path, "rb") as f:
                while True:
                    try:
                        position, record = pickle.load(f)
                    except EOFError:
                        break
                    held[position - first] = record
            yield from held


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
