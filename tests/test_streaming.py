"""audit, fix and split stream their input: none of them reads a whole file into memory (`read_raw`), and what they
write still accounts for every record."""
from __future__ import annotations

import json

import pytest

import datakit
import datakit.io.read as read_module
from datakit.io.read import open_raw
from tests.planted import write_planted


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted") / "planted.jsonl")


@pytest.fixture
def no_whole_reads(monkeypatch, planted):
    """The input is never read whole (small side files, such as split's held-out sets checked for leakage, may be)."""
    whole = read_module.read_raw

    def refuse(path, *args, **kwargs):
        assert str(path) != str(planted), "read the whole input into memory"
        return whole(path, *args, **kwargs)

    monkeypatch.setattr(read_module, "read_raw", refuse)


def lines_of(path):
    return [r.line for batch in open_raw(path).batches() for r in batch]


def test_audit_streams(planted, no_whole_reads):
    report = datakit.audit(planted, label_field="category")
    assert report.profile.records == len(lines_of(planted))


def test_fix_streams_and_keeps_every_record(planted, tmp_path, no_whole_reads):
    result = datakit.fix(planted, tmp_path / "clean.jsonl")
    clean = sum(len(b) for b in open_raw(tmp_path / "clean.jsonl").batches())
    rejected = [json.loads(x)["line"] for x in (tmp_path / "clean.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert clean + len(rejected) == len(lines_of(planted)) == result.records
    assert rejected == sorted(rejected) and result.dropped.get("duplicate.exact") and result.dropped.get("near_duplicate.cluster")


def test_split_streams_and_keeps_every_record(planted, tmp_path, no_whole_reads):
    result = datakit.split(planted, tmp_path / "out", eval_share=0.1, seed=3)
    written = sum(sum(len(b) for b in open_raw(f).batches()) for f in result.files.values())
    assert written + result.rejected == len(lines_of(planted))


def test_a_script_without_a_main_guard_audits_once(tmp_path):
    """Batch workers are spawned processes, which would run a user's unguarded script again; they must not."""
    import subprocess
    import sys

    records = (json.dumps({"instruction": f"Question {i}: what is {i} plus one?", "output": f"It is {i + 1}."})
               for i in range(250_000))
    data = tmp_path / "large.jsonl"
    data.write_text("\n".join(records) + "\n", encoding="utf-8")  # more than two batches: workers start
    script = tmp_path / "user_script.py"
    script.write_text(f"import datakit\nprint('audit', datakit.audit({str(data)!r}, only=['format']).profile.records)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["audit 250000"]
