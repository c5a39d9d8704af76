"""A few thousand real records (the bundled samples) with planted problems of every cross-record kind: exact copies,
near copies, conflicting answers, eval leakage, class skew, plus broken lines, text debris, a misspelt and a hedged
answer (the real records bring cut-off answers). Tests that compare two ways of auditing (batch sizes, engines) run on it."""
from __future__ import annotations

import json
import random
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EVAL_SET = EXAMPLES / "mt_bench_questions.jsonl"


SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _real_records() -> list[dict]:
    """Every Alpaca-shaped record of the bundled samples (and of ../shared/data's larger sets where present)."""
    alpaca = [EXAMPLES / n for n in ("alpaca_en_sample.json", "alpaca_zh_sample.json", "alpaca_eval_sample.json")]
    alpaca += [p for p in (SHARED / "llamafactory" / "alpaca_en_demo.json", SHARED / "llamafactory" / "alpaca_zh_demo.json")
               if p.exists()]
    out = []
    for path in alpaca:
        for rec in json.loads(path.read_text(encoding="utf-8")):
            out.append({"instruction": rec["instruction"], "input": rec.get("input", ""), "output": rec["output"]})
    belle = SHARED / "belle" / "eval_set.json"
    for line in (belle if belle.exists() else EXAMPLES / "belle_sample.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append({"instruction": rec["question"], "input": "", "output": rec["std_answer"], "category": rec["class"]})
    return out


def _conversations() -> list[dict]:
    """The bundled ShareGPT and messages samples: other formats in the same file (format.mixed_formats)."""
    out = json.loads((EXAMPLES / "sharegpt_sample.json").read_text(encoding="utf-8"))[:40]
    out += [json.loads(x) for x in (EXAMPLES / "messages_sample.jsonl").read_text(encoding="utf-8").splitlines()[:40] if x.strip()]
    return out


def _edited(text: str, rng: random.Random) -> str:
    """A light edit: one word dropped and one doubled (near copies differ by a few words)."""
    words = text.split(" ")
    if len(words) > 12:
        del words[rng.randrange(len(words))]
        k = rng.randrange(len(words))
        words.insert(k, words[k])
        return " ".join(words)
    return text[:-2] + text[-1:] if len(text) > 20 else text + "!"


def planted_records(seed: int = 0) -> list[dict | str]:
    rng = random.Random(seed)
    base = _real_records()
    labels = ["open_qa"] * 6 + ["generation"] * 3 + ["rewrite"]  # skewed classes
    for rec in base:
        rec.setdefault("category", rng.choice(labels))
    out: list[dict | str] = list(base) + _conversations()
    for rec in rng.sample(base, 40):
        out.append(dict(rec))  # exact copies
    for rec in rng.sample(base, 40):
        out.append(rec | {"output": _edited(rec["output"], rng)})  # near copies
    for rec, other in zip(rng.sample(base, 25), rng.sample(base, 25)):
        out.append(rec | {"output": other["output"]})  # same prompt, conflicting answer
    evals = [json.loads(x) for x in EVAL_SET.read_text(encoding="utf-8").splitlines() if x.strip()]
    for q in rng.sample(evals, 12):
        out.append({"instruction": q["turns"][0], "input": "", "output": "Here is my answer.", "category": q["category"]})
    for q in rng.sample(evals, 6):
        out.append({"instruction": _edited(q["turns"][0], rng), "input": "", "output": "An answer.", "category": "x"})
    out += ["{not json", '{"instruction": "q", "output": 5}', "[1, 2]", '{"prompt_text": "no known fields"}']
    out += [{"instruction": "Say hi<br>", "input": "", "output": "Hi &amp; welcome<br/>", "category": "rare"},
            {"instruction": "Mail?", "input": "", "output": "Write to jane.doe@example.org today.", "category": "rare"},
            {"instruction": "", "input": "", "output": "", "category": "rare"}]
    out += [{"instruction": "Reset?", "input": "", "output": "You will recieve a link by email.", "category": "rare"},
            {"instruction": "When was it built?", "input": "", "output": "In 1889, but I could be wrong.", "category": "rare"}]
    rng.shuffle(out)
    return out


def write_planted(path: Path, seed: int = 0) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in planted_records(seed)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
