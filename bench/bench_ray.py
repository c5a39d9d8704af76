"""The Ray engine against the local engine on the same set, in the same run: wall time, memory, where the time goes.

    python bench/bench_ray.py [--records 1000000] [--data /tmp/bench]

Each audit is a whole `datakit audit FILE --label-field category --no-html -q --json r.json --engine E` process. With
`--engine ray` and no address, datakit starts Ray on this machine's cores (2 here: a 2-worker cluster) as children of
its own process, so the memory sampled over the process tree (bench_scale.TreeMemory) holds the driver, the Ray
daemons and the workers; the object store is shared memory, counted in every process that maps a page of it. Stage
seconds come from the JSON report: worker stages are summed over the workers. The shuffle volume is the band-key rows
(valid records x LSH bands x `ray_engine.BAND_ROW_BYTES`). A section of bench/RESULTS.md gets a row per engine and
an estimate for a cluster of several nodes, computed from the measured per-worker throughput (not measured).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import audit as scale_audit
from bench_scale import dataset, gib
from run import machine, record

from datakit.engine.ray_engine import BAND_ROW_BYTES, PIECE_BYTES
from datakit.io.read import line_ranges

TITLE = "Ray engine: local vs a local 2-worker Ray cluster (bench_ray.py)"
INTRO = ("Whole `datakit audit FILE --label-field category --no-html -q --json r.json --engine E` processes, one after "
         "the other in the same run. Peak RSS: the sum over the process tree (driver, Ray daemons and workers), sampled "
         "every 0.2 s, and the largest process; Ray's object store is shared memory and counts in every process that maps "
         "it, so the sum over-counts it. Stage seconds "
         "from the report (worker stages summed over workers). Shuffle: band-key rows of the near-duplicate LSH. The "
         "multi-node column is an ESTIMATE from the per-worker throughput measured here, not a measurement.")
COLUMNS = ["date", "machine", "records", "engine", "wall", "peak RSS, tree (sum)", "peak RSS, largest process",
           "where the time goes",
           "shuffle volume", "multi-node estimate (not measured)", "command"]
DRIVER_STAGES = ("ray: connect", "ray: count records per piece", "ray: collect + spill", "near-duplicate clusters",
                 "finish")
NODES, CORES, NETWORK_GBPS = 8, 16, 10  # the cluster the estimate is for


def audit(path: Path, engine: str, out: Path) -> dict:
    return scale_audit(path, out, ("--engine", engine))


def stages(report: dict) -> dict[str, float]:
    return {s["stage"]: s["seconds"] for s in report["stages"]}


def worker_seconds(report: dict) -> float:
    """Seconds the per-record stage took, summed over batches (and workers): reading, normalising, measuring, checking."""
    return sum(v for k, v in stages(report).items() if k in ("read", "normalise") or k.startswith(("measure ", "rules: ")))


def where_time_goes(report: dict, wall: float) -> str:
    seen = stages(report)
    driver = [f"{k} {seen[k]:.0f} s" for k in ("ray: connect", "ray: count records per piece", "ray: map (wall)",
                                                 "ray: collect + spill", "ray: band-key shuffle",
                                                 "ray: candidate signatures", "near-duplicate clusters") if k in seen]
    finishing = sum(v for k, v in seen.items() if k.startswith("finish "))
    heaviest = sorted(((v, k) for k, v in seen.items() if k.startswith(("measure ", "rules: "))), reverse=True)[:3]
    return "; ".join([f"per-record stage {worker_seconds(report):.0f} s summed ("
                      + ", ".join(f"{k} {v:.0f} s" for v, k in heaviest) + ")", *driver,
                      f"rule finish {finishing:.0f} s", f"report etc. {wall - report['elapsed_s']:.0f} s outside the audit"])


def shuffle_bytes(report: dict) -> int:
    bands = next(f["summary"]["lsh_bands"] for f in report["families"] if f["family"] == "near_duplicate")
    return report["profile"]["valid_records"] * bands * BAND_ROW_BYTES


def estimate(ray_report: dict, path: Path, cpus_here: int) -> str:
    """Wall time on NODES x CORES workers: each piece of the file on one worker at the per-worker throughput measured
    here (the per-record stage's summed seconds), as many pieces at once as there are workers; plus the driver's
    stages as measured here (they do not shrink with more workers); plus the band-key shuffle over the network."""
    records = ray_report["profile"]["records"]
    per_worker = records / worker_seconds(ray_report)  # records a second on one worker
    pieces, workers = len(line_ranges(path, PIECE_BYTES)), NODES * CORES
    mapped = math.ceil(pieces / workers) * records / pieces / per_worker
    seen = stages(ray_report)
    driver = sum(v for k, v in seen.items() if k.startswith(DRIVER_STAGES))
    network = shuffle_bytes(ray_report) * (NODES - 1) / NODES**2 / (NETWORK_GBPS * 1e9 / 8)
    ideal = records / (per_worker * workers)
    return (f"{NODES} nodes x {CORES} cores: map ~{mapped:.0f} s ({pieces} pieces of {PIECE_BYTES >> 20} MiB, so "
            f"{min(pieces, workers)} workers busy, each at the {per_worker:,.0f} records/s measured here with "
            f"{cpus_here} workers; ~{ideal:.0f} s with pieces small enough for every worker) + driver stages "
            f"~{driver:.0f} s as here (connect, collect + spill, clusters, finish) + band-key shuffle over "
            f"{NETWORK_GBPS} GbE ~{network:.1f} s => ~{mapped + driver + network:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/bench"))
    args = ap.parse_args()
    path = dataset(args.records, args.data)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        results = {engine: audit(path, engine, Path(tmp) / f"{engine}.json") for engine in ("local", "ray")}
        for engine, result in results.items():  # the reports, for a closer look at the stages
            (args.data / f"bench_ray.{args.records}.{engine}.json").write_text(json.dumps(result["report"]), encoding="utf-8")
    for engine, result in results.items():
        report = result["report"]
        row = [time.strftime("%Y-%m-%d"), machine(), f"{args.records:,}", engine, f"{result['wall']:.1f} s",
               gib(result["peak_sum"]), gib(result["peak_one"]), where_time_goes(report, result["wall"]),
               f"{shuffle_bytes(report) / 1e6:,.0f} MB" if engine == "ray" else "-",
               estimate(report, path, cpus) if engine == "ray" else "-", f"`{result['command']}`"]
        print(" | ".join(row), flush=True)
        record(TITLE, INTRO, COLUMNS, row)


if __name__ == "__main__":
    main()
