"""Scale of `datakit audit` with every rule family: wall time and peak memory at 200K, 1M and 5M records.

    python bench/bench_scale.py [--records 200000 1000000 5000000] [--data /tmp/bench]

Sets come from ../shared/tools/make_bench_set.py (built into --data when missing; never committed). Each audit is a
whole `datakit audit FILE --label-field category --no-html -q --json r.json` process; its memory is sampled every
0.2 s over the whole process tree (the audit and its batch workers): the peak of the sum of their resident sets (a
worker's shared libraries count once per worker, so this over-counts a little) and the peak of the largest one.
Targets (issue 10): 1M under 2 GiB and no slower than 496 s; 5M under 4 GiB; time per record at 5M within 20% of 200K.
Writes a row per size to bench/RESULTS.md, the latest figures per size to bench/scale.json, and plots every size
there to bench/scale.svg (so a rerun of one size updates the plot).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, machine, record

MAKE_SET = BENCH.parent.parent / "shared" / "tools" / "make_bench_set.py"
TITLE = "Scale: every family at 200K / 1M / 5M records (bench_scale.py)"
INTRO = ("Whole `datakit audit FILE --label-field category --no-html -q --json r.json` process on sets from "
         "`make_bench_set.py --records N`. Memory sampled every 0.2 s over the process tree: peak of the sum of "
         "resident sets (audit + batch workers) and peak of the largest process. Targets: 1M < 2 GiB and <= 496 s "
         "(the in-memory engine's time, issue 10); 5M < 4 GiB; us/record at 5M within 20% of 200K. Plot: bench/scale.svg.")
COLUMNS = ["date", "machine", "records", "file", "wall", "us / record", "peak RSS, tree (sum)", "peak RSS, largest process",
           "findings", "slowest stages (summed over batches)", "command"]


def dataset(n: int, folder: Path) -> Path:
    path = folder / f"b{n}.jsonl"
    if not path.exists():
        if not MAKE_SET.exists():
            sys.exit(f"{MAKE_SET} is absent: build the set yourself and pass --data")
        subprocess.run([sys.executable, str(MAKE_SET), "--records", str(n), "--out", str(path)], check=True)
    return path


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled in a background thread."""

    def __init__(self, pid: int, every: float = 0.2):
        self.root, self.every = psutil.Process(pid), every
        self.peak_sum = self.peak_one = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                rss = [p.memory_info().rss for p in [self.root, *self.root.children(recursive=True)]]
            except psutil.Error:
                rss = []
            if rss:
                self.peak_sum, self.peak_one = max(self.peak_sum, sum(rss)), max(self.peak_one, max(rss))
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def audit(path: Path, out: Path, extra: tuple[str, ...] = ()) -> dict:
    """One whole `datakit audit` process (`extra` options appended): wall time, peak memory of its tree, its report."""
    options = ["--label-field", "category", "--no-html", "-q", "--json", str(out), *extra]
    command = [str(Path(sys.executable).parent / "datakit"), "audit", str(path), *options]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(proc.pid)
    _, err = proc.communicate()
    memory.stop()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"audit of {path} {' '.join(extra)} failed (exit {proc.returncode}): {err[-2000:]}")
    report = json.loads(out.read_text(encoding="utf-8"))
    return {"wall": wall, "peak_sum": memory.peak_sum, "peak_one": memory.peak_one, "report": report,
            "command": " ".join(["datakit audit", path.name, "--label-field category --no-html -q --json r.json", *extra])}


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


POINTS = BENCH / "scale.json"


def remember(n: int, result: dict) -> list[tuple[int, dict]]:
    """Store this size's figures beside the earlier sizes'; every size measured so far, smallest first."""
    known = json.loads(POINTS.read_text(encoding="utf-8")) if POINTS.exists() else {}
    known[str(n)] = {"wall": round(result["wall"], 1), "peak_sum": result["peak_sum"], "peak_one": result["peak_one"],
                     "date": time.strftime("%Y-%m-%d"), "machine": machine()}
    POINTS.write_text(json.dumps(dict(sorted(known.items(), key=lambda kv: int(kv[0]))), indent=2) + "\n", encoding="utf-8")
    return [(int(k), v) for k, v in sorted(known.items(), key=lambda kv: int(kv[0]))]


def plot(points: list[tuple[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [n / 1e6 for n, _ in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(sizes, [r["peak_sum"] / 2**30 for _, r in points], "o-", label="process tree (sum)")
    left.plot(sizes, [r["peak_one"] / 2**30 for _, r in points], "s--", label="largest process")
    left.axhline(2, color="grey", lw=0.8, ls=":")
    left.axhline(4, color="grey", lw=0.8, ls=":")
    left.set(xlabel="records (millions)", ylabel="peak RSS (GiB)", title="memory")
    left.legend(frameon=False)
    right.plot(sizes, [r["wall"] for _, r in points], "o-", color="tab:green")
    for (n, r), x in zip(points, sizes):
        right.annotate(f"{r['wall'] / n * 1e6:.0f} us/rec", (x, r["wall"]), textcoords="offset points", xytext=(4, -12),
                       fontsize=8)
    right.set(xlabel="records (millions)", ylabel="wall time (s)", title="time")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[200_000, 1_000_000, 5_000_000])
    ap.add_argument("--data", type=Path, default=Path("/tmp/bench"))
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    points: list[tuple[int, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.records:
            path = dataset(n, args.data)
            result = audit(path, Path(tmp) / "r.json")
            points = remember(n, result)
            stages = sorted(result["report"]["stages"], key=lambda s: -s["seconds"])[:4]
            slowest = ", ".join(f"{s['stage']} {s['seconds']:.0f} s" for s in stages)
            findings = (result["report"]["findings_file"] or {}).get("count") or len(result["report"]["findings"])
            row = [time.strftime("%Y-%m-%d"), machine(), f"{n:,}", f"{path.stat().st_size / 1e6:,.0f} MB",
                   f"{result['wall']:.1f} s", f"{result['wall'] / n * 1e6:.0f}", gib(result["peak_sum"]),
                   gib(result["peak_one"]), f"{findings:,}", slowest, f"`{result['command']}`"]
            print(" | ".join(row), flush=True)
            record(TITLE, INTRO, COLUMNS, row)
    if len(points) > 1:
        plot(points, BENCH / "scale.svg")
        print(f"plot -> {BENCH / 'scale.svg'}")


if __name__ == "__main__":
    main()
