"""Recall and false alarms of spelling.*, completeness.* and accuracy.* on real records, and what they cost in an audit.

    python bench/bench_quality.py [--per-family 200] [--seed 0] [--speed 50000]

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
2,000 clean records (completeness calibrates on the file). With --speed N, also times whole `datakit audit`
processes on N records of ../shared/tools/make_bench_set.py: every family but these three, and every family.
"""
from __future__ import annotations

import argparse
import json
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


def flagged(path: Path, family: str, severity: str = "warning") -> set[int]:
    """Lines of `path` the family flags at this severity (spelling lists prompts as info), through the real CLI."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        proc = subprocess.run([str(Path(sys.executable).parent / "datakit"), "audit", str(path), "--only", family, "--json",
                               str(out), "--no-html", "-q", "--fail-on", "never"], check=False, capture_output=True, text=True)
        if not out.exists():
            raise SystemExit(f"audit of {path} failed: {proc.stderr}")
        return {f["line"] for f in json.loads(out.read_text())["findings"] if f["line"] is not None
                and f["severity"] == severity}


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


def speed(n: int, tmp: Path) -> None:
    data = tmp / f"bench{n}.jsonl"
    subprocess.run([sys.executable, str(SHARED / "tools" / "make_bench_set.py"), "--records", str(n), "--out", str(data)],
                   check=True, capture_output=True)
    exe = str(Path(sys.executable).parent / "datakit")
    runs = {"every family but spelling, completeness, accuracy": ["--skip", ",".join(FAMILIES)],
            "every family": [], "--only spelling,completeness,accuracy": ["--only", ",".join(FAMILIES)]}
    print(f"\n| audit of {n:,} bench records | wall |\n|---|---:|")
    for name, extra in runs.items():
        start = time.perf_counter()
        subprocess.run([exe, "audit", str(data), *extra, "--json", str(tmp / "r.json"), "--no-html", "-q", "--fail-on", "never"],
                       check=True, capture_output=True)
        print(f"| {name} | {time.perf_counter() - start:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=200, help="planted copies per family (half English, half Chinese)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-misses", action="store_true", help="print every planted copy the family missed")
    parser.add_argument("--families", default=",".join(FAMILIES), help="the families to measure (comma-separated)")
    parser.add_argument("--speed", type=int, default=0, help="also time audits of this many bench records")
    args = parser.parse_args()
    if not (SHARED / "data").is_dir():
        raise SystemExit(f"{SHARED / 'data'} is absent: nothing to measure")
    with tempfile.TemporaryDirectory() as tmp:
        quality(args.per_family, args.seed, Path(tmp), args.show_misses, tuple(args.families.split(",")))
        if args.speed:
            speed(args.speed, Path(tmp))


if __name__ == "__main__":
    main()
