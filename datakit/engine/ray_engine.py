"""The Ray engine (`datakit audit --engine ray`): the local engine's batches run as Ray Data `map_batches` over pieces of
the input files where they lie, the near-duplicate LSH as a shuffle on band keys, and the same `finish` for every rule.

A piece is a whole file, or a byte range of a large plain JSON Lines file (`datakit.io.read.line_ranges`); a cheap
first pass counts each piece's lines and records, so every piece knows its first line and first record id and the
records, ids and lines are those of the local engine. Each worker runs `batch.audit_batch` on its pieces' batches;
the driver spills their findings and state in input order, exactly as the local engine does, except the band keys
and signatures, which stay on the cluster: rows (band, key, id) are grouped by a hash of the key, each group yields
its buckets' candidate pairs as `lsh.candidate_pairs` forms them, and only the candidates' signatures come to the
driver to be verified and clustered (`lsh.cluster_candidates`). Ray is imported only here, and only when asked for.
"""
from __future__ import annotations

import logging
import os
import pickle
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from functools import partial
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from datakit.engine.batch import LSH, Plan, audit_batch
from datakit.engine.inputs import FileInput, FrameInput, LinedInput
from datakit.engine.local import FINDINGS, EngineRun, _timed, finish, run_local
from datakit.engine.spill import Spill
from datakit.io.read import LineNotes, RawRange, count_records, line_ranges, open_raw
from datakit.measure.lsh import candidate_pairs, cluster_candidates, cluster_frame, lsh_params
from datakit.measure.parallel import SERIAL_ENV
from datakit.normalise import normalise, note_finding
from datakit.progress import Stages
from schemas.dataset import SourceFile
from validators.base import RuleContext

# A large JSON Lines file is cut into pieces of about this many bytes: enough pieces to keep every worker busy, each
# read in the engine's usual batches. DATAKIT_RAY_PIECE_BYTES overrides it (tests cut a small file into many pieces).
PIECE_BYTES = 32 << 20
PIECE_BYTES_ENV = "DATAKIT_RAY_PIECE_BYTES"
SHUFFLE_GROUPS_PER_CPU = 4  # groups of band buckets per worker CPU in the LSH shuffle: each group fits in memory
BAND_ROW_BYTES = 4 + 8 + 8 + 4  # one shuffled row: band (int32), key (uint64), id (int64), group (int32)
END = "end"  # the last output row of a piece: what its reader learnt about the file (`PieceEnd`)
SCHEMA = pa.schema([("order", pa.int64()), ("seq", pa.int64()), ("name", pa.string()), ("payload", pa.large_binary())])


class RayUnavailable(ValueError):
    """Ray is not installed, or the cluster cannot be reached: one line for the user, never a traceback."""


class TaskFailed(Exception):
    """What a map task raised, carried as it is: Ray Data appends its retry advice to an exception's message, and
    the user is to read the local engine's message (the remote traceback is a note, shown with DATAKIT_DEBUG)."""


@dataclass(frozen=True)
class Piece:
    """One worker's unit of reading: a whole file, or a byte range of a plain JSON Lines file (`whole` False), with
    the file line and the record id it starts at."""

    order: int
    file: int  # index of its file in the input
    path: str
    start: int
    end: int
    whole: bool
    first_line: int = 1
    first_id: int = 0


@dataclass
class PieceEnd:
    """What reading a piece told about its file: the whole file's `SourceFile`, or a range's records and notes."""

    records: int
    timings: Counter
    source: SourceFile | None = None
    line_notes: LineNotes | None = None


def run_ray(inputs: FileInput | FrameInput | LinedInput, plan: Plan, ctx: RuleContext, spill: Spill, stages: Stages,
            address: str | None) -> EngineRun:
    """`run_local`'s contract on a Ray cluster (`address`; default: a local one on this machine's cores). Only files
    need the cluster: a dataset already in memory is audited by the local engine."""
    if not isinstance(inputs, FileInput):
        return run_local(inputs, plan, ctx, spill, stages)
    timings: Counter = Counter()
    with stages.step("connecting to Ray"), _timed(timings, "ray: connect"):
        ray, started = _connect(address)
    try:
        return _run(ray, inputs, plan, ctx, spill, stages, timings)
    except Exception as e:
        if (raised := _task_error(e)) is e:
            raise
        raise raised from None
    finally:
        if started:
            ray.shutdown()


def _connect(address: str | None) -> tuple[Any, bool]:
    """The `ray` module, connected, and whether this call started the connection (and so must end it). Ray Data is
    set to keep outputs in input order and to stay quiet: the audit shows its own progress."""
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'datakit[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as e:
            raise RayUnavailable(f"cannot reach the Ray cluster at {address} ({e}); start it with `ray start --head` (a "
                                 "cluster with token authentication also needs RAY_AUTH_MODE=token and its token).") from None
    data = ray.data.DataContext.get_current()
    data.enable_progress_bars = False
    data.print_on_execution_start = False
    data.execution_options.preserve_order = True  # outputs in input order: the spill is the local engine's
    # tasks, not the hash shuffle's aggregator actors (which took 5-10 s to start, and CPUs, on a small cluster)
    data.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a task's error reaches the user once, as the CLI words it
    return ray, started


def _task_error(error: BaseException) -> BaseException:
    """The exception a task raised on the cluster (an unreadable file, say), out of Ray's wrappers, so the CLI
    reports it as the local engine would; `error` itself when no task raised it."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "cause", None) is not None:  # a RayTaskError: the task's own exception is its `cause`
            error = seen = seen.cause
        elif isinstance(seen, TaskFailed):
            return seen.args[0]
        else:
            seen = seen.__cause__
    return error


def _run(ray, inputs: FileInput, plan: Plan, ctx: RuleContext, spill: Spill, stages: Stages, timings: Counter) -> EngineRun:
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    with stages.step("counting records per piece"), _timed(timings, "ray: count records per piece"):
        pieces = _counted(ray, _pieces(inputs.files, _piece_bytes()))
        checksums = {p.file: ray.remote(_checksum).remote(p.path) for p in pieces if not p.whole and p.start == 0}
    with _timed(timings, "ray: map (wall)"):
        out = _map(ray, pieces, inputs, plan, ctx, stages.records(f"auditing {Path(ctx.path).name}", inputs.size))
    with stages.step("collecting findings and state"), _timed(timings, "ray: collect + spill"):
        ends = _spill(out, spill)
    sources = _sources(pieces, ends, dict(zip(checksums, ray.get(list(checksums.values())), strict=True)))
    for end in ends.values():
        timings.update(end.timings)
    inputs.sources = ctx.sources = sources
    cluster = partial(_clusters, out, ctx, cpus * SHUFFLE_GROUPS_PER_CPU, timings)
    summaries = finish(plan, ctx, spill, stages, timings, cluster)
    return EngineRun(summaries, sources, sum(e.records for e in ends.values()), timings)


# --- pieces -----------------------------------------------------------------------------------------------------------


def _piece_bytes() -> int:
    return int(os.environ.get(PIECE_BYTES_ENV, PIECE_BYTES))


def _pieces(files: list[Path], piece_bytes: int) -> list[Piece]:
    """Every file as one piece, or as byte ranges where it is a large plain JSON Lines file, in input order."""
    pieces = []
    for index, file in enumerate(files):
        ranges = line_ranges(file, piece_bytes)
        for start, end in ranges:
            pieces.append(Piece(len(pieces), index, str(file), start, end, whole=len(ranges) == 1))
    return pieces


def _counted(ray, pieces: list[Piece]) -> list[Piece]:
    """The pieces with their first line and first record id, from every piece's lines and records counted on the
    cluster (the last piece is never counted: nothing follows it)."""
    counts = ray.get([ray.remote(_count).remote(p) for p in pieces[:-1]]) + [(0, 0)]
    out, first_id, first_line = [], 0, 1
    for piece, (lines, records) in zip(pieces, counts, strict=True):
        if piece.start == 0:
            first_line = 1
        out.append(replace(piece, first_line=first_line, first_id=first_id))
        first_line, first_id = first_line + lines, first_id + records
    return out


def _count(piece: Piece) -> tuple[int, int]:
    """(lines, records) of a piece; a whole file's lines are never needed."""
    if piece.whole:
        return 0, count_records(piece.path)
    return RawRange(piece.path, piece.start, piece.end).count()


def _checksum(path: str) -> str:
    """The checksum the reader gives a whole file (sha256 of its bytes on disk), for a file read in ranges."""
    import hashlib

    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def _sources(pieces: list[Piece], ends: dict[int, PieceEnd], checksums: dict[int, str]) -> list[SourceFile]:
    """One `SourceFile` per input file: a whole file's from its reader; a ranged file's from its ranges' records and
    notes added up, with the checksum of the whole file."""
    sources = []
    for file, group in groupby(pieces, key=attrgetter("file")):
        first, *rest = group
        parts = [ends[first.order]] + [ends[p.order] for p in rest]
        if first.whole:
            sources.append(parts[0].source)
            continue
        notes = sum((part.line_notes for part in parts), LineNotes())
        sources.append(SourceFile(first.path, "jsonl", False, checksums[file], sum(part.records for part in parts),
                                  [note_finding(first.path, n) for n in notes.notes()]))
    return sources


# --- the map phase: every piece's batches through audit_batch ---------------------------------------------------------


def _audit_pieces(pieces: pa.Table, plan: Plan, ctx: RuleContext, reading: dict, tally) -> Iterator[pa.Table]:
    """A Ray Data task: audits the pieces it is handed as the local engine audits a file, batch by batch; yields each
    batch's findings and state frames (pickled, tagged with the piece and batch), then the piece's `PieceEnd`.
    `reading` holds the label field and batch limits of the input."""
    os.environ[SERIAL_ENV] = "1"  # Ray gives each task its CPU: measurements run in this process, as in a local worker
    try:
        for row in pieces.to_pylist():
            yield from _audit_piece(Piece(**row), plan, ctx, tally, **reading)
    except Exception as e:  # noqa: BLE001 -- every exception goes to the driver, unchanged
        e.add_note(traceback.format_exc())
        raise TaskFailed(e) from None


def _audit_piece(piece: Piece, plan: Plan, ctx: RuleContext, tally, label_field: str | None, batch_bytes: int,
                 batch_records: int) -> Iterator[pa.Table]:
    timings: Counter = Counter()
    stream = open_raw(piece.path) if piece.whole else RawRange(piece.path, piece.start, piece.end, piece.first_line)
    first_id, done, seq = piece.first_id, 0, 0
    for seq, records in enumerate(_timed_batches(stream, batch_bytes, batch_records, timings), 1):
        with _timed(timings, "normalise"):
            batch = normalise(records, stream.path, label_field, first_id)
        out = audit_batch(batch, plan, ctx)
        timings.update(out.timings)
        yield _table(piece.order, seq, [(FINDINGS, out.findings), *out.states.items()])
        tally.add.remote(stream.position - done, len(records))
        first_id, done = first_id + len(records), stream.position
    yield _table(piece.order, seq + 1, [(END, _end(stream, timings))])


def _timed_batches(stream, max_bytes: int, max_records: int, timings: Counter) -> Iterator[list]:
    """The stream's batches of raw records, the time spent reading each counted."""
    batches = iter(stream.batches(max_bytes, max_records))
    while True:
        with _timed(timings, "read"):
            records = next(batches, None)
        if records is None:
            return
        yield records


def _end(stream, timings: Counter) -> PieceEnd:
    """What the reader of a piece knows once it is read: a range's notes, or a whole file's `SourceFile`."""
    if isinstance(stream, RawRange):
        return PieceEnd(stream.records, timings, line_notes=stream.line_notes)
    notes = [note_finding(stream.path, n) for n in stream.notes]
    return PieceEnd(stream.records, timings, SourceFile(stream.path, stream.container, stream.gzip, stream.checksum,
                                                        stream.records, notes))


def _table(order: int, seq: int, frames: list[tuple[str, Any]]) -> pa.Table:
    """One output block: a row per (name, frame), tagged with the piece and the batch, so the driver keeps order."""
    return pa.table({"order": [order] * len(frames), "seq": [seq] * len(frames), "name": [n for n, _ in frames],
                     "payload": [pickle.dumps(f, protocol=5) for _, f in frames]}, schema=SCHEMA)


class Tally:
    """Bytes read and records audited by every worker so far: the driver's progress bar polls it."""

    def __init__(self):
        self.bytes = self.records = 0

    def add(self, n_bytes: int, records: int) -> None:
        self.bytes, self.records = self.bytes + n_bytes, self.records + records

    def read(self) -> tuple[int, int]:
        return self.bytes, self.records


def _map(ray, pieces: list[Piece], inputs: FileInput, plan: Plan, ctx: RuleContext, advance: Callable[[int, int], None]):
    """Every piece audited on the cluster; the outputs stay there (materialised) until the driver reads them."""
    tally = ray.remote(num_cpus=0)(Tally).remote()
    reading = {"label_field": inputs.label_field, "batch_bytes": inputs.batch_bytes, "batch_records": inputs.batch_records}
    mapped = ray.data.from_items([asdict(p) for p in pieces], override_num_blocks=len(pieces)).map_batches(
        _audit_pieces, fn_args=(plan, ctx, reading, tally), batch_size=1, batch_format="pyarrow", num_cpus=1)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(mapped.materialize)
        while not wait([running], timeout=0.5).done:
            advance(*ray.get(tally.read.remote()))
        out = running.result()
    advance(*ray.get(tally.read.remote()))
    return out


def _named(table: pa.Table, lsh: bool) -> pa.Table:
    """The rows holding LSH state (`lsh`), or every other row."""
    is_lsh = pc.equal(table["name"], LSH)
    return table.filter(is_lsh if lsh else pc.invert(is_lsh))


def _spill(out, spill: Spill) -> dict[int, PieceEnd]:
    """Every frame but the LSH state into the spill, in input order (the local engine's order); each piece's end."""
    ends, last = {}, (-1, -1)
    for table in out.map_batches(_named, fn_kwargs={"lsh": False}, batch_format="pyarrow").iter_batches(
            batch_size=None, batch_format="pyarrow"):
        for order, seq, name, payload in zip(*(table[c].to_pylist() for c in SCHEMA.names), strict=True):
            if (order, seq) < last:
                raise RuntimeError("Ray returned the pieces out of order; the findings would not be the local engine's")
            last = (order, seq)
            if name == END:
                ends[order] = pickle.loads(payload)
            else:
                spill.add(name, pickle.loads(payload))
    return ends


# --- near-duplicate clusters: a shuffle on band keys ------------------------------------------------------------------


def _clusters(out, ctx: RuleContext, groups: int, timings: Counter) -> pl.DataFrame:
    """`lsh.cluster_state`'s clusters, found on the cluster: candidate pairs from a shuffle of (band, key, id) rows,
    then only the candidates' signatures fetched to verify and cluster them here."""
    cfg = ctx.config.near_duplicate
    bands, _ = lsh_params(cfg.threshold, cfg.num_perm)
    lsh = out.map_batches(_named, fn_kwargs={"lsh": True}, batch_format="pyarrow")
    with _timed(timings, "ray: band-key shuffle"):
        rows = lsh.map_batches(_band_rows, fn_kwargs={"bands": bands, "groups": groups}, batch_format="pyarrow")
        pairs = rows.groupby("group", num_partitions=groups).map_groups(_bucket_pairs, batch_format="numpy")
        i, j = _distinct_pairs(pairs)
    with _timed(timings, "ray: candidate signatures"):
        ids = np.unique(np.concatenate([i, j]))
        sigs, chars = _candidates(lsh, ids, cfg.num_perm)
    rows_i, rows_j = np.searchsorted(ids, i), np.searchsorted(ids, j)
    found = cluster_candidates(rows_i, rows_j, lambda r: sigs[r], cfg.threshold, lambda r: -chars[r].astype(np.float64))
    return cluster_frame(found, ids)


def _frames(table: pa.Table) -> Iterator[pl.DataFrame]:
    """The frames pickled in a block of map outputs."""
    return (pickle.loads(payload) for payload in table["payload"].to_pylist())


def _band_rows(table: pa.Table, bands: int, groups: int) -> pa.Table:
    """One row per valid record and band: (band, key, id, group), the group a hash of the key (a bucket's rows
    share it)."""
    frames = [f.select("id", *(f"band{b}" for b in range(bands))) for f in _frames(table)]
    state = pl.concat(frames) if frames else pl.DataFrame(schema={"id": pl.Int64} | {f"band{b}": pl.UInt64 for b in range(bands)})
    rows = state.unpivot(index="id", variable_name="band", value_name="key").select(
        pl.col("band").str.strip_prefix("band").cast(pl.Int32), "key", "id",
        (pl.col("key") % groups).cast(pl.Int32).alias("group"))
    return rows.to_arrow()


def _bucket_pairs(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Candidate pairs (smaller id, larger id) of one shuffle group: in each band, the rows sharing a bucket in id
    order, each with its next rows there, as `lsh.candidate_pairs` pairs a band's rows in the local engine."""
    order = np.lexsort((group["id"], group["band"]))
    band, key, ids = group["band"][order], group["key"][order], group["id"][order]
    cuts = np.flatnonzero(np.diff(band)) + 1
    left, right = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, band.size], strict=True):
        i, j = candidate_pairs([key[lo:hi]], hi - lo)
        left.append(ids[lo:hi][i])
        right.append(ids[lo:hi][j])
    return {"i": np.concatenate(left), "j": np.concatenate(right)}


def _distinct_pairs(pairs) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct candidate pair, sorted as `lsh.candidate_pairs` sorts them."""
    batches = list(pairs.iter_batches(batch_size=None, batch_format="numpy"))
    i = np.concatenate([np.empty(0, np.int64), *(b["i"] for b in batches)]).astype(np.int64)
    j = np.concatenate([np.empty(0, np.int64), *(b["j"] for b in batches)]).astype(np.int64)
    width = int(j.max()) + 1 if j.size else 1
    both = np.unique(i * width + j)
    return both // width, both % width


def _candidates(lsh, ids: np.ndarray, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Signatures and response lengths of the records `ids` (ascending), fetched from the LSH state on the cluster."""
    if ids.size == 0:
        return np.empty((0, num_perm), np.uint32), np.empty(0, np.int64)
    fetched = lsh.map_batches(_rows_of, fn_kwargs={"ids": ids}, batch_format="pyarrow")
    tables = [pl.from_arrow(t) for t in fetched.iter_batches(batch_size=None, batch_format="pyarrow") if t.num_rows]
    found = pl.concat(tables).sort("id")
    return found["signature"].to_numpy().reshape(found.height, num_perm), found["response_chars"].to_numpy()


def _rows_of(table: pa.Table, ids: np.ndarray) -> pa.Table:
    """Id, response length and signature of the records `ids` among a block's LSH state."""
    wanted = pl.Series(ids).implode()
    frames = [f.filter(pl.col("id").is_in(wanted)).select("id", "response_chars", "signature") for f in _frames(table)]
    return pl.concat(frames).to_arrow() if frames else pa.table({"id": pa.array([], pa.int64())})


