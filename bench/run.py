"""Run every bench/bench_*.py in turn (`make bench`), and the helper they share to record results in bench/RESULTS.md.

    python bench/run.py [--only audit_core]

Each script is standalone: it prints its own table and updates its own section of RESULTS.md.
Exit status 1 when any script failed; the others still run.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
HEADER = ("# Benchmarks\n\nMeasured with `python bench/run.py` (or one `bench/bench_*.py`); each script owns one section "
          "and adds a row per run. Wall times are whole processes, best of N, on the machine named in the row.\n")


def machine() -> str:
    """Where a number was measured: host, cores, architecture, and the load at the time (shared machines are noisy)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()}, load {load:.1f})"


def wall_time(command: list[str], repeat: int, cwd: Path = BENCH.parent) -> float:
    """Best wall time of the whole process over `repeat` runs (exit status 0 or 1; anything else is a failure)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode not in (0, 1):
            sys.exit(f"{command[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        best = min(best, elapsed)
    return best


def record(title: str, intro: str, columns: list[str], row: list[str]) -> None:
    """Add `row` under the last row of the table of section `## title` in RESULTS.md (notes below the table stay
    below it), creating the file or the section if needed."""
    sys.path.insert(0, str(BENCH.parent))
    from datakit.io.atomic import write_text

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    heading = f"## {title}\n"
    line = "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n"
    if heading not in text:
        table = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        text = text.rstrip("\n") + f"\n\n{heading}\n{intro}\n\n{table}{line}"
    else:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        end = len(text) if end == -1 else end + 1
        section = text[start:end].rstrip("\n") + "\n"
        rows_end = section.rfind("\n|") + 1  # the row goes under the section's last table row, above any notes
        rows_end = section.index("\n", rows_end) + 1 if rows_end else len(section)
        section = section[:rows_end] + line + section[rows_end:]
        text = text[:start] + section + ("\n" + text[end:] if end < len(text) else "")
    write_text(RESULTS, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="run only bench_<NAME>.py (repeatable)")
    args = ap.parse_args()
    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], check=False, cwd=BENCH.parent).returncode
        print(f"== {script.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - started:.1f} s\n",
              flush=True)
        if code:
            failed.append(script.name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
