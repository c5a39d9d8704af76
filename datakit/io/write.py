"""Writing records back in a dataset's own container (JSON Lines, JSON array, Parquet, each optionally gzip), atomically.

Records stream into a temporary file that replaces the target only once complete (`datakit.io.atomic`),
so a crash mid-way leaves the old file or none. Output is canonical (UTF-8 JSON without ASCII escapes,
fixed gzip timestamp), so the same records always give the same bytes.
"""
from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from datakit.io.atomic import atomic_open
from datakit.io.read import RawFile

CONTAINERS = ("jsonl", "json", "parquet")


def _line(record: Any) -> str:
    """One record as compact JSON: the unit every text container is written in."""
    return json.dumps(record, ensure_ascii=False)


def _pretty(record: Any) -> str:
    """One element of a JSON array as `json.dumps(array, indent=2)` lays it out (strings hold no raw newline)."""
    return "  " + json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")


def write_records(path: str | Path, records: Iterable[Any], container: str = "jsonl", gzip_: bool = False) -> int:
    """Write `records` to `path` as `container` (jsonl | json | parquet), gzip-compressed when asked; returns the count."""
    if container not in CONTAINERS:
        raise ValueError(f"unknown container '{container}'; expected one of {', '.join(CONTAINERS)}.")
    with atomic_open(path, "wb") as raw:
        if not gzip_:
            return _write(raw, records, container, str(path))
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
            return _write(packed, records, container, str(path))


def _write(f: IO[bytes], records: Iterable[Any], container: str, name: str) -> int:
    n = 0
    if container == "parquet":
        rows = list(records)
        _parquet(f, rows, name)
        return len(rows)
    if container == "jsonl":
        for record in records:
            f.write((_line(record) + "\n").encode("utf-8"))
            n += 1
        return n
    for record in records:
        f.write((("[\n" if n == 0 else ",\n") + _pretty(record)).encode("utf-8"))
        n += 1
    f.write(b"\n]\n" if n else b"[]\n")
    return n


def _parquet(f: IO[bytes], rows: list[Any], name: str) -> None:
    import polars as pl

    try:
        frame = pl.DataFrame(rows, infer_schema_length=None)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as e:
        raise ValueError(f"{name}: records cannot be stored as one Parquet table ({type(e).__name__}: {e}). "
                         "Write JSON Lines instead (an output name ending in .jsonl).") from None
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    f.write(buffer.getvalue())


def container_of(path: str | Path, default: tuple[str, bool] = ("jsonl", False)) -> tuple[str, bool]:
    """(container, gzip) an output name asks for by its suffix (.jsonl, .json, .parquet, optionally .gz), else `default`."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    packed = bool(suffixes) and suffixes[-1] == ".gz"
    if packed:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    kind = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}.get(last)
    return (kind, packed) if kind else default


def suffix_for(container: str, gzip_: bool) -> str:
    """The file suffix a container is written with: .jsonl, .json or .parquet, plus .gz."""
    return "." + container + (".gz" if gzip_ else "")


def refuse_overwrite(command: str, inputs: Iterable[str | Path], outputs: Iterable[str | Path | None]) -> None:
    """Raise ValueError (a one-line user error) when an output would replace an input, or two outputs are one
    file: no command ever writes over what it reads. Paths are compared resolved, and as files (hard links)."""
    sources = [Path(p) for p in inputs]
    targets = [Path(p) for p in outputs if p is not None]
    for target in targets:
        for source in sources:
            if target.resolve() == source.resolve() or (target.exists() and source.exists() and target.samefile(source)):
                raise ValueError(f"{target}: is the input file, and {command} never writes over its input (nothing would "
                                 "be left to compare or recover). Choose another output path.")
    seen: dict[Path, Path] = {}
    for target in targets:
        if target.resolve() in seen:
            raise ValueError(f"{target}: named for two outputs of {command} ({seen[target.resolve()]} too); "
                             "give each output its own path.")
        seen[target.resolve()] = target


def sibling(path: str | Path, tag: str) -> Path:
    """`clean.jsonl` -> `clean.<tag>.jsonl`: a companion file next to an output (its rejected records, its overflow)."""
    p = Path(path)
    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    stem, dot, suffix = name.rpartition(".")
    if dot and stem and suffix.lower() in ("jsonl", "ndjson", "json", "parquet"):
        name = stem
    return p.with_name(f"{name}.{tag}.jsonl")


def rejection(source: str, line: int | None, raw: str, record: Any, reasons: list[dict]) -> dict:
    """One line of a rejected file: where the record came from, every reason, the record as parsed (None when it
    could not be) and its text as read, so the input can be rebuilt from clean + rejected."""
    return {"source": source, "line": line, "reasons": reasons, "record": record, "raw": raw}


def unreadable(raw: RawFile) -> list[dict]:
    """Rejected-file rows for the records of `raw` that are not valid JSON, which cannot be written back as records."""
    return [rejection(raw.path, r.line, r.text, None, [{
        "rule": "format.invalid_json", "severity": "error", "fix": "drop",
        "message": f"line {r.line} is not valid JSON: {r.error}. It cannot be written as a record; repair it by hand "
                   "or run `datakit fix` first."}]) for r in raw.records if r.error is not None]
