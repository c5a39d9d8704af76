"""Properties that must hold for any input, checked on generated adversarial records (random Unicode with CJK, HTML,
zero-width and control characters, template markers, PII, empties, duplicates, invalid JSON lines, wrong types):
fix conserves every record and never touches its input, is deterministic and idempotent; balance conserves every
record; convert round-trips Alpaca."""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datakit
from datakit.io.read import read_raw

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SNIPPETS = ["<b>", "</p>", "<br>", "&amp;", "&nbsp;", "\u200b", "\u200d", "\x07", "\ufeff", "\ufffd", "大家好，", "。",
            "如何", "### Response:", "### 回答：", "<|im_start|>", "{{name}}", "write to ann.lee@fastmail.fm ",
            "call 13812345678 ", "Ã©", " ", "\n", "\t", "  ", "é", "🙂"]
text = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(SNIPPETS)), max_size=8).map("".join)
extra = st.dictionaries(st.sampled_from(["id", "category", "meta", "score"]),
                        st.one_of(st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2)),
                        max_size=2)
alpaca = st.builds(lambda i, n, o, x: x | {"instruction": i, "input": n, "output": o}, text, text, text, extra)
sharegpt = st.builds(lambda turns, x: x | {"conversations": [{"from": f, "value": v} for f, v in turns]},
                     st.lists(st.tuples(st.sampled_from(["human", "gpt", "system", "robot"]), text), max_size=4), extra)
openai = st.builds(lambda turns: {"messages": [{"role": r, "content": [{"type": "text", "text": v}] if typed else v}
                                               for r, v, typed in turns]},
                   st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool"]), text, st.booleans()), max_size=4))
wrong = st.one_of(st.builds(lambda i: {"instruction": i, "output": [i]}, text), st.integers().map(str),
                  st.just('["a", "list"]'), st.just('{"neither": "format"}'))
broken = text.map(lambda t: "{" + t.replace("\n", " ").replace("\r", " ") + " ,")
line = st.one_of(alpaca.map(json.dumps), sharegpt.map(json.dumps), openai.map(lambda o: json.dumps(o, ensure_ascii=False)),
                 wrong.map(lambda w: w if isinstance(w, str) else json.dumps(w)), broken)
# The first line is an object: a file that starts with a scalar or an array is another container (or unusable),
# which the reader's own tests cover.
dataset = st.builds(lambda first, lines, copies: [json.dumps(first)] + lines + lines[:copies], alpaca,
                    st.lists(line, max_size=12), st.integers(0, 3))


def write(folder: Path, lines: list[str]) -> Path:
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@SETTINGS
@given(dataset)
def test_fix_conserves_every_record_leaves_the_input_alone_and_is_deterministic(lines):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write(folder, lines)
        before = hashlib.sha256(path.read_bytes()).digest()
        result = datakit.fix(path, folder / "clean.jsonl")
        assert hashlib.sha256(path.read_bytes()).digest() == before
        raw = read_raw(path)
        rejected = [json.loads(x) for x in (folder / "clean.rejected.jsonl").read_text(encoding="utf-8").split("\n") if x]
        kept = read_raw(folder / "clean.jsonl").records if result.kept else []
        assert len(kept) + len(rejected) == len(raw.records)
        rejected_lines = [r["line"] for r in rejected]
        assert len(set(rejected_lines)) == len(rejected_lines) and set(rejected_lines) <= {r.line for r in raw.records}
        assert all(r["raw"] == next(x.text for x in raw.records if x.line == r["line"]) and r["reasons"] for r in rejected)
        datakit.fix(path, folder / "again.jsonl")
        assert (folder / "again.jsonl").read_bytes() == (folder / "clean.jsonl").read_bytes()
        assert (folder / "again.rejected.jsonl").read_bytes() == (folder / "clean.rejected.jsonl").read_bytes()


@SETTINGS
@given(dataset)
def test_fixing_fixed_data_changes_nothing(lines):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = datakit.fix(write(folder, lines), folder / "clean.jsonl")
        if not first.kept:
            return
        second = datakit.fix(folder / "clean.jsonl", folder / "twice.jsonl")
        assert (second.repaired, second.dropped, second.unrepaired, second.rejected) == ({}, {}, {}, 0)
        assert (folder / "twice.jsonl").read_bytes() == (folder / "clean.jsonl").read_bytes()


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), text), min_size=1, max_size=30),
       st.sampled_from(["cap", "floor", "shares"]), st.integers(0, 3))
def test_balance_keeps_or_rejects_every_record(rows, strategy, seed):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = [json.dumps({"instruction": t, "output": "x"} | ({"c": c} if c else {})) for c, t in rows]
        path = write(folder, lines)
        if all(c is None for c, _ in rows):
            return
        result = datakit.balance(path, "c", folder / "out.jsonl", strategy=strategy, seed=seed, max_per_class=2)
        out = read_raw(folder / "out.jsonl").records if (folder / "out.jsonl").stat().st_size else []
        capped = [x for x in (folder / "out.rejected.jsonl").read_text(encoding="utf-8").split("\n") if x]
        assert len(out) - result.upsampled + len(capped) == len(rows)
        datakit.balance(path, "c", folder / "again.jsonl", strategy=strategy, seed=seed, max_per_class=2)
        assert (folder / "again.jsonl").read_bytes() == (folder / "out.jsonl").read_bytes()


@SETTINGS
@given(st.lists(alpaca, min_size=1, max_size=8), st.sampled_from(["sharegpt", "openai"]))
def test_alpaca_survives_a_round_trip_through_conversations(records, via):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "a.json"
        path.write_text(json.dumps(records, ensure_ascii=False))
        datakit.convert(path, via, folder / "conv.json")
        result = datakit.convert(folder / "conv.json", "alpaca", folder / "back.json")
        assert result.refused == 0
        assert [r.obj for r in read_raw(folder / "back.json").records] == records
