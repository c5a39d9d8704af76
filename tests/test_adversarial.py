"""Hostile and broken input through every command that reads data: a clear answer naming the file (and the line),
the rest of the file processed, never a traceback, never a hang.

The corpus is built by code (tests/adversarial.py). Each case's commands run in one process through the console
scripts' own entry points (one interpreter start per case, two cases at a time), bounded by a subprocess timeout;
`trainkit train` runs every case in one more process, on the tiny local model.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from datakit.io.read import InputError, read_raw
from tests.adversarial import LABEL, Case, broken_reports, build_corpus, good_records
from tests.conftest import ROOT

CASE_NAMES = (
    "malformed_json", "wrong_types_alpaca", "wrong_types_sharegpt", "wrong_types_openai", "deep_nesting_jsonl",
    "deep_nesting_array", "lone_surrogates", "huge_numbers", "nul_bytes", "invalid_utf8", "utf16_bom", "utf32_bom_array",
    "utf16_no_bom", "invalid_utf16", "utf8_bom_crlf", "duplicate_keys", "unclosed_array", "unclosed_array_compact",
    "truncated_gzip", "gzip_bad_header", "gzip_bomb", "parquet_wrong_schema", "parquet_wrong_types", "parquet_damaged",
    "empty", "whitespace_only", "top_level_string", "binary_garbage", "a_directory", "fifo", "no_permission",
    "label_confusables", "huge_line",
)
DATAKIT_COMMANDS = ("audit", "report_of_audit", "report", "fix", "balance", "split", "convert", "mix")
CASE_TIMEOUT = 240  # seconds for one case's commands together: a hang fails its case, not the session
SWEEP_LINE = 12 << 20  # the huge line of the sweep: over the record limit, as the 200 MB one, at a fraction of the cost
NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def _env(case: Case | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATAKIT_DEBUG", "TRAINKIT_DEBUG")}
    return env | {"COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"} | (case.env if case else {})


def _drive(jobs: list[dict], workdir: Path, prefix: list[str] = (), timeout: int = CASE_TIMEOUT,
           env: dict | None = None) -> dict[str, dict]:
    """Run jobs in one driver process; key -> result, and a "timeout" result for every job a hang left unrun."""
    jobs_file = workdir / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    cmd = [*prefix, sys.executable, "-m", "tests.adversarial", str(jobs_file)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, env=env or _env(), timeout=timeout)
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        stdout, stderr = (e.stdout or b"").decode(), (e.stderr or b"").decode()
    done = {r["key"]: r | {"driver_stderr": stderr} for r in map(json.loads, stdout.splitlines())}
    return {j["key"]: done.get(j["key"], {"rc": "timeout", "output": stderr[-2000:], "driver_stderr": stderr})
            for j in jobs}


def _jobs(case: Case, out: Path, good: Path) -> list[dict]:
    suffix = "".join(case.path.suffixes) or ".jsonl"
    p = str(case.path)
    commands = {
        "audit": ["audit", p, "--json", out / "report.json", "--html", out / "report.html", "--label-field", LABEL, "-q"],
        "report_of_audit": ["report", out / "report.json", "--html", out / "again.html", "--markdown", out / "again.md"],
        "report": ["report", p, "--html", out / "data-as-report.html"],
        "fix": ["fix", p, "-o", out / f"clean{suffix}", "-q"],
        "balance": ["balance", p, "--by", LABEL, "-o", out / f"balanced{suffix}"],
        "split": ["split", p, "-o", out / "split"],
        "convert": ["convert", p, "--to", "sharegpt", "-o", out / "converted.jsonl"],
        "mix": ["mix", p, good, "-o", out / "mixed.jsonl", "--ratio", "0.5,0.5"],
    }
    return [{"tool": "datakit", "key": name, "args": list(map(str, args)), "env": case.env} for name, args in commands.items()]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("adversarial")
    root.chmod(0o755)  # the no-permission case reads its neighbours without the power to bypass permissions
    return {c.name: c for c in build_corpus(root, huge_line_bytes=SWEEP_LINE)}


@pytest.fixture(scope="session")
def good_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "general.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good_records(10, offset=100)))
    return path


@pytest.fixture(scope="session")
def outcomes(corpus, good_file, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """Every case through every datakit command: case -> command -> {rc, output}, two cases at a time."""
    root = tmp_path_factory.mktemp("outcomes")

    def run(case: Case) -> tuple[str, dict]:
        out = root / case.name
        out.mkdir()
        if case.unreadable and not shutil.which("setpriv"):
            return case.name, {}
        return case.name, _drive(_jobs(case, out, good_file), out, NO_DAC if case.unreadable else [], env=_env(case))

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, corpus.values()))


def test_the_corpus_holds_every_named_case(corpus):
    assert tuple(corpus) == CASE_NAMES


@pytest.mark.parametrize("command", DATAKIT_COMMANDS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_input_gets_a_clear_answer_from_every_command(name, command, corpus, outcomes, tmp_path_factory):
    case = corpus[name]
    if case.unreadable and not outcomes[name]:
        pytest.skip("setpriv is needed to read without root's power to bypass permissions")
    result = outcomes[name][command]
    output = result["output"]
    assert result["rc"] != "timeout", f"{name}: `datakit {command}` did not finish (a hang?)"
    assert "Traceback" not in output + result["driver_stderr"] and "internal error" not in output, output
    assert result["rc"] in (0, 1, 2), output
    if case.unusable:
        if command == "report_of_audit":  # the audit wrote no report: the missing file is named
            assert result["rc"] == 2 and "report.json" in output
            return
        assert result["rc"] == 2, output
        assert str(case.path) in " ".join(output.split()), f"the message does not name {case.path}: {output}"
        return
    out = Path(result["args"][3]).parent if command == "audit" else None
    CHECKS[command](case, result, out)


def _audit(case: Case, result: dict, out: Path) -> None:
    assert result["rc"] in (0, 1), result["output"]
    report = json.loads((out / "report.json").read_text())
    flagged = {f["line"] for f in report["findings"] if f["rule"].startswith("format.") and f.get("line")}
    assert set(case.bad_lines) <= flagged, f"lines {sorted(set(case.bad_lines) - flagged)} were not flagged"
    if case.note:
        assert case.note in {f["rule"] for f in report["findings"]}
    if case.records is not None:
        assert report["profile"]["records"] == case.records
    if case.name == "label_confusables":  # every spelling of 'positive' but the one chosen is named, on its line
        variants = {f["line"] for f in report["findings"] if f["rule"] == "balance.label_variant"}
        assert variants == {1, 2, 3, 5, 6, 7, 8}


def _report_of_audit(case: Case, result: dict, out: Path) -> None:
    assert result["rc"] == 0, result["output"]


def _report(case: Case, result: dict, out: Path) -> None:
    assert result["rc"] == 2 and str(case.path) in " ".join(result["output"].split()), result["output"]


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        return len(read_raw(path).records)
    except InputError as e:
        assert "empty" in str(e)
        return 0


def _fix(case: Case, result: dict, out: Path) -> None:
    assert result["rc"] == 0, result["output"]
    args = result["args"]
    clean = Path(args[args.index("-o") + 1])
    rejected = clean.with_name("clean.rejected.jsonl")
    if case.records is not None:
        assert _count(clean) + _count(rejected) == case.records, "clean + rejected != input"
    reasons = [json.loads(line) for line in rejected.read_text(encoding="utf-8").splitlines()] if rejected.exists() else []
    assert all(r["line"] and r["reasons"] for r in reasons)
    unparsed = {r.line for r in read_raw(case.path).records if r.error is not None}
    assert unparsed <= {r["line"] for r in reasons}, "a record that cannot be read was kept"


def _balance(case: Case, result: dict, out: Path) -> None:
    if result["rc"] == 2:  # a file where no readable record has the label: said so, naming the file
        assert str(case.path) in " ".join(result["output"].split()) and LABEL in result["output"]
    else:
        assert result["rc"] == 0, result["output"]
    if case.name == "label_confusables":  # one class spelt 8 ways is balanced as 8 classes: never silently
        assert "8 classes are one label spelt 8 ways" in " ".join(result["output"].split())


def _zero(case: Case, result: dict, out: Path) -> None:
    assert result["rc"] == 0, result["output"]


def _mix(case: Case, result: dict, out: Path) -> None:
    if result["rc"] == 2:  # nothing usable to mix, or formats the mix cannot join without --to: said so
        assert str(case.path) in " ".join(result["output"].split()), result["output"]
    else:
        assert result["rc"] == 0, result["output"]


CHECKS = {"audit": _audit, "report_of_audit": _report_of_audit, "report": _report, "fix": _fix, "balance": _balance,
          "split": _zero, "convert": _zero, "mix": _mix}


def test_broken_report_files_get_one_clear_line(tmp_path):
    files = broken_reports(tmp_path)
    jobs = [{"tool": "datakit", "key": name, "args": ["report", str(path), "--html", str(tmp_path / f"{name}.html")]}
            for name, path in files.items()]
    for name, result in _drive(jobs, tmp_path).items():
        output = " ".join(result["output"].split())
        assert result["rc"] == 2 and "Traceback" not in output and "internal error" not in output, (name, output)
        assert str(files[name]) in output and "not a datakit JSON report" in output, (name, output)


def test_a_200_mb_line_is_one_finding_on_its_line(tmp_path):
    from tests.adversarial import _huge_line

    data = _huge_line(tmp_path / "huge.jsonl", 200 << 20)
    jobs = [{"tool": "datakit", "key": "audit", "args": ["audit", str(data), "--json", str(tmp_path / "r.json"), "--no-html", "-q"]}]
    result = _drive(jobs, tmp_path, timeout=300)["audit"]
    assert result["rc"] == 1 and "Traceback" not in result["output"] + result["driver_stderr"], result["output"]
    findings = json.loads((tmp_path / "r.json").read_text())["findings"]
    assert [(f["line"], f["rule"]) for f in findings if f["rule"].startswith("format.")] == [(2, "format.record_too_large")]


def test_an_eval_set_without_one_readable_record_is_no_crash(corpus, tmp_path):
    args = ["audit", ROOT / "examples" / "identity.json", "--against", corpus["binary_garbage"].path, "--json",
            tmp_path / "r.json", "--no-html", "-q"]
    jobs = [{"tool": "datakit", "key": "audit", "args": list(map(str, args))}]
    result = _drive(jobs, tmp_path)["audit"]
    assert result["rc"] in (0, 1) and "Traceback" not in result["output"], result["output"]


@pytest.fixture(scope="session")
def trained(corpus, tiny_model, tmp_path_factory) -> dict[str, dict]:
    """`trainkit train` (audit gate, data loading, one step where the gate lets the data through) on every case."""
    root = tmp_path_factory.mktemp("train")
    jobs = [{"tool": "trainkit", "key": c.name, "env": c.env,
             "args": ["train", str(c.path), "--model", str(tiny_model), "--output", str(root / c.name), "--max-steps", "1"]}
            for c in corpus.values() if not c.unreadable]
    return _drive(jobs, root, timeout=600)


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n != "no_permission"])
def test_trainkit_train_gives_hostile_data_a_clear_answer(name, corpus, trained):
    case, result = corpus[name], trained[name]
    output = " ".join(result["output"].split())
    assert result["rc"] != "timeout", f"{name}: `trainkit train` did not finish (a hang?)"
    assert "Traceback" not in result["output"] + result["driver_stderr"] and "internal error" not in output, output
    if case.unusable:
        assert result["rc"] == 2 and str(case.path) in output, output
    else:  # trained one step, or refused by the audit gate (exit 3) with the findings and the fix command
        assert result["rc"] in (0, 3), output
