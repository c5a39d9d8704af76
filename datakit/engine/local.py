"""The local engine: batches in order on this machine, their findings and state spilled to disk as they come, then
the end of the audit (clusters across records, each family's `finish`) over what was kept."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datakit.engine.batch import LSH, BatchOutput, Plan, audit_batch
from datakit.engine.inputs import FileInput, FrameInput, LinedInput
from datakit.engine.spill import Spill
from datakit.measure.lsh import cluster_state, lsh_params
from datakit.measure.parallel import SERIAL_ENV, cores
from datakit.progress import Stages
from schemas.dataset import SourceFile
from validators.base import RuleContext

FINDINGS = "findings"


@dataclass
class EngineRun:
    """What an engine leaves for the report: summaries per family, the files read, time per stage; the findings and
    the per-record state stay in the spill."""

    summaries: dict[str, dict]
    sources: list[SourceFile]
    records: int
    timings: Counter = field(default_factory=Counter)


def run_local(inputs: FileInput | FrameInput | LinedInput, plan: Plan, ctx: RuleContext, spill: Spill, stages: Stages,
              workers: int | None = None) -> EngineRun:
    """Every batch through `audit_batch`, in order, spilled as it comes; then `finish`. Batches run in `workers`
    processes (default: one per core when the input spans several batches), so reading, normalising, measuring and
    checking use every core; results are taken in input order, so the answers never depend on the workers."""
    timings: Counter = Counter()
    advance = stages.records(f"auditing {Path(ctx.path).name or 'records'}", inputs.size)
    records = 0
    workers = _workers(inputs, workers)
    if isinstance(inputs, FileInput):
        inputs.even_out(workers)
    for out in _outputs(inputs, plan, ctx, workers, timings):
        timings.update(out.timings)
        started = time.perf_counter()
        spill.add(FINDINGS, out.findings)
        for state, frame in out.states.items():
            spill.add(state, frame)
        timings["spill"] += time.perf_counter() - started
        records += out.records
        advance(inputs.position, records)
    ctx.sources = inputs.sources
    summaries = finish(plan, ctx, spill, stages, timings)
    return EngineRun(summaries, inputs.sources, records, timings)


def _workers(inputs: FileInput | FrameInput | LinedInput, asked: int | None) -> int:
    if asked is not None:
        return asked
    several = isinstance(inputs, FileInput) and inputs.size > 2 * inputs.batch_bytes
    return cores() if several else 1


def _outputs(inputs, plan: Plan, ctx: RuleContext, workers: int, timings: Counter) -> Iterator[BatchOutput]:
    """The output of every batch in input order, computed here or in `workers` spawned processes (polars must not
    be forked); two batches per worker are in flight (one computing, one queued, so no worker waits while this process
    reads), so memory holds a few batches, never the input."""
    batches = _timed_iter(inputs.batches(), timings, "read")
    if workers <= 1:
        yield from (audit_batch(batch, plan, ctx) for batch in batches)
        return
    with _main_module_hidden(), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                    initializer=_start_worker, initargs=(plan, ctx, os.getpid())) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(_audit_in_worker, batch))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """A spawned worker runs the main module of this process again unless multiprocessing cannot find it: a user's
    script that calls `datakit.audit()` without an `if __name__ == "__main__":` guard would audit again in every worker.
    The workers need only datakit, so while they start the main module's file is hidden."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


_worker: tuple[Plan, RuleContext] | None = None  # set in each batch worker


def _start_worker(plan: Plan, ctx: RuleContext, parent: int) -> None:
    global _worker
    os.environ[SERIAL_ENV] = "1"  # the cores are taken by the batch workers: measurements run in-process
    _end_with_parent(parent)
    _worker = (plan, ctx)


def _end_with_parent(parent: int) -> None:
    """Linux: this worker gets SIGTERM when the audit process dies, however it dies (killed, out of memory), so no
    orphan keeps computing a batch nobody will read; if it already died while this worker started, end now."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _audit_in_worker(batch) -> BatchOutput:
    return audit_batch(batch, *_worker)


def _timed_iter(items: Iterator, timings: Counter, name: str) -> Iterator:
    while True:
        started = time.perf_counter()
        item = next(items, None)
        timings[name] += time.perf_counter() - started
        if item is None:
            return
        yield item


def finish(plan: Plan, ctx: RuleContext, spill: Spill, stages: Stages, timings: Counter,
           clusters: Callable[[], pl.DataFrame] | None = None) -> dict[str, dict]:
    """Clusters across records when a rule needs them, then each family's `finish` over its kept state; their
    findings join the spill. Shared by every engine: `clusters()` finds the near-duplicate clusters where the LSH
    state lies (default: the spill)."""
    if plan.near_dup:
        cfg = ctx.config.near_duplicate
        with stages.step("near-duplicate clusters"), _timed(timings, "near-duplicate clusters"):
            found = clusters() if clusters else cluster_state(spill.scan(LSH), cfg.threshold, cfg.num_perm)
            ctx.measured["near_dup"] = found
            ctx.measured["lsh_params"] = lsh_params(cfg.threshold, cfg.num_perm)
    summaries = {}
    for rule in plan.rules:
        with stages.step(f"rules: {rule.family} (across records)"), _timed(timings, f"finish {rule.family}"):
            found, summaries[rule.family] = rule.finish(spill.scan(rule.family), ctx)
            spill.add(FINDINGS, found)
    return summaries


class _timed:
    def __init__(self, timings: Counter, name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] += time.perf_counter() - self.started
