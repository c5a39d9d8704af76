"""How much faster `datakit audit --only language` is than one `langdetect.detect` call per text, and how often they agree.

    python bench/bench_language.py [--records 10000] [--repeat 2]

Builds the dataset with ../shared/tools/make_bench_set.py in a temporary folder (skipped, with a message, when
../shared is absent) and times two whole processes, best of --repeat each:

(a) the baseline, a plain script (`BASELINE` below): read the JSONL, `langdetect.detect` (seeded) once per
    prompt (instruction, a newline and the input when there is one) and once per response; it writes the
    languages it found, one JSON line per record;
(b) `datakit audit FILE --only language --json out.json --no-html`.

Agreement is per record: prompt and response languages both equal. The baseline's answers come from its own
output file; datakit's from `datakit.measure.language.add_languages`, the measurement the audit runs, applied
in this process to the frame `datakit.normalise.load` reads. To keep that honest the script checks that the
frame's prompt and response texts are exactly the baseline's, and that the audit's JSON report holds the
language summary this in-process run gives. langdetect's 'unknown' and its "no features" error both count as
no language (None), as datakit reports them.
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

BASELINE = '''
import json, sys
from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

DetectorFactory.seed = int(sys.argv[3])

def language(text):
    try:
        found = detect(text)
    except LangDetectException:
        return None
    return None if found == "unknown" else found

with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in f:
        rec = json.loads(line)
        prompt = rec["instruction"] + ("\\n" + rec["input"] if rec.get("input") else "")
        out.write(json.dumps([prompt, rec["output"], language(prompt), language(rec["output"])], ensure_ascii=False) + "\\n")
'''


def compare(data: Path, baseline_out: Path, report: Path) -> dict:
    """Per-record agreement between the baseline's languages and datakit's measurement, with the honesty checks."""
    from datakit.config import build_config
    from datakit.measure import ensure
    from datakit.normalise import load
    from datakit.recheck import audit_records
    from validators.language import LanguageRules

    config = build_config(only=["language"])
    ds = load(data)
    ensure(ds, ["language"], config)
    frame = ds.frame.sort("line")
    base = [json.loads(line) for line in baseline_out.read_text(encoding="utf-8").splitlines()]
    if len(base) != frame.height:
        sys.exit(f"baseline wrote {len(base)} records, datakit read {frame.height}")
    ours = list(zip(frame["prompt"], frame["response"], frame["prompt_lang"], frame["response_lang"]))
    texts_differ = sum((p, r) != (b[0], b[1]) for (p, r, _, _), b in zip(ours, base))
    prompt_eq = sum(o[2] == b[2] for o, b in zip(ours, base))
    response_eq = sum(o[3] == b[3] for o, b in zip(ours, base))
    both = [(o, b) for o, b in zip(ours, base) if (o[2], o[3]) == (b[2], b[3])]
    differ = [{"line": i + 1, "baseline": b[2:], "datakit": list(o[2:]), "prompt": o[0][:60]}
              for i, (o, b) in enumerate(zip(ours, base)) if (o[2], o[3]) != (b[2], b[3])]
    summary = audit_records(ds, config, rules=[LanguageRules()])[1]["language"]
    in_report = next(f["summary"] for f in json.loads(report.read_text(encoding="utf-8"))["families"] if f["family"] == "language")
    return {"records": frame.height, "agree": len(both), "prompt_agree": prompt_eq, "response_agree": response_eq,
            "texts_differ": texts_differ, "report_matches": in_report["languages"] == summary["languages"]
            and in_report["prompt_languages"] == summary["prompt_languages"], "differ": differ[:10]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not MAKE_SET.exists():
        print(f"skipped: {MAKE_SET} is absent (the benchmark data is built from ../shared).")
        return
    sys.path[:0] = [str(BENCH), str(ROOT)]
    from run import machine, record, wall_time

    from schemas.config import LanguageConfig

    seed = LanguageConfig().seed  # the audit's default, given to the baseline too

    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / f"bench{args.records}.jsonl", Path(tmp) / "baseline_langdetect.py"
        baseline_out, report = Path(tmp) / "baseline.jsonl", Path(tmp) / "report.json"
        subprocess.run([sys.executable, str(MAKE_SET), "--records", str(args.records), "--out", str(data)], check=True)
        script.write_text(BASELINE, encoding="utf-8")
        where = machine()
        baseline = wall_time([sys.executable, str(script), str(data), str(baseline_out), str(seed)], args.repeat)
        datakit = [str(Path(sys.executable).parent / "datakit"), "audit", str(data), "--only", "language", "--json",
                   str(report), "--no-html", "--fail-on", "never", "-q"]
        ours = wall_time(datakit, args.repeat)
        result = compare(data, baseline_out, report)

    n = result["records"]
    agree = result["agree"] / n
    print(f"records: {n} ({args.records} asked)   machine: {where}")
    print(f"(a) baseline, langdetect per text: {baseline:.2f} s")
    print(f"(b) datakit audit --only language: {ours:.2f} s")
    print(f"speed-up: {baseline / ours:.1f}x (target >= 10x)")
    print(f"agreement per record (prompt and response): {agree:.2%} (target >= 99%); prompts {result['prompt_agree'] / n:.2%}, "
          f"responses {result['response_agree'] / n:.2%}")
    print(f"texts that differ between baseline and datakit: {result['texts_differ']} (must be 0); report summary matches "
          f"this run: {result['report_matches']}")
    for d in result["differ"]:
        print(f"  line {d['line']}: baseline {d['baseline']}, datakit {d['datakit']}: {d['prompt']!r}")
    record("Language detection (bench_language.py)",
           "Whole processes on records from `../shared/tools/make_bench_set.py` (Alpaca, half English, half Chinese): "
           "(a) a script calling `langdetect.detect` (seeded) once per prompt and per response; (b) `datakit audit FILE "
           "--only language --json out.json --no-html`. Agreement: records whose prompt and response languages both "
           "equal the baseline's. Targets: >= 10x, >= 99%.",
           ["date", "machine", "records", "(a) langdetect per text", "(b) datakit", "speed-up", "agreement", "command"],
           [time.strftime("%Y-%m-%d"), where, str(n), f"{baseline:.2f} s", f"{ours:.2f} s", f"{baseline / ours:.1f}x",
            f"{agree:.2%}", f"`python bench/bench_language.py --records {args.records} --repeat {args.repeat}`"])


if __name__ == "__main__":
    main()
