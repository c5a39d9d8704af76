"""An adversarial corpus built by code: hostile and broken inputs for every command that reads data.

`build_corpus(root)` writes each case into its own folder under root (nothing big is committed: a 200 MB line or
a gzip bomb is made in a second) and returns the cases with what a correct reader must say about them.
`python -m tests.adversarial JOBS.json` runs command lines through the console scripts' own entry points
(`datakit.cli:main`, `trainkit.cli:main`) in one process, so a whole case costs one interpreter start; it writes one
JSON result per command as it finishes, so a hang (bounded by the caller's subprocess timeout) names its command.
"""
from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "category"


@dataclass(frozen=True)
class Case:
    """One hostile input and what the commands must make of it."""

    name: str
    path: Path
    unusable: bool = False  # every command refuses it with exit status 2 and a message naming the file
    bad_lines: tuple[int, ...] = ()  # lines the audit must flag (a format.* finding on that line)
    records: int | None = None  # records in the file: fix's clean + rejected must add up to it
    env: dict[str, str] = field(default_factory=dict)  # environment the commands run with
    unreadable: bool = False  # run without the power to bypass file permissions (the tests run as root)
    note: str | None = None  # a file-level finding the audit must report


def good_records(n: int = 12, offset: int = 0) -> list[dict]:
    """Distinct, clean Alpaca records in two classes: the well-behaved rest of each hostile file."""
    topics = ["rivers", "volcanoes", "glaciers", "deserts", "forests", "coral reefs", "tides", "comets", "bridges",
              "compilers", "databases", "routers", "batteries", "lenses", "vaccines", "bees"]
    out = []
    for i in range(offset, offset + n):
        topic = topics[i % len(topics)]
        out.append({"instruction": f"Explain in two sentences how {topic} matter to people, example {i}.",
                    "input": "", "output": f"{topic.capitalize()} shape daily life in many places; case {i} shows how "
                    f"communities plan around {topic} and why that planning pays off over decades.",
                    LABEL: "science" if i % 2 else "engineering"})
    return out


def _jsonl(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _with_bad(bad: list[str], n_good: int = 8) -> tuple[str, tuple[int, ...], int]:
    """JSON Lines text with the bad lines between good ones: (text, the bad lines' numbers, records)."""
    good = [json.dumps(r, ensure_ascii=False) for r in good_records(n_good)]
    lines, bad_lines = good[: n_good // 2], []
    for b in bad:
        lines.append(b)
        bad_lines.append(len(lines))
    lines += good[n_good // 2 :]
    return _jsonl(lines), tuple(bad_lines), len(lines)


MALFORMED = [
    '{"instruction": "unterminated string, "output": "x"}',
    "{'instruction': 'single quotes', 'output': 'x'}",
    '{"instruction": "trailing comma", "output": "x",}',
    '{"instruction": "missing comma" "output": "x"}',
    '{"instruction": "unclosed object", "output": "x"',
    '{"instruction": "extra brace", "output": "x"}}',
    '{"instruction": "two objects", "output": "x"} {"instruction": "y"}',
    '// a comment line',
    "undefined",
    '{"instruction": "raw\ttab in a string", "output": "x"}',
    '{"instruction": "bad escape \\x41", "output": "x"}',
    '{"instruction": "short unicode escape \\u12", "output": "x"}',
    '{instruction: "unquoted key", output: "x"}',
    "[",
    "}",
    '{"instruction": "value missing", "output": }',
    "\x1b[31m{\"instruction\": \"terminal colour codes\"}\x1b[0m",
]

WRONG_TYPES = {
    "alpaca": [{"instruction": 42, "output": "x"}, {"instruction": "q", "output": ["a", "b"]},
               {"instruction": "q", "output": {"text": "a"}}, {"instruction": None, "output": "x"},
               {"instruction": "q", "output": True}, {"instruction": "q", "input": 3.5, "output": "x"},
               {"instruction": "q", "output": "x", "history": "not a list"},
               {"instruction": "q", "output": "x", "history": [[1, 2]]}, {"instruction": "q", "output": "x", "system": []},
               {"instruction": 1, "output": 2, LABEL: 3}, {"instruction": "q", "output": float("nan")},
               {"instruction": "q", "output": float("inf")}, {"instruction": [], "output": []}],
    "sharegpt": [{"conversations": "not a list"}, {"conversations": [1, 2]},
                 {"conversations": [{"from": 1, "value": "q"}, {"from": "gpt", "value": "a"}]},
                 {"conversations": [{"from": "human", "value": ["q"]}, {"from": "gpt", "value": "a"}]},
                 {"conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]},
                 {"conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": {"a": 1}}]},
                 {"conversations": [], LABEL: ["a", "list"]}, {"conversations": [{"value": "no speaker"}]},
                 {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": 7}],
    "openai": [{"messages": {"role": "user"}}, {"messages": ["hello"]}, {"messages": [{"role": 1, "content": "q"}]},
               {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},
               {"messages": [{"role": "user", "content": [{"type": "text", "text": 9}]}, {"role": "assistant", "content": "a"}]},
               {"messages": [{"role": "user", "content": [1, None]}, {"role": "assistant", "content": "a"}]},
               {"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]},
               {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": "x"}]},
               {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], LABEL: {"x": 1}},
               {"messages": []}, {"messages": None, "conversations": 3}],
}


def _deep_lines(depth: int = 10_000) -> list[str]:
    return ['{"instruction": "q", "output": "a", "meta": ' + "[" * depth + "]" * depth + "}",
            '{"instruction": "q", "output": "a", "meta": ' + '{"a": ' * depth + "1" + "}" * depth + "}",
            '{"instruction": "q", "output": "a", "meta": ' + "[" * depth + "}"]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _gzip_bomb(path: Path, size: int) -> Path:
    """A gzip file of a few KB that decompresses to `size` bytes: one good record, then NUL bytes."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [deflate.compress((json.dumps(good_records(1)[0]) + "\n").encode())]
    block = b"\x00" * (1 << 20)
    parts += [deflate.compress(block) for _ in range(size >> 20)]
    path.write_bytes(b"".join(parts) + deflate.flush())
    return path


def _huge_line(path: Path, size: int) -> Path:
    """A good record, then one record `size` bytes long (an answer of one repeated sentence), then a good record."""
    first, last = (json.dumps(r) for r in good_records(2))
    sentence = "The same sentence again, as a scraper stuck in a loop writes it. "
    with open(path, "w", encoding="utf-8") as f:
        f.write(first + '\n{"instruction": "Summarise the page.", "output": "')
        f.write(sentence * (size // len(sentence)))
        f.write('"}\n' + last + "\n")
    return path


def _parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def build_corpus(root: Path, *, huge_line_bytes: int = 200 << 20) -> list[Case]:
    """Every case written under root, one folder each."""
    cases: list[Case] = []

    def folder(name: str) -> Path:
        (root / name).mkdir(parents=True, exist_ok=True)
        return root / name

    def add(name: str, file: str, data: bytes | str | None = None, **expect) -> Path:
        path = folder(name) / file
        if data is not None:
            path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        cases.append(Case(name, path, **expect))
        return path

    text, bad, n = _with_bad(MALFORMED)
    add("malformed_json", "d.jsonl", text, bad_lines=bad, records=n)
    for fmt, records in WRONG_TYPES.items():
        text, bad, n = _with_bad([json.dumps(r) for r in records])
        add(f"wrong_types_{fmt}", "d.jsonl", text, bad_lines=bad, records=n)
    text, bad, n = _with_bad(_deep_lines())
    add("deep_nesting_jsonl", "d.jsonl", text, bad_lines=bad, records=n)
    elements = [json.dumps(r) for r in good_records(4)]
    deep = '{"instruction": "q", "output": "a", "meta": ' + "[" * 10_000 + "]" * 10_000 + "}"
    add("deep_nesting_array", "d.json", "[\n  " + ",\n  ".join([*elements[:2], deep, *elements[2:]]) + "\n]\n",
        bad_lines=(3,), records=5)
    text, bad, n = _with_bad(['{"instruction": "q", "output": "lone high \\ud83d surrogate"}',
                              '{"instruction": "lone low \\udc00 surrogate", "output": "a"}',
                              '{"\\ud800key": "surrogate in a key", "instruction": "q", "output": "a"}',
                              '{"instruction": "q", "output": "\\ude00\\ud83d reversed pair"}'])
    add("lone_surrogates", "d.jsonl", text, bad_lines=bad, records=n)
    text, bad, n = _with_bad(['{"instruction": "q", "output": "a", "n": ' + "9" * 100_000 + "}",
                              '{"instruction": "q", "output": "a", "n": -' + "1" * 5_000 + "}"])
    add("huge_numbers", "d.jsonl", text, bad_lines=bad, records=n)
    text, bad, n = _with_bad(['{"instruction": "q",\x00 "output": "NUL between tokens"}',
                              '{"instruction": "raw NUL \x00 inside a string", "output": "a"}', "\x00" * 40])
    escaped_nul = json.dumps({"instruction": "escaped NUL \u0000 in a string", "output": "a valid one, NUL kept", LABEL: "x"})
    add("nul_bytes", "d.jsonl", text + escaped_nul + "\n", bad_lines=bad, records=n + 1)
    good = [json.dumps(r, ensure_ascii=False).encode() for r in good_records(6)]
    invalid = [b'{"instruction": "caf\xe9 latin-1", "output": "a"}', b'{"instruction": "\xc0\xaf overlong", "output": "a"}',
               b'{"instruction": "\xed\xa0\x80 encoded surrogate", "output": "a"}', b"\xff\xfe\xfa\xfb"]
    add("invalid_utf8", "d.jsonl", b"\n".join(good[:3] + invalid + good[3:]) + b'\n{"instruction": "cut \xe4\xb8',
        bad_lines=(7, 11), records=11, note="format.invalid_utf8")
    rows = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in good_records(6)) + "\r\n"
    add("utf16_bom", "d.jsonl", codecs.BOM_UTF16_LE + rows.encode("utf-16-le"), records=6, note="format.encoding")
    add("utf32_bom_array", "d.json", codecs.BOM_UTF32_BE + json.dumps(good_records(6)).encode("utf-32-be"),
        records=6, note="format.encoding")
    # without its mark UTF-16 is NUL-riddled text: every line fails, and the NUL after the last newline is a 7th
    add("utf16_no_bom", "d.jsonl", rows.encode("utf-16-le"), bad_lines=tuple(range(1, 8)), records=7)
    add("invalid_utf16", "d.jsonl", codecs.BOM_UTF16_BE + rows.encode("utf-16-be")[:-7] + b"\xdc\x00\x00",
        note="format.encoding")
    add("utf8_bom_crlf", "d.jsonl", "\ufeff" + rows, records=6, note="format.bom")
    dup = '{"instruction": "first", "instruction": "second wins", "output": "a", "output": "b"}'
    text, _, n = _with_bad([dup, '{"instruction": "q", "output": "a", "category": "x", "category": "y"}'])
    add("duplicate_keys", "d.jsonl", text, records=n)
    array = json.dumps(good_records(5), indent=2)
    add("unclosed_array", "d.json", array[: array.rindex("}") + 1] + ',\n  {"instruction": "cut off', records=6,
        bad_lines=(6,), note="format.truncated_file")
    add("unclosed_array_compact", "d.json", "[" + ",".join(json.dumps(r) for r in good_records(4)), records=4,
        note="format.truncated_file")
    packed = gzip.compress(_jsonl([json.dumps(r) for r in good_records(200)]).encode())
    add("truncated_gzip", "d.jsonl.gz", packed[: len(packed) // 2], unusable=True)
    add("gzip_bad_header", "d.jsonl.gz", b"\x1f\x8b\x08\xff" + b"not really gzip", unusable=True)
    _gzip_bomb(add("gzip_bomb", "d.jsonl.gz", unusable=True, env={"DATAKIT_MAX_GUNZIP_BYTES": str(16 << 20)}), 64 << 20)
    _parquet(add("parquet_wrong_schema", "d.parquet", bad_lines=(1, 2, 3), records=3),
             {"a": [1, 2, 3], "b": [[1], [2], None], "c": [{"x": 1}, None, {"x": 3}]})
    _parquet(add("parquet_wrong_types", "d.parquet", bad_lines=(1, 2, 3), records=3),
             {"instruction": [1, 2, 3], "output": [[1.5], [], None], LABEL: [True, False, None]})
    add("parquet_damaged", "d.parquet", b"PAR1" + os.urandom(300) + b"PAR1", unusable=True)
    add("empty", "d.jsonl", b"", unusable=True)
    add("whitespace_only", "d.jsonl", " \n\t\r\n\n", unusable=True)
    add("top_level_string", "d.json", '"just a string"', unusable=True)
    add("binary_garbage", "d.jsonl", bytes(range(256)) * 8 + b"\x89PNG\r\n\x1a\n" + os.urandom(1000), bad_lines=(1,))
    add("a_directory", "empty_dir", unusable=True).mkdir()
    _fifo(add("fifo", "d.jsonl", unusable=True))
    no_read = add("no_permission", "d.jsonl", _jsonl([json.dumps(r) for r in good_records(6)]), unusable=True,
                  unreadable=True)
    no_read.chmod(0)
    labels = ["positive", "positive ", " Positive", "POSITIVE", "pos\u200bitive", "positive\u00a0", "posit\u0456ve",
              "\uff50\uff4f\uff53\uff49\uff54\uff49\uff56\uff45", "negative", "negative", "negative", "negative"]
    rows = [dict(r, **{LABEL: label}) for r, label in zip(good_records(len(labels)), labels, strict=True)]
    add("label_confusables", "d.jsonl", _jsonl([json.dumps(r, ensure_ascii=False) for r in rows]),
        records=len(rows))
    _huge_line(add("huge_line", "d.jsonl", records=3), huge_line_bytes)
    return cases


def broken_reports(root: Path) -> dict[str, Path]:
    """Files handed to `datakit report` that are no usable JSON report (beyond the data files of the corpus)."""
    folder = root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "report_not_json.json": b"<html>not a report</html>",
        "report_wrong_types.json": json.dumps({"version": 3, "findings": "none", "profile": [1, 2]}).encode(),
        "report_truncated.json": b'{"tool_version": "1", "findings": [{"rule": "format.invalid_json", "line": ',
        "report_array.json": b"[1, 2, 3]",
        "report_deep.json": b"[" * 100_000 + b"]" * 100_000,
        "report_huge_number.json": b'{"records": ' + b"9" * 100_000 + b"}",
        "report_lone_surrogate.json": b'{"source": "\\udc80"}',
        "report_utf16.json": codecs.BOM_UTF16_LE + '{"findings": []}'.encode("utf-16-le"),
        "report_empty.json": b"",
    }
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The driver: command lines through the console scripts' entry points, one process for many commands


def _run_one(tool: str, args: list[str]) -> dict:
    """Run one command line as its console script would; its exit status and everything it printed."""
    if tool == "datakit":
        from datakit.cli import main
    else:
        from trainkit.cli import main
    captured = io.StringIO()
    sys.argv = [tool, *args]
    code: int | str | None = 0
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        try:
            main()
        except SystemExit as e:
            code = e.code
        except BaseException as e:  # noqa: BLE001 -- an escape from main() is itself the finding
            import traceback

            code, _ = "escaped", traceback.print_exc(file=captured)
            captured.write(f"{type(e).__name__}: {e}")
    return {"tool": tool, "args": args, "rc": 0 if code is None else code, "output": captured.getvalue()}


def main(jobs_file: str) -> None:
    """Run every job of the JSON file ({"tool", "args", "key"} each) and print one JSON result line per job."""
    os.environ.pop("DATAKIT_DEBUG", None)
    os.environ.pop("TRAINKIT_DEBUG", None)
    for job in json.loads(Path(jobs_file).read_text()):
        os.environ.update(job.get("env", {}))
        result = _run_one(job["tool"], job["args"])
        for name in job.get("env", {}):
            os.environ.pop(name, None)
        sys.__stdout__.write(json.dumps(result | {"key": job["key"]}) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    main(sys.argv[1])
