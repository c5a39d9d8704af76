"""Generators of hostile dataset files, shared by the property tests (tests/test_fuzz_properties.py) and the
`make fuzz` driver (tests/fuzz/run.py): near-JSON lines that mix valid records of every format with broken JSON,
BOMs, CRLF, NULs, invalid UTF-8, escaped lone surrogates, huge numbers and deep nesting; arbitrary JSON values
and records whose fields hold any type."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from hypothesis import strategies as st

SUFFIXES = (".jsonl", ".json", ".jsonl.gz")
# Field names of every record format the normaliser knows, so generated objects reach every branch.
KEYS = ["instruction", "input", "output", "history", "system", "conversations", "messages", "turns", "from", "value",
        "role", "content", "question", "std_answer", "prompt", "completion", "instances", "tool_calls", "type", "text",
        "category", "id"]
SNIPPETS = ["<b>x</b>", "&amp;lt;", "&nbsp;", "\u200b", "\u200d", "\x07", "\x00", "\ufeff", "\ufffd", "\r", "\r\n",
            "\u2028", "### Response:", "### 回答：", "<|im_start|>", "{{name}}", "ann.lee@fastmail.fm", "13812345678",
            "4111 1111 1111 1111", "sk-" + "a1B2c3D4" * 5, "Ã©", "recieve", "teh", "一如继往", "如何", "🙂", "```<i>x</i>```"]

text = st.lists(st.one_of(st.text(max_size=10), st.sampled_from(SNIPPETS)), max_size=6).map("".join)
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), text)
json_value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4),
                                                                          inner, max_size=4)), max_leaves=12)
turn = st.one_of(st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", "robot", ""]), "value": text}),
                 st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "Bot"]),
                                        "content": st.one_of(text, st.lists(st.fixed_dictionaries(
                                            {"type": st.just("text"), "text": text}), max_size=2), json_value)}),
                 json_value)
record = st.one_of(
    st.fixed_dictionaries({"instruction": text, "output": text}, optional={"input": text, "system": text,
                                                                           "history": json_value, "category": json_value}),
    st.fixed_dictionaries({"conversations": st.lists(turn, max_size=4)}, optional={"system": json_value}),
    st.fixed_dictionaries({"messages": st.lists(turn, max_size=4)}),
    st.fixed_dictionaries({"turns": st.lists(text, max_size=3)}),
    st.fixed_dictionaries({"question": text, "std_answer": text}),
    st.dictionaries(st.sampled_from(KEYS), json_value, max_size=5),
)


def _deep(depth: int) -> str:
    return '{"instruction": ' + "[" * depth + "]" * depth + ', "output": "x"}'


LINES = [
    '{"instruction": "a", "output": "b"',  # truncated
    '{"instruction": "a" "output": "b"}',  # missing comma
    '{"instruction": "\\ud800", "output": "half an emoji"}',  # escaped lone surrogate
    '{"instruction": "\\udc00\\ud83d", "output": "x"}',
    '{"instruction": "n", "output": ' + "9" * 5000 + "}",  # past Python's int digit limit (4300)
    '{"instruction": "n", "output": 1e999999}',
    '{"instruction": "a", "instruction": "dup", "output": "b"}',
    "[1, 2, 3]", '"just a string"', "42", "null", "NaN", "{}", "[", "}", "{{{", ",",
    _deep(5), _deep(2000),
]
raw_line = st.one_of(record.map(lambda r: json.dumps(r, ensure_ascii=False)), record.map(json.dumps),
                     st.sampled_from(LINES), text, st.just(""), st.just("   "))
EOL = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r", "\n\n"])
encoded = st.one_of(st.just("utf-8"), st.just("utf-8"), st.just("utf-8-sig"), st.just("utf-16"))
garbage = st.sampled_from([b"", b"", b"\xff", b"\xc3", b"\xe4\xbd", b"\x80\x80", b"\x00", b"\xed\xa0\x80"])


@st.composite
def near_json(draw: st.DrawFn) -> bytes:
    """A JSON Lines (or, one time in five, a JSON array) file's bytes: records of every format and broken lines."""
    lines = draw(st.lists(raw_line, max_size=10))
    if draw(st.integers(0, 4)) == 0:
        body = "[" + draw(st.sampled_from([",", ",\n", ", "])).join(lines) + draw(st.sampled_from(["]", "", "]\n", ",]"]))
    else:
        body = "".join(line + draw(EOL) for line in lines)
    data = body.encode(draw(encoded), errors="surrogatepass")
    cut = draw(st.integers(0, len(data)))
    return data[:cut] + draw(garbage) + data[cut:]


dataset_bytes = st.one_of(near_json(), st.binary(max_size=300))


def write(folder: Path, data: bytes, suffix: str, name: str = "data") -> Path:
    """data as a file named for its container (gzip-compressed for .gz, deterministic: no timestamp)."""
    path = folder / f"{name}{suffix}"
    path.write_bytes(gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data)
    return path

