"""One writer per output file: a command locks each file it writes from before its work until the files are in place.

Two runs writing the same output at once would each rename a complete file into place, but a command's outputs
that belong together (fix's CLEAN and REJ) could then come from different runs, and the later run's work would
silently replace the earlier one's. With the lock, the second run stops at once with one line naming the lock and
the process holding it. The lock is `fcntl.flock` on `.NAME.lock` beside the output: the kernel lets go of it when
its holder dies, however it dies, so a killed run never leaves an output locked. Holding it, the run also removes
the temporary files that killed writers of the same output left behind (`atomic.remove_stale_temps`).
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from datakit.io.atomic import remove_stale_temps


class OutputBusy(ValueError):
    """Another run is writing the same output file; the message names the lock and its holder."""


def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def output_lock(command: str, outputs: Iterable[str | Path | None], *, wait: bool = False) -> Iterator[None]:
    """Hold the lock of every output (None entries are skipped) for the block; OutputBusy when one is held elsewhere,
    or, with `wait`, once it is let go (for a short update of a file several runs share)."""
    targets = {Path(p).resolve(): Path(p) for p in outputs if p is not None}
    with ExitStack() as stack:
        for resolved in sorted(targets):
            stack.enter_context(_locked(command, targets[resolved], wait))
            remove_stale_temps(targets[resolved])
        yield


@contextmanager
def _locked(command: str, target: Path, wait: bool) -> Iterator[None]:
    lock = lock_path(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputBusy(f"{target}: another run is writing this file: {holder} holds the lock {lock}. Wait for it "
                             "to finish, or choose another output path.") from None
        if _still_named(fd, lock):
            break
        os.close(fd)  # its holder removed it as it let go: lock the file now under that name
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({command})\n".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held, so that whoever opens the name next gets a new file
        os.close(fd)


def _still_named(fd: int, lock: Path) -> bool:
    """Whether the locked file is the one `lock` names now (not one unlinked by the holder before)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock))
    except FileNotFoundError:
        return False
