"""Where an audit's batches come from: files streamed from disk, or a dataset already in memory.

Either way a batch is a `Dataset` of consecutive records whose ids and lines are those of the whole input, and
each file read is described by a `SourceFile` (how it is stored, its checksum, the reader's notes) once read.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datakit.io.read import InputError, RawRecord, open_raw
from datakit.normalise import normalise, note_finding
from schemas.dataset import Dataset, SourceFile

# A batch holds about this much record text (and at most BATCH_RECORDS records). The normalised frame of a batch
# takes ~10x its text in memory and measurements add to it: 8 MB keeps a worker near 400 MB (imports included).
BATCH_BYTES = 8 << 20
BATCH_RECORDS = 10_000
SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".jsonl.gz", ".ndjson.gz", ".json.gz", ".parquet.gz")


def shard_files(path: str | Path) -> list[Path]:
    """The dataset files of `path`: itself, or the files of a directory with a dataset suffix, in name order."""
    p = Path(path)
    if not p.is_dir():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES))
    if not files:
        raise InputError(f"{p}: directory holds no dataset files (.jsonl, .json, .parquet, optionally .gz).")
    return files


@dataclass
class RawBatch:
    """Consecutive records as read, not yet normalised: what is sent to a worker (normalising is per-batch work)."""

    path: str
    records: list[RawRecord]
    first_id: int
    label_field: str | None = None

    def normalised(self) -> Dataset:
        return normalise(self.records, self.path, self.label_field, self.first_id)


@dataclass
class FileInput:
    """Records streamed from one file or a directory of shards, batch by batch, never the whole input at once."""

    path: str | Path
    label_field: str | None = None
    batch_bytes: int = BATCH_BYTES
    batch_records: int = BATCH_RECORDS
    sources: list[SourceFile] = field(default_factory=list)
    size: int = 0  # bytes on disk of every file, for a progress bar
    position: int = 0  # bytes consumed so far

    def __post_init__(self) -> None:
        self.files = shard_files(self.path)
        self.size = sum(f.stat().st_size for f in self.files if f.exists())

    def even_out(self, workers: int) -> None:
        """Cut the input into a multiple of `workers` batches of about equal size, so that no worker computes the last
        batch alone while the others wait (on a 50,000-record input: 6 batches of ~8,500 records, not 5 of 10,000 on
        two cores). Batch sizes only shrink, and never change an answer. The records per byte are estimated from the
        first megabyte of the first file (only plain files: a compressed one keeps the sizes asked)."""
        plain = [f for f in self.files if f.exists() and not f.name.lower().endswith(".gz")]
        if workers < 2 or len(plain) != len(self.files) or not self.size:
            return
        with open(plain[0], "rb") as f:
            sample = f.read(1 << 20)
        if not sample:
            return
        records = math.ceil(1.01 * self.size * max(1, sample.count(b"\n")) / len(sample))  # 1%: rather no tiny tail
        batches = max(math.ceil(records / self.batch_records), math.ceil(self.size / self.batch_bytes))
        batches = math.ceil(batches / workers) * workers
        self.batch_records = min(self.batch_records, math.ceil(records / batches))
        self.batch_bytes = min(self.batch_bytes, math.ceil(self.size / batches))

    def batches(self) -> Iterator[RawBatch]:
        first_id, done = 0, 0
        for file in self.files:
            stream = open_raw(file)
            for records in stream.batches(self.batch_bytes, self.batch_records):
                self.position = done + stream.position
                yield RawBatch(stream.path, records, first_id, self.label_field)
                first_id += len(records)
            done += stream.size
            self.position = done
            self.sources.append(SourceFile(stream.path, stream.container, stream.gzip, stream.checksum, stream.records,
                                           [note_finding(stream.path, n) for n in stream.notes]))


@dataclass
class FrameInput:
    """A dataset already in memory (a training set, an edited copy, a test's records), cut into batches."""

    dataset: Dataset
    batch_records: int = BATCH_RECORDS
    sources: list[SourceFile] = field(default_factory=list)
    position: int = 0  # records handed out so far

    @property
    def size(self) -> int:
        return self.dataset.frame.height

    def batches(self) -> Iterator[Dataset]:
        ds = self.dataset
        for lo in range(0, max(ds.frame.height, 1), self.batch_records):
            frame = ds.frame.slice(lo, self.batch_records)
            ids = frame["id"]
            read = ds.read_findings.filter(pl.col("record_id").is_between(ids.min(), ids.max())) if frame.height else ds.read_findings
            self.position = lo + frame.height
            yield Dataset(ds.path, frame, read, ds.container, ds.gzip, ds.checksum, measured=set(ds.measured))
        self.sources = [ds.source_file()]


@dataclass
class LinedInput:
    """Records already read and perhaps edited, kept on disk as JSON lines of {"line": n, "record": {...}} (what
    `datakit fix` carries between its passes): audited as if read from `source`, at their original lines."""

    path: Path
    source: str
    label_field: str | None = None
    batch_records: int = BATCH_RECORDS
    sources: list[SourceFile] = field(default_factory=list)
    position: int = 0

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def batches(self) -> Iterator[RawBatch]:
        first_id, records = 0, []
        with open(self.path, encoding="utf-8") as f:
            for text in f:
                self.position += len(text.encode("utf-8"))
                item = json.loads(text)
                records.append(RawRecord(item["line"], json.dumps(item["record"], ensure_ascii=False), item["record"]))
                if len(records) == self.batch_records:
                    yield RawBatch(self.source, records, first_id, self.label_field)
                    first_id, records = first_id + len(records), []
        if records or not first_id:
            yield RawBatch(self.source, records, first_id, self.label_field)
        self.sources = [SourceFile(self.source, records=first_id + len(records))]
