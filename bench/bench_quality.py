"""Recall and false alarms of the quality families on real records, and what they cost in an audit.

    python bench/bench_quality.py [--per-family 200] [--seed 0] [--families spelling,completeness,accuracy,correspondence]
                                  [--scale-data FILE] [--speed 50000 [--speed-data FILE] [--rounds 2]]

Clean real sets (../shared/data: Alpaca en/zh demos, AlpacaEval, BELLE eval, self-instruct seeds; skipped with a
message when absent): false alarms are the records each family flags there. Planted sets are built by code from
the records of those sets that the family does not flag, English and Chinese, one problem per copy:

- spelling: one word of the answer (a lower-case prose word of 4+ letters that codespell's dictionary has a single
  misspelling for) replaced by that misspelling; in Chinese answers an idiom of the 错别字 list written wrong is
  inserted as a clause ('，大家一如继往地支持。');
- completeness: the answer cut at a random word (English) or character (Chinese) in its last 60%, never right
  after sentence-ending punctuation, as a generation limit or a truncated export cuts;
- accuracy: a hedge added at the start or end, or the whole answer replaced by a deferral, from templates that
  include phrasings the default lists do not name ('Honestly, I don't remember exactly', '我猜大概是').

Copies are planted only in records the family is meant to judge: not in proofreading tasks (spelling) nor in
answers to a prompt asking for an opinion, a guess or a probability (accuracy), which both exempt by design.
Recall is the share of planted copies the family flags, judged within a file of the planted copies mixed with
2,000 clean records (completeness calibrates on the file).

correspondence: 2% of the records of each clean set exchange answers in pairs (isolated swaps). --scale-data FILE
(make_bench_set.py, 50,000 records): 5% of the answers using email / online / website / Wi-Fi get the rare spelling
(e-mail, on-line, web site, WiFi), for consistency's recall at scale. With --speed N, also times whole `datakit audit`
processes on N records of ../shared/tools/make_bench_set.py, alternating: without the five quality families
(spelling, completeness, accuracy, consistency, correspondence) and with every family, wall and CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SHARED = ROOT.parent / "shared"
CLEAN = {"alpaca_en demo": "llamafactory/alpaca_en_demo.json", "alpaca_zh demo": "llamafactory/alpaca_zh_demo.json",
         "AlpacaEval": "alpaca_eval/alpaca_eval_outputs.json", "BELLE eval": "belle/eval_set.json",
         "self-instruct seeds": "self_instruct/seed_tasks.jsonl"}
FAMILIES = ("spelling", "completeness", "accuracy")
HEDGES_EN = [("If I remember correctly, ", ""), ("", " But I could be wrong."), ("I'm not entirely sure, but ", ""),
             ("", " Don't quote me on that, though."), ("Honestly, I don't remember exactly, but ", ""),
             ("", " I might be wrong about this.")]
HEDGES_ZH = [("好像是这样：", ""), ("", "不过我也不太确定。"), ("如果我没记错的话，", ""), ("", "应该是吧。"), ("我猜大概是这样：", ""),
             ("", "我也不是很清楚，仅供参考。")]
DEFER_EN = ["You should consult a professional about this.", "I can't answer that. Please consult a lawyer.",
            "It depends on your situation; seek professional advice.", "I don't know. Ask an expert."]
DEFER_ZH = ["建议咨询律师。", "这个问题比较复杂，建议咨询专业人士。", "我无法回答这个问题，请咨询医生。", "具体情况请咨询客服。"]
CJK = re.compile(r"[\u4e00-\u9fff]")


def records(path: Path) -> list[dict]:
    """Alpaca-shaped records of a real set (BELLE's question/std_answer and self-instruct's instances mapped)."""
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    out = []
    for r in rows:
        if "instances" in r:
            inst = r["instances"][0]
            r = {"instruction": r["instruction"], "input": inst.get("input", ""), "output": inst.get("output", "")}
        elif "question" in r:
            r = {"instruction": r["question"], "input": "", "output": r["std_answer"]}
        out.append({"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]})
    return [r for r in out if r["output"].strip()]


def flagged(path: Path, family: str, severity: str | None = "warning") -> set[int]:
    """Lines of `path` the family flags at this severity (spelling lists prompts as info; None: any), through the real
    CLI."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        proc = subprocess.run([str(Path(sys.executable).parent / "datakit"), "audit", str(path), "--only", family, "--json",
                               str(out), "--no-html", "-q", "--fail-on", "never"], check=False, capture_output=True, text=True)
        if not out.exists():
            raise SystemExit(f"audit of {path} failed: {proc.stderr}")
        return {f["line"] for f in json.loads(out.read_text())["findings"] if f["line"] is not None
                and severity in (None, f["severity"])}


def misspellings() -> dict[str, str]:
    """correct word -> a misspelling of it that codespell corrects to that word alone."""
    from validators.spelling import codespell_entries

    out: dict[str, str] = {}
    for wrong, entry in codespell_entries().items():
        fix = entry.fixes[0]
        if entry.fixable and not entry.name and fix.isalpha() and fix.islower() and wrong.isalpha():
            out.setdefault(fix, wrong)
    return out


def plant_spelling(rec: dict, rng: random.Random, table: dict[str, str]) -> dict | None:
    answer = rec["output"]
    if "```" in answer or "`" in answer:
        return None
    if CJK.search(answer):
        from validators.spelling import zh_entries

        wrong = rng.choice(sorted(zh_entries()))
        cut = answer.find("。")
        at = cut if cut > 0 else len(answer)
        return rec | {"output": answer[:at] + f"，大家{wrong}。" + answer[at:].lstrip("。")}
    words = [m for m in re.finditer(r"(?<=\s)[a-z]{4,}(?=[\s,.;])", answer) if m.group() in table]
    if not words:
        return None
    m = rng.choice(words)
    return rec | {"output": answer[:m.start()] + table[m.group()] + answer[m.end():]}


def plant_cut(rec: dict, rng: random.Random) -> dict | None:
    answer = rec["output"].rstrip()
    if len(answer) < 80 or "```" in answer:
        return None
    if CJK.search(answer):
        spots = [i for i in range(int(len(answer) * 0.4), len(answer) - 1)
                 if CJK.match(answer[i - 1]) and CJK.match(answer[i])]
    else:
        spots = [m.start() for m in re.finditer(r" ", answer) if m.start() > len(answer) * 0.4
                 and answer[m.start() - 1] not in ".!?:;\"')" and answer[m.start() - 1].isalnum()]
    if not spots:
        return None
    return rec | {"output": answer[:rng.choice(spots)]}


def plant_hedge(rec: dict, rng: random.Random) -> dict:
    zh = bool(CJK.search(rec["output"]))
    if rng.random() < 0.25:
        return rec | {"output": rng.choice(DEFER_ZH if zh else DEFER_EN)}
    head, tail = rng.choice(HEDGES_ZH if zh else HEDGES_EN)
    return rec | {"output": head + rec["output"].rstrip() + tail}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def quality(per_family: int, seed: int, tmp: Path, show: int = 0, families: tuple[str, ...] = FAMILIES) -> None:
    rng = random.Random(seed)
    sets = {name: SHARED / "data" / rel for name, rel in CLEAN.items()}
    clean: dict[str, list[dict]] = {}
    print("| family | clean set | records | answers flagged (warning) | share |\n|---|---|---:|---:|---:|")
    unflagged: dict[str, list[dict]] = {f: [] for f in families}
    for name, path in sets.items():
        clean[name] = records(path)
        file = write(tmp / f"{name}.jsonl".replace(" ", "_"), clean[name])
        for family in families:
            lines = flagged(file, family)
            prompts = f" (+{len(flagged(file, family, 'info'))} prompts, info)" if family == "spelling" else ""
            shown = f"{len(lines):,}{prompts}"
            print(f"| {family} | {name} | {len(clean[name]):,} | {shown} | {100 * len(lines) / len(clean[name]):.1f}% |")
            unflagged[family] += [r for i, r in enumerate(clean[name], 1) if i not in lines]
    from schemas.config import AuditConfig
    from validators.accuracy import phrases
    from validators.spelling import lexicon

    table, config = misspellings(), AuditConfig()
    lex, said = lexicon(config.spelling), phrases(config.accuracy)
    planters = {"spelling": lambda r: None if lex.is_task(r["instruction"] + r["input"]) else plant_spelling(r, rng, table),
                "completeness": lambda r: plant_cut(r, rng),
                "accuracy": lambda r: None if said.asks_opinion(r["instruction"] + r["input"]) else plant_hedge(r, rng)}
    print("\n| family | planted copies (en / zh) | found | recall | extra records flagged among the clean |\n"
          "|---|---:|---:|---:|---:|")
    for family in families:
        rng.seed(f"{seed}:{family}")  # each family's copies are the same whichever families run
        pool = unflagged[family][:]
        rng.shuffle(pool)
        planted = {"en": [], "zh": []}
        for rec in pool:
            lang = "zh" if CJK.search(rec["output"]) else "en"
            if len(planted[lang]) < per_family // 2 and (copy := planters[family](rec)) is not None:
                planted[lang].append(copy)
        copies = planted["en"] + planted["zh"]
        base = pool[:2000]
        file = write(tmp / f"planted_{family}.jsonl", base + copies)
        lines = flagged(file, family)
        found = sum(1 for i in range(len(base) + 1, len(base) + len(copies) + 1) if i in lines)
        by_lang = [sum(1 for i in range(start, start + len(planted[lang])) if i in lines)
                   for lang, start in (("en", len(base) + 1), ("zh", len(base) + 1 + len(planted["en"])))]
        extra = sum(1 for i in lines if i <= len(base))
        for i, rec in enumerate(copies[:], len(base) + 1):
            if i not in lines and show > 0:
                print(f"  missed ({family}): {rec['instruction'][:80]!r} -> {rec['output'][:70]!r} ... {rec['output'][-70:]!r}")
        print(f"| {family} | {len(copies)} ({len(planted['en'])} / {len(planted['zh'])}) | {found} "
              f"({by_lang[0]} / {by_lang[1]}) | {found / max(len(copies), 1):.3f} | {extra} of {len(base):,} |")


def swaps(seed: int, tmp: Path, share: float = 0.02) -> None:
    """correspondence.*: `share` of the records of each clean real set exchange answers in pairs (isolated swaps, the
    columns otherwise aligned); recall is the share of those records flagged, extra the records flagged beyond the
    clean set's own."""
    print("\n| clean set | records | swapped (pairs x 2) | found | recall | new flags elsewhere |\n|---|---:|---:|---:|---:|---:|")
    total = found_all = 0
    for name, rel in CLEAN.items():
        rows = records(SHARED / "data" / rel)
        rng = random.Random(f"{seed}:swaps:{name}")
        picked = rng.sample(range(len(rows)), 2 * max(1, round(share * len(rows) / 2)))
        swapped = [dict(r) for r in rows]
        for a, b in zip(picked[::2], picked[1::2]):
            swapped[a]["output"], swapped[b]["output"] = rows[b]["output"], rows[a]["output"]
        clean = flagged(write(tmp / "clean.jsonl", rows), "correspondence")
        lines = flagged(write(tmp / "swapped.jsonl", swapped), "correspondence")
        truth = {i + 1 for i in picked}
        found = len(truth & lines)
        total, found_all = total + len(truth), found_all + found
        print(f"| {name} | {len(rows):,} | {len(truth)} | {found} | {found / len(truth):.3f} | {len(lines - truth - clean)} |")
    print(f"| all | | {total} | {found_all} | {found_all / total:.3f} | |")


# (term, its usual spelling as a pattern, the rare spelling planted)
PLANTED_TERMS = [("email", r"\bemail\b", "e-mail"), ("online", r"\bonline\b", "on-line"),
                 ("website", r"\bwebsite\b", "web site"), ("Wi-Fi", r"\bWi-Fi\b", "WiFi")]


def consistency_at_scale(data: Path, seed: int, tmp: Path, share: float = 0.05) -> None:
    """consistency.*: in the bench file, `share` of the answers using a term's usual spelling get its rare one (under
    the 20% minority share); recall is the share of those records flagged, extra the records flagged beyond the
    original file's own."""
    rows = [json.loads(x) for x in data.read_text(encoding="utf-8").splitlines() if x.strip()]
    rng = random.Random(f"{seed}:consistency")
    planted: dict[str, set[int]] = {}
    for term, usual, rare in PLANTED_TERMS:
        having = [i for i, r in enumerate(rows) if re.search(usual, r["output"]) and all(i + 1 not in p for p in planted.values())]
        picked = rng.sample(having, max(1, round(share * len(having))))
        for i in picked:
            rows[i] = rows[i] | {"output": re.sub(usual, rare, rows[i]["output"])}
        planted[term] = {i + 1 for i in picked}
    clean = flagged(data, "consistency", None)
    lines = flagged(write(tmp / "consistency_planted.jsonl", rows), "consistency", None)
    truth = set().union(*planted.values())
    print(f"\n| consistency at {len(rows):,} records | planted | found | recall |\n|---|---:|---:|---:|")
    for term, lines_of in planted.items():
        print(f"| {term} | {len(lines_of)} | {len(lines_of & lines)} | {len(lines_of & lines) / len(lines_of):.3f} |")
    print(f"| all | {len(truth)} | {len(truth & lines)} | {len(truth & lines) / len(truth):.3f} |\n"
          f"records flagged beyond the original file's {len(clean):,}: {len(lines - truth - clean)}")


NEW_FAMILIES = ("spelling", "completeness", "accuracy", "consistency", "correspondence")


def speed(n: int, tmp: Path, rounds: int, data: Path | None = None) -> None:
    """Whole `datakit audit` processes on N bench records without the five quality families (A) and with every family
    (B), alternating A B A B so both see the same machine: wall, CPU (user + sys of the process and its workers) and
    the load average while each ran (other sessions share the cores)."""
    if data is None:
        data = tmp / f"bench{n}.jsonl"
        subprocess.run([sys.executable, str(SHARED / "tools" / "make_bench_set.py"), "--records", str(n), "--out", str(data)],
                       check=True, capture_output=True)
    exe = str(Path(sys.executable).parent / "datakit")
    runs = {"A: without " + ", ".join(NEW_FAMILIES): ["--skip", ",".join(NEW_FAMILIES)], "B: every family": []}
    print(f"\n| round | audit of {n:,} bench records | wall | CPU (user + sys) | load (1 min) |\n|---|---|---:|---:|---:|")
    totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in runs}
    for r in range(1, rounds + 1):
        for name, extra in runs.items():
            before, start, load = os.times(), time.perf_counter(), os.getloadavg()[0]
            subprocess.run([exe, "audit", str(data), *extra, "--json", str(tmp / "r.json"), "--no-html", "-q", "--fail-on",
                            "never"], check=True, capture_output=True)
            wall, after = time.perf_counter() - start, os.times()
            cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
            totals[name][0] += wall
            totals[name][1] += cpu
            print(f"| {r} | {name} | {wall:.1f} s | {cpu:.1f} s | {load:.1f} -> {os.getloadavg()[0]:.1f} |")
    (a_wall, a_cpu), (b_wall, b_cpu) = totals.values()
    print(f"\nB / A over {rounds} rounds: wall {b_wall / a_wall:.2f}x, CPU {b_cpu / a_cpu:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=200, help="planted copies per family (half English, half Chinese)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-misses", action="store_true", help="print every planted copy the family missed")
    parser.add_argument("--families", default=",".join(FAMILIES + ("correspondence",)),
                        help="the families to measure (comma-separated; empty: none); correspondence: planted swaps")
    parser.add_argument("--speed", type=int, default=0, help="also time audits of this many bench records")
    parser.add_argument("--speed-data", type=Path, help="the bench file of --speed records when built already")
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs of the --speed audits")
    parser.add_argument("--scale-data", type=Path, help="a make_bench_set.py file (50,000 records) for the planted "
                        "consistency check at scale")
    args = parser.parse_args()
    if not (SHARED / "data").is_dir():
        raise SystemExit(f"{SHARED / 'data'} is absent: nothing to measure")
    with tempfile.TemporaryDirectory() as tmp:
        planted = tuple(f for f in args.families.split(",") if f in FAMILIES)
        if planted:
            quality(args.per_family, args.seed, Path(tmp), args.show_misses, planted)
        if "correspondence" in args.families.split(","):
            swaps(args.seed, Path(tmp))
        if args.scale_data:
            consistency_at_scale(args.scale_data, args.seed, Path(tmp))
        if args.speed:
            speed(args.speed, Path(tmp), args.rounds, args.speed_data)


if __name__ == "__main__":
    main()
