"""Near-duplicate detection on 50,000 records: planted copies found by `datakit audit --only near_duplicate`, and its
speed against a plain datasketch loop.

    python bench/bench_near_duplicate.py [--records 50000] [--repeat 3] [--no-baseline]

../shared/tools/make_bench_set.py builds the JSONL (Alpaca, half English, half Chinese) and plants copies of earlier
records: 2% exact, 3% near (a word or two dropped, swapped or upper-cased per 25 words). It does not write down what
it planted, so `planted_copies` replays its seeded generator (its own functions, the same random draws) and checks that
the replay gives the same bytes; the truth is each copy's line and its source's line.

Whole process against whole process, in one run (so under the same load):
  (b) `datakit audit FILE --only near_duplicate --json out.json --no-html -q` (default shingles: characters), and
  (b') the same with `shingles = "words"` (word 5-grams, the default before 2026-12), alternating, median of --repeat;
  (a) a plain datasketch script: one MinHash per record with one `update` per shingle (datakit's default shingles),
      MinHashLSH with datakit's bands, query then insert, candidates verified at Jaccard >= 0.8 (once).
Quality against the planted truth, never against (a), which shares datakit's shingles: recall = planted copies in one
cluster with their source; extra = flagged records whose cluster holds no planted relative of theirs, as a share of
the flagged. Targets: recall >= 98%, extra <= 3%, (b) >= 10x faster than (a).
Prints a table and adds a row to the "Near-duplicate detection" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
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

THRESHOLD, NUM_PERM, N, WEIGHTS = float(sys.argv[3]), 128, 5, (float(sys.argv[4]), float(sys.argv[5]))


def shingles(text):
    """datakit's default shingles: character 5-grams of the normalised text, spaces dropped."""
    chars = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip().replace(" ", "")
    if len(chars) < N:
        return [chars]
    return [chars[i:i + N] for i in range(len(chars) - N + 1)]


lsh, sketches, pairs = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, weights=WEIGHTS), {}, []
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


def planted_copies(path: Path, records: int, seed: int = 0) -> dict[int, tuple[int, str]]:
    """{copy line: (source line, "exact" | "near")} of the file make_bench_set.py wrote at `path`, by replaying its
    main loop with its own functions and random draws (`rng.choice(range(n))` draws what `rng.choice(made)` draws)."""
    spec = importlib.util.spec_from_file_location("make_bench_set", MAKE_SET)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    dup_rate, near_rate = 0.02, 0.03  # its defaults, which main() runs with
    rng = random.Random(seed)
    en, zh = gen.load_pairs()
    banks = {"en": (en, gen.sentences(en)), "zh": (zh, gen.sentences(zh))}
    cats, weights = zip(*gen.CATEGORIES.items())
    made, lines, copies = [], [], {}
    for i in range(records):
        r = rng.random()
        if made and r < dup_rate + near_rate:
            k = rng.choice(range(len(made)))
            exact = r < dup_rate
            rec = dict(made[k]) if exact else dict(made[k], output=gen.mutate(made[k]["output"], rng))
            copies[i + 1] = (k + 1, "exact" if exact else "near")
        else:
            lang = "en" if rng.random() < 0.5 else "zh"
            pairs, bank = banks[lang]
            instr, _ = rng.choice(pairs)
            joiner = " " if lang == "en" else ""
            context = rng.choice(bank)
            out = joiner.join(rng.choice(bank) for _ in range(rng.randint(2, 9)))
            rec = {"instruction": instr, "input": context if rng.random() < 0.4 else "", "output": out,
                   "category": rng.choices(cats, weights)[0]}
        if len(made) < 20000:
            made.append(rec)
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    if "".join(lines) != path.read_text(encoding="utf-8"):
        sys.exit(f"replaying {MAKE_SET} did not give the file it wrote: its generator changed; update planted_copies")
    return copies


class Groups:
    """Union-find over lines: which records one method (or the planted truth) put together."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def quality(links: list[tuple[int, int]], truth: dict[int, tuple[int, str]]) -> dict:
    """Recall of the planted copies (per kind) and the flagged records linked to no planted relative. `links` are
    (flagged line, line it was linked to): datakit's finding and its kept record, or a pair of (a)."""
    found, planted = Groups(), Groups()
    for a, b in links:
        found.join(a, b)
    for copy, (source, _) in truth.items():
        planted.join(copy, source)
    hit = {copy: found.find(copy) == found.find(source) for copy, (source, _) in truth.items()}
    flagged = {a for a, _ in links}
    related = {a for a, b in links if planted.find(a) == planted.find(b)}
    kinds = {kind: (sum(hit[c] for c, (_, k) in truth.items() if k == kind), sum(1 for _, k in truth.values() if k == kind))
             for kind in ("exact", "near")}
    return {"recall": sum(hit.values()) / len(hit), "found": sum(hit.values()), "planted": len(hit), "kinds": kinds,
            "flagged": len(flagged), "extra": len(flagged - related)}


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


def cluster_links(report: dict) -> list[tuple[int, int]]:
    """(flagged line, kept line) of every near_duplicate.cluster finding."""
    return [(f["line"], f["related_line"]) for f in report["findings"] if f["rule"] == "near_duplicate.cluster"]


def described(q: dict) -> tuple[str, str]:
    recall = f"{q['found']:,}/{q['planted']:,} = {q['recall']:.2%} (exact {q['kinds']['exact'][0]:,}/" \
             f"{q['kinds']['exact'][1]:,}, near {q['kinds']['near'][0]:,}/{q['kinds']['near'][1]:,})"
    return recall, f"{q['extra']:,} of {q['flagged']:,} flagged = {q['extra'] / max(q['flagged'], 1):.2%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each datakit setting (median reported)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the datasketch loop (minutes); no speed-up then")
    args = ap.parse_args()
    if not MAKE_SET.exists():
        print(f"skipped: {MAKE_SET} is absent (needs the shared workspace next to this repository)")
        return
    sys.path.insert(0, str(ROOT))
    from datakit.measure.lsh import LSH_WEIGHTS

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / f"bench{args.records}.jsonl"
        subprocess.run([sys.executable, str(MAKE_SET), "--records", str(args.records), "--out", str(data)], check=True)
        truth = planted_copies(data, args.records)
        (tmp / "words.toml").write_text('[near_duplicate]\nshingles = "words"\n', encoding="utf-8")
        runs: dict[str, list[tuple[float, float]]] = {"characters": [], "words": []}
        reports = {}
        for _ in range(args.repeat):
            for shingles, extra in (("characters", []), ("words", ["--config", str(tmp / "words.toml")])):
                out = tmp / f"{shingles}.json"
                runs[shingles].append(timed([str(DATAKIT), "audit", str(data), "--only", "near_duplicate", "--json",
                                             str(out), "--no-html", "-q", *extra]))
                reports[shingles] = json.loads(out.read_text(encoding="utf-8"))
        base = None
        if not args.no_baseline:
            (tmp / "baseline.py").write_text(BASELINE, encoding="utf-8")
            base = timed([sys.executable, str(tmp / "baseline.py"), str(data), str(tmp / "pairs.json"), str(THRESHOLD),
                          *map(str, LSH_WEIGHTS)])
            base_pairs = [tuple(p) for p in json.loads((tmp / "pairs.json").read_text())]

    median = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    quality_of = {k: quality(cluster_links(r), truth) for k, r in reports.items()}
    rows = [(f"(b) datakit, {k}", *median[k], *described(quality_of[k])) for k in ("characters", "words")]
    if base:
        rows.append(("(a) datasketch loop", *base, described(quality(base_pairs, truth))[0], ""))
    print(f"\n{args.records:,} records, {len(truth):,} planted copies, threshold {THRESHOLD}; datakit median of "
          f"{args.repeat} runs each, alternating\n")
    print(f"{'':26} {'wall s':>8} {'cpu s':>8}  {'planted copies found':<52} extra flagged")
    for name, wall, cpu, recall, extra in rows:
        print(f"{name:26} {wall:>8.1f} {cpu:>8.1f}  {recall:<52} {extra}")
    (wall, cpu), (words_wall, words_cpu) = median["characters"], median["words"]
    speed = f"{base[0] / wall:.1f}x / {base[1] / cpu:.1f}x" if base else "not run"
    print(f"\ncharacters vs words: {wall / words_wall:.2f}x the wall, {cpu / words_cpu:.2f}x the cpu; "
          f"speed-up over (a): {speed} (wall / cpu; target 10x)")

    sys.path.insert(0, str(BENCH))
    from run import machine, record

    recall, extra = described(quality_of["characters"])
    record("Near-duplicate detection against planted copies (bench_near_duplicate.py)",
           "Whole processes on records from `../shared/tools/make_bench_set.py` (2% exact and 3% near copies of earlier "
           "records planted; the truth comes from replaying its seeded generator): (b) `datakit audit FILE --only "
           "near_duplicate --json out.json --no-html -q` with the default character 5-gram shingles and (b') with "
           "`shingles = \"words\"` (word 5-grams, the default before 2026-12), alternating in one run; (a) a plain "
           "datasketch script (one `update` per shingle, datakit's shingles and bands, MinHashLSH query + insert, "
           "candidates verified at Jaccard >= 0.8). Found: planted copies in one cluster with their source. Extra: "
           "flagged records with no planted relative in their cluster. Targets: found >= 98%, extra <= 3%, (b) >= 10x "
           "faster than (a).",
           ["date", "machine", "records", "found (b)", "extra (b)", "(b) wall / cpu (median)", "found (b')",
            "(b') wall / cpu", "(a) wall / cpu", "speed-up (a)/(b) wall / cpu", "command"],
           [date.today().isoformat(), machine(), f"{args.records:,}", recall, extra,
            f"{wall:.1f} s / {cpu:.1f} s (N={args.repeat})", described(quality_of["words"])[0],
            f"{words_wall:.1f} s / {words_cpu:.1f} s", f"{base[0]:.1f} s / {base[1]:.1f} s" if base else "not run",
            speed, f"`python bench/bench_near_duplicate.py --records {args.records}`"])


if __name__ == "__main__":
    main()
