"""Near-duplicate detection on 50,000 records: `datakit audit --only near_duplicate` against a plain datasketch loop.

    python bench/bench_near_duplicate.py [--records 50000] [--repeat 3] [--data FILE]

Both sides are whole processes on the same JSONL, built by ../shared/tools/make_bench_set.py in a
temporary folder (skipped, with a message, when ../shared is absent; it plants 2% exact and 3% near
duplicates):
  (a) baseline: a script written here that reads the JSONL, builds one datasketch MinHash per record
      with one `update` per shingle (the same shingles as datakit), queries then inserts it into a
      MinHashLSH, and keeps each candidate whose estimated Jaccard reaches the threshold;
  (b) `datakit audit FILE --only near_duplicate --json out.json --no-html -q` (the JSON report is the result;
      the optional HTML page and terminal summary are left out, as the baseline has none).
Target: (b) at least 10x faster than (a), with every pair (a) finds inside one of (b)'s clusters.
Prints a table and adds a row to the "Near-duplicate detection" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MAKE_SET = ROOT.parent / "shared" / "tools" / "make_bench_set.py"
DATAKIT = Path(sys.executable).parent / "datakit"
THRESHOLD = 0.8

BASELINE = r'''
"""Plain datasketch near-duplicate search: one MinHash update per shingle, MinHashLSH query + insert per record."""
import json, re, sys, unicodedata
from datasketch import MinHash, MinHashLSH

CJK = "\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
WORD, CJK_CHAR = re.compile(f"[{CJK}]|[^ {CJK}]+"), re.compile(f"[{CJK}]")
THRESHOLD, NUM_PERM, N = float(sys.argv[3]), 128, 5


def shingles(text):
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()
    words = WORD.findall(text)
    cjk = len(CJK_CHAR.findall(text))
    units, sep = (list(text.replace(" ", "")), "") if cjk and 2 * cjk >= len(words) else (words, " ")
    if len(units) < N:
        return [sep.join(units)]
    return [sep.join(units[i:i + N]) for i in range(len(units) - N + 1)]


lsh, sketches, pairs = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM), {}, []
with open(sys.argv[1], encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
        rec = json.loads(line)
        prompt = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
        m = MinHash(num_perm=NUM_PERM)
        for s in shingles(prompt + "\n" + rec["output"]):
            m.update(s.encode("utf-8"))
        for other in lsh.query(m):
            if m.jaccard(sketches[other]) >= THRESHOLD:
                pairs.append((other, line_no))
        lsh.insert(line_no, m)
        sketches[line_no] = m
json.dump(sorted(pairs), open(sys.argv[2], "w"))
'''


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, worker processes included) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"{command[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def clusters_of(report: dict) -> dict[int, int]:
    """Line -> kept line, for every record in a near-duplicate cluster (the kept record maps to itself)."""
    kept = {}
    for f in report["findings"]:
        if f["rule"] == "near_duplicate.cluster":
            kept[f["line"]] = f["related_line"]
            kept[f["related_line"]] = f["related_line"]
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of datakit (median reported); the baseline runs once")
    ap.add_argument("--data", type=Path, help="use this Alpaca JSONL instead of generating one")
    args = ap.parse_args()
    if args.data is None and not MAKE_SET.exists():
        print(f"skipped: {MAKE_SET} is absent (needs the shared workspace next to this repository)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data or tmp / f"bench{args.records}.jsonl"
        if args.data is None:
            subprocess.run([sys.executable, str(MAKE_SET), "--records", str(args.records), "--out", str(data)], check=True)
        records = sum(1 for _ in data.open(encoding="utf-8"))
        ours_cmd = [str(DATAKIT), "audit", str(data), "--only", "near_duplicate", "--json", str(tmp / "out.json"), "--no-html", "-q"]
        ours = [timed(ours_cmd) for _ in range(args.repeat)]
        report = json.loads((tmp / "out.json").read_text(encoding="utf-8"))
        (tmp / "baseline.py").write_text(BASELINE, encoding="utf-8")
        base_wall, base_cpu = timed([sys.executable, str(tmp / "baseline.py"), str(data), str(tmp / "pairs.json"),
                                     str(THRESHOLD)])
        pairs = [tuple(p) for p in json.loads((tmp / "pairs.json").read_text())]
    kept = clusters_of(report)
    recalled = sum(1 for i, j in pairs if i in kept and kept.get(i) == kept.get(j))
    recall = recalled / len(pairs) if pairs else 1.0
    wall = statistics.median(w for w, _ in ours)
    cpu = statistics.median(c for _, c in ours)
    summary = next(f["summary"] for f in report["families"] if f["family"] == "near_duplicate")
    rows = [
        ("(a) datasketch loop", f"{base_wall:.1f}", f"{base_cpu:.1f}", f"{len(pairs):,} pairs", ""),
        ("(b) datakit audit", f"{wall:.1f}", f"{cpu:.1f}",
         f"{summary['clusters']:,} clusters, {summary['records_in_clusters']:,} records",
         f"{recalled:,}/{len(pairs):,} = {recall:.2%}"),
    ]
    print(f"\n{records:,} records, threshold {THRESHOLD}; datakit median of {args.repeat} runs\n")
    print(f"{'':22} {'wall s':>8} {'cpu s':>8}  {'found':<36} pair recall")
    for name, w, c, found, rec in rows:
        print(f"{name:22} {w:>8} {c:>8}  {found:<36} {rec}")
    print(f"\nspeed-up: {base_wall / wall:.1f}x wall, {base_cpu / cpu:.1f}x cpu (target 10x); pair recall {recall:.2%}")

    sys.path.insert(0, str(BENCH))
    from run import machine, record

    record("Near-duplicate detection (bench_near_duplicate.py)",
           "Whole process against whole process on records from `../shared/tools/make_bench_set.py` (2% exact, 3% "
           "near duplicates planted): (a) a plain datasketch script (MinHash with one `update` per shingle, the same "
           "shingles, MinHashLSH query + insert, candidates verified at Jaccard >= 0.8) against (b) `datakit audit FILE "
           "--only near_duplicate --json out.json`. Pair recall: share of (a)'s pairs inside one of (b)'s clusters. "
           "Target: 10x, recall 100%.",
           ["date", "machine", "records", "(a) wall / cpu", "(b) wall / cpu (median)", "speed-up wall / cpu",
            "pairs (a)", "pair recall", "command"],
           [date.today().isoformat(), machine(), f"{records:,}", f"{base_wall:.1f} s / {base_cpu:.1f} s",
            f"{wall:.1f} s / {cpu:.1f} s (N={args.repeat})", f"{base_wall / wall:.1f}x / {base_cpu / cpu:.1f}x",
            f"{len(pairs):,}", f"{recall:.2%}", f"`python bench/bench_near_duplicate.py --records {args.records}`"])


if __name__ == "__main__":
    main()
