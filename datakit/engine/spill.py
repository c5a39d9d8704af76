"""A temporary folder for what an audit keeps between batches: Parquet parts per name, removed when the audit ends.

Per-batch findings and each rule family's state go to disk as they are made, so memory holds one batch at a time;
the end of the audit reads them back as lazy frames (`scan`), which polars streams. A process killed outright cannot
remove its folder: folder names carry the pid, and the next one made in the same place removes those of processes
that are gone (`temp_dir`).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import polars as pl

from datakit.io.atomic import pid_alive

_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def temp_dir(prefix: str = "datakit-", parent: str | Path | None = None) -> Path:
    """A new working folder `PREFIXpidPID-RANDOM` in `parent` (default: TMPDIR); first removes the folders of this
    kind that processes now gone left there."""
    where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    remove_stale_dirs(where, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}pid{os.getpid()}-", dir=where))


def remove_stale_dirs(parent: Path, prefix: str) -> list[Path]:
    """Remove `parent`'s folders made by `temp_dir(prefix)` in processes that no longer exist; returns them."""
    named = re.compile(re.escape(prefix) + r"pid(\d+)-\w+")
    stale = [p for p in parent.iterdir() if (found := named.fullmatch(p.name)) and not pid_alive(int(found[1]))
             and p.is_dir() and not p.is_symlink()]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


class Spill:
    def __init__(self, parent: str | Path | None = None, prefix: str = "datakit-"):
        self.dir = temp_dir(prefix, parent)
        self._parts: dict[str, int] = {}
        self._schemas: dict[str, pl.Schema] = {}
        self.rows: dict[str, int] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def add(self, name: str, frame: pl.DataFrame) -> None:
        """Append a part to `name`; parts after the first are cast to the first's schema, so they scan as one."""
        if name not in self._schemas:
            self._schemas[name] = frame.schema
            (self.dir / name).mkdir()
        elif frame.schema != self._schemas[name]:
            frame = frame.cast(dict(self._schemas[name]))
        if frame.height == 0 and self._parts.get(name):
            return
        k = self._parts.get(name, 0)
        with self.writing():
            frame.write_parquet(self.dir / name / f"part-{k:06d}.parquet", compression="lz4", statistics=False)
        self._parts[name] = k + 1
        self.rows[name] = self.rows.get(name, 0) + frame.height

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write into this folder: polars reports a full disk as a ComputeError naming the OS error; it
        becomes the OSError it is, naming the folder and what to do, so the user sees one clear line."""
        try:
            yield
        except pl.exceptions.ComputeError as e:
            found = re.search(r"os error (\d+)", str(e))
            if not found or int(found.group(1)) not in _FULL:
                raise
            code = int(found.group(1))
            raise OSError(code, f"{os.strerror(code)} (the audit keeps its working files here; set TMPDIR to a folder "
                                f"with more room)", str(self.dir)) from None

    def has(self, name: str) -> bool:
        return name in self._parts

    def scan(self, name: str) -> pl.LazyFrame | None:
        """Every part of `name` in the order added, as one lazy frame; None when nothing was added."""
        if name not in self._parts:
            return None
        files = [str(self.dir / name / f"part-{k:06d}.parquet") for k in range(self._parts[name])]
        return pl.scan_parquet(files)
