"""Run independent numpy batches on every available core, in forked worker processes.

Forking is cheap (the children inherit loaded tables such as langdetect's profiles) and safe here because
the children only run numpy, pyarrow, hashlib, tiktoken and `re`; polars, which must not be used after a
fork, stays in the parent. Where fork is unavailable, or there is a single batch or core, the batches run in this
process. Results come back in order, so the output never depends on the number of workers.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


SERIAL_ENV = "DATAKIT_SERIAL_MEASURES"  # set in processes that are themselves one of several workers


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def workers(batches: int) -> int:
    """Processes to use: one per available core, at most one per batch; 1 when fork is unavailable or this process
    is already one of the audit engine's batch workers (the cores are taken)."""
    if batches < 2 or "fork" not in mp.get_all_start_methods() or os.environ.get(SERIAL_ENV):
        return 1
    return max(1, min(batches, cores()))


def map_batches(fn: Callable[[Job], Result], jobs: Iterable[Job], batches: int,
                initializer: Callable[[], None] | None = None) -> Iterator[Result]:
    """`map(fn, jobs)`, spread over forked workers when there are several batches and cores.

    `fn` and `initializer` must be module-level functions (they are pickled by name); `batches` is the
    number of jobs, used to decide whether starting workers is worth it.
    """
    n = workers(batches)
    if n == 1:
        if initializer:
            initializer()
        yield from map(fn, jobs)
        return
    with mp.get_context("fork").Pool(n, initializer=initializer) as pool:
        yield from pool.imap(fn, jobs)
