"""Random access to the records of a dataset file by line, without holding the file in memory.

The review page asks for one record at a time among hundreds of thousands. A plain JSON Lines file is indexed by the
byte offset of each line (one pass over the bytes, no parsing: ~8 bytes a line) and a record is read back through the
reader's own `RawRange`, so its text, and therefore its checksum, is the one `datakit fix` sees. Any other container
(a JSON array, gzip, Parquet) is streamed once through `open_raw` into a spool file of one JSON line per record, indexed
the same way.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from datakit.io.atomic import atomic_open
from datakit.io.read import CHUNK_SIZE, GZIP_MAGIC, RawRange, RawRecord, _first_line_is_object, open_raw
from datakit.progress import Stages


class RecordStore:
    """`get(line)` -> the record at that line (None where the input has none: a blank line, past the end)."""

    def __init__(self, path: str | Path, work: Path, *, progress: bool = False):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            gzipped = f.read(2) == GZIP_MAGIC
            f.seek(0)
            plain = not gzipped and _first_line_is_object(f, 1 << 20)  # Parquet, arrays, UTF-16: not plain lines
        with Stages(enabled=progress) as stages:
            if plain:
                with stages.step(f"indexing the lines of {self.path.name}"):
                    self._starts, self._size = _line_starts(self.path)
                self._spool = None
            else:
                self._spool = work / "records.jsonl"
                self._lines, self._offsets = self._spool_records(stages)

    def get(self, line: int) -> RawRecord | None:
        if self._spool is None:
            if not 1 <= line <= len(self._starts):
                return None
            start = int(self._starts[line - 1])
            end = int(self._starts[line]) if line < len(self._starts) else self._size
            piece = RawRange(self.path, start, end, line)
            return next((r for batch in piece.batches() for r in batch), None)
        at = int(np.searchsorted(self._lines, line))
        if at >= len(self._lines) or self._lines[at] != line:
            return None
        with open(self._spool, "rb") as f:
            f.seek(int(self._offsets[at]))
            no, text, error, rule = json.loads(f.readline())
        return RawRecord(no, text, None if error is not None else json.loads(text), error, rule)

    def texts(self, lines: list[int]) -> Iterator[tuple[int, str | None]]:
        """(line, the record's text as the reader gives it, or None where there is no record) for many lines at once
        (a bulk decision needs their checksums): a plain JSON Lines line is its bytes decoded when they are plain
        UTF-8 with no carriage return or byte-order mark; any other line is read through `get`."""
        if self._spool is not None:
            for line in lines:
                rec = self.get(line)
                yield line, None if rec is None else rec.text
            return
        with open(self.path, "rb") as f:
            for line in lines:
                if not 1 <= line <= len(self._starts):
                    yield line, None
                    continue
                start = int(self._starts[line - 1])
                end = int(self._starts[line]) if line < len(self._starts) else self._size
                f.seek(start)
                data = f.read(end - start).removesuffix(b"\n")
                try:
                    text = data.decode("utf-8") if data.strip() and b"\r" not in data and line > 1 else None
                except UnicodeDecodeError:
                    text = None
                if text is None:
                    rec = self.get(line)
                    text = None if rec is None else rec.text
                yield line, text

    def _spool_records(self, stages: Stages) -> tuple[np.ndarray, np.ndarray]:
        lines, offsets, at = [], [], 0
        stream = open_raw(self.path)
        advance = stages.records(f"indexing the records of {self.path.name}", stream.size)
        with atomic_open(self._spool, "wb", encoding=None) as out:
            count = 0
            for batch in stream.batches():
                for rec in batch:
                    data = (json.dumps([rec.line, rec.text, rec.error, rec.rule], ensure_ascii=False) + "\n").encode(
                        "utf-8", "surrogatepass")
                    out.write(data)
                    lines.append(rec.line)
                    offsets.append(at)
                    at += len(data)
                count += len(batch)
                advance(stream.position, count)
        return np.asarray(lines, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _line_starts(path: Path) -> tuple[np.ndarray, int]:
    """Byte offset of each line's start (line N starts at [N - 1]) and the file's size."""
    pieces, base = [np.zeros(1, dtype=np.int64)], 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE * 4):
            pieces.append(np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10).astype(np.int64) + base + 1)
            base += len(chunk)
    starts = np.concatenate(pieces)
    if len(starts) > 1 and starts[-1] == base:  # the last line ends with its newline: no line starts after it
        starts = starts[:-1]
    return starts, base
