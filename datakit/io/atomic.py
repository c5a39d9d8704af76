"""Atomic writes: content goes to a temporary file in the target's folder, then `os.replace` renames it.

A crash or Ctrl-C leaves either the old file or the new one, never half of one. A process killed outright
(kill -9, the OOM killer) cannot remove its temporary file, so temporary names carry the writer's pid
(`.clean.jsonl.pid1234.x8k2.tmp`): the next run writing the same target removes those whose process is gone
(`remove_stale_temps`), and never one of a writer still running.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# `.NAME.pidPID.RANDOM.tmp` (atomic_open) or `.NAME.pidPID.pending` (a finished file waiting for its rename);
# RANDOM has no dot, so a name parses one way only.
_TEMP = re.compile(r"\.(?P<base>.+)\.pid(?P<pid>\d+)\.(?:\w+\.tmp|pending)")


def temp_prefix(name: str) -> str:
    """The start of this process's temporary names for a target called `name`."""
    return f".{name}.pid{os.getpid()}."


def pending_path(target: Path) -> Path:
    """Where a finished file waits before it is renamed onto `target` (for outputs put in place together)."""
    return target.with_name(f"{temp_prefix(target.name)}pending")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None if "b" in mode else "\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_owner(name: str, target: str) -> int | None:
    """The pid in `name` when it is a temporary file of `target` (or of one of its pending files), else None."""
    found = _TEMP.fullmatch(name)
    if found is None:
        return None
    base = found["base"]
    if base == target or _temp_owner(base, target) is not None:
        return int(found["pid"])
    return None


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove the temporary files that writers of `target` killed mid-write left beside it; returns them."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    removed = []
    for entry in target.parent.iterdir():
        pid = _temp_owner(entry.name, target.name)
        if pid is not None and pid != os.getpid() and not pid_alive(pid) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
