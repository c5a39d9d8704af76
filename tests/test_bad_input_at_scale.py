"""Bad input at scale: a broken line deep in a large file is one finding and the rest is read; a truncated gzip and a
disk that fills while writing end with one clear line, no partial output, and the input untouched."""
from __future__ import annotations

import gzip
import hashlib
import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

RECORDS = 60_000


def big_file(path, bad_at: int | None = None, cut_last: bool = False):
    lines = [json.dumps({"instruction": f"Question number {i}: what is {i} plus {i}?",
                         "output": f"The sum of {i} and {i} is {2 * i}, since adding a number to itself doubles it."})
             for i in range(RECORDS)]
    if bad_at:
        lines[bad_at - 1] = '{"instruction": "broken", "output": '
    text = "\n".join(lines) + "\n"
    if cut_last:
        text = text[:-30]
    path.write_text(text, encoding="utf-8")
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_broken_line_deep_in_a_large_file_is_one_finding_and_the_rest_is_read(tmp_path):
    path = big_file(tmp_path / "big.jsonl", bad_at=31_337, cut_last=True)
    proc = run_cli("audit", path, "--only", "format,empty,duplicate", "--batch-records", "4000", "--json",
                   tmp_path / "r.json", "--no-html", "-q", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    bad = [f for f in report["findings"] if f["rule"] == "format.invalid_json"]
    assert [f["line"] for f in bad] == [31_337, RECORDS]
    assert "truncated record" in bad[1]["message"]
    assert report["profile"]["records"] == RECORDS and report["profile"]["valid_records"] == RECORDS - 2


def test_a_truncated_gzip_ends_with_a_clear_error_and_writes_nothing(tmp_path):
    plain = big_file(tmp_path / "big.jsonl").read_bytes()
    packed = gzip.compress(plain)
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    before = digest(path)
    audit = run_cli("audit", path, "--json", tmp_path / "r.json", "--no-html", "-q")
    fixed = run_cli("fix", path, "-o", tmp_path / "clean.jsonl.gz", "-q")
    for proc in (audit, fixed):
        assert proc.returncode == 2 and "gzip" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl", "big.jsonl.gz"]  # no report, no partial output
    assert digest(path) == before


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("fraction", [8, 2])  # the working files fill it, or the output does
def test_a_full_disk_while_writing_ends_with_a_clear_error_and_no_partial_output(tmp_path, fraction):
    path = big_file(tmp_path / "big.jsonl", bad_at=10)
    before = digest(path)
    command = [str(Path(sys.executable).parent / "datakit"), "fix", str(path), "-o", str(tmp_path / "clean.jsonl"), "-q"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False,
                          preexec_fn=_limit_file_size(path.stat().st_size // fraction))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl"]  # neither CLEAN nor REJ, nor a temp file
    assert digest(path) == before


@pytest.mark.parametrize("after", [0.0, 6.0])  # while the workers start, and while they compute batches
def test_batch_workers_end_when_the_audit_is_killed(tmp_path, after):
    """However the audit dies (kill -9, the OOM killer), its batch workers do not keep computing as orphans."""
    import os
    import time

    import psutil

    records = (json.dumps({"instruction": f"Question {i}: what is {i} plus one?", "output": f"It is {i + 1}, one more."})
               for i in range(250_000))
    path = tmp_path / "large.jsonl"
    path.write_text("\n".join(records) + "\n", encoding="utf-8")  # ~20 MB: more than two batches, so workers start
    proc = subprocess.Popen([str(Path(sys.executable).parent / "datakit"), "audit", str(path), "--no-html", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while len(workers := parent.children(recursive=True)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) >= 2, "the audit did not start its batch workers"
    time.sleep(after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    alive = psutil.wait_procs(workers, timeout=20)[1]
    assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
