"""How long `datakit audit` takes on 50,000 records with the core rule families, as a user runs it.

    python bench/bench_audit_core.py [--records 50000] [--repeat 2]

Builds the dataset with ../shared/tools/make_bench_set.py in a temporary folder (skipped, with a message,
when ../shared is absent), times the whole CLI process (best of --repeat), and shows where the time goes from the
per-stage seconds the JSON report carries (summed over batches and workers).
Prints both tables and adds a row to the "Audit, core rules" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MAKE_SET = ROOT.parent / "shared" / "tools" / "make_bench_set.py"
FAMILIES = "format,empty,length,hygiene,duplicate,volume"


def stage_times(report: Path) -> list[tuple[str, float]]:
    """Seconds per stage of the last audit, as its JSON report records them."""
    return [(s["stage"], s["seconds"]) for s in json.loads(report.read_text(encoding="utf-8"))["stages"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not MAKE_SET.exists():
        print(f"skipped: {MAKE_SET} is absent (the benchmark data is built from ../shared).")
        return
    sys.path.insert(0, str(BENCH))
    from run import machine, record, wall_time

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / f"bench{args.records}.jsonl"
        subprocess.run([sys.executable, str(MAKE_SET), "--records", str(args.records), "--out", str(data)], check=True)
        exe = Path(sys.executable).parent / "datakit"
        command = [str(exe), "audit", str(data), "--only", FAMILIES, "--fail-on", "never", "-q", "--json",
                   str(Path(tmp) / "report.json"), "--no-html"]
        wall = wall_time(command, args.repeat)
        stages = stage_times(Path(tmp) / "report.json")
    shown = f"datakit audit bench{args.records}.jsonl --only {FAMILIES} -q --json report.json --no-html"
    print(f"\n| records | wall (best of {args.repeat}) | command |\n|---|---|---|\n| {args.records:,} | {wall:.2f} s | `{shown}` |")
    print("\n| stage | seconds |\n|---|---|")
    for name, seconds in stages:
        print(f"| {name} | {seconds:.2f} |")
    slowest = ", ".join(f"{n} {s:.1f} s" for n, s in sorted(stages, key=lambda x: -x[1])[:3])
    record("Audit, core rules (bench_audit_core.py)",
           "Whole `datakit audit` process on records from `../shared/tools/make_bench_set.py` (Alpaca, half English, half "
           "Chinese, 2% exact and 3% near duplicates). Target: seconds, not minutes.",
           ["date", "machine", "records", "wall (best of N)", "slowest stages (one in-process run)", "command"],
           [time.strftime("%Y-%m-%d"), machine(), f"{args.records:,}", f"{wall:.2f} s (N={args.repeat})", slowest, f"`{shown}`"])


if __name__ == "__main__":
    main()
