"""`datakit audit --engine ray` finds exactly what the local engine finds: on a local Ray cluster of 2 workers (started
here as a user starts one, `ray start --head`), every field of the JSON report is compared with `--engine local` on
the planted set (one file cut into many byte ranges) and on a directory of shards (plain, gzip, CRLF, blank lines).
Without Ray installed `--engine ray` says how to install it in one line, and the local engine never imports Ray."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from datakit.io.read import line_ranges
from tests.conftest import ROOT
from tests.planted import EVAL_SET, write_planted

BIN = Path(sys.executable).parent
PIECE_BYTES = 600_000  # the planted set (2.7 MB) is cut into 5 byte ranges, each shard but the gzip one into 2
AUDIT = ("--label-field", "category", "--against", str(EVAL_SET), "--no-html", "-q")
TIMING = ("elapsed_s", "stages", "peak_rss_mb")  # how long and how much memory: the only fields engines may differ in
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (datakit[ray])")


def env(**extra: str) -> dict[str, str]:
    # a cluster started here needs no token: this machine's other Ray sessions may keep one in ~/.ray
    return dict(os.environ, COLUMNS="200", NO_COLOR="1", RAY_AUTH_MODE="disabled", **extra)


def audit(out: Path, *args: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([str(BIN / "datakit"), "audit", *map(str, args), *AUDIT, "--json", str(out)], check=False,
                          capture_output=True, text=True, env=env(**extra_env), timeout=300)
    return proc, json.loads(out.read_text()) if out.exists() else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head node with 2 CPUs (so 2 workers), as `ray start --head` starts one; stopped with the process group
    it started, never with `ray stop` (which would stop every Ray on the machine)."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="dkray", dir="/tmp")  # short: Ray's socket paths must stay short
    log = Path(temp) / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
                                 "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp],
                                stdout=out, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGINT)  # `ray start --block` stops its processes on SIGINT
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted(tmp_path_factory.mktemp("planted") / "planted.jsonl")


@pytest.fixture(scope="module")
def shards(planted, tmp_path_factory) -> Path:
    """The planted set in three shards: CRLF with blank lines, gzip, and a last line without a newline."""
    lines = planted.read_bytes().rstrip(b"\n").split(b"\n")
    third = len(lines) // 3
    folder = tmp_path_factory.mktemp("shards")
    first = lines[:third]
    first[5:5] = [b"", b"  "]
    (folder / "part-0.jsonl").write_bytes(b"\r\n".join(first) + b"\r\n")
    (folder / "part-1.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines[third : 2 * third]) + b"\n"))
    (folder / "part-2.jsonl").write_bytes(b"\n".join([*lines[2 * third :][:9], b"", *lines[2 * third :][9:]]))
    return folder


def same_reports(local: dict, ray: dict) -> None:
    assert {k: v for k, v in ray.items() if k not in TIMING} == {k: v for k, v in local.items() if k not in TIMING}
    assert "ray: map (wall)" in {s["stage"] for s in ray["stages"]}  # it did run on the cluster


@needs_ray
def test_ray_finds_what_local_finds_in_one_file_cut_into_pieces(cluster, planted, tmp_path):
    assert len(line_ranges(planted, PIECE_BYTES)) > 3
    local_run, local = audit(tmp_path / "local.json", planted, "--engine", "local")
    ray_run, ray = audit(tmp_path / "ray.json", planted, "--engine", "ray", "--ray-address", cluster,
                         DATAKIT_RAY_PIECE_BYTES=str(PIECE_BYTES))
    assert local_run.returncode == ray_run.returncode == 1, ray_run.stderr[-3000:]
    assert {"near_duplicate.cluster", "duplicate.exact", "leakage.eval_overlap"} <= {f["rule"] for f in local["findings"]}
    same_reports(local, ray)


@needs_ray
def test_ray_finds_what_local_finds_in_a_directory_of_shards(cluster, shards, tmp_path):
    local_run, local = audit(tmp_path / "local.json", shards, "--engine", "local")
    ray_run, ray = audit(tmp_path / "ray.json", shards, "--engine", "ray", "--ray-address", cluster,
                         DATAKIT_RAY_PIECE_BYTES=str(PIECE_BYTES))
    assert local_run.returncode == ray_run.returncode == 1, ray_run.stderr[-3000:]
    assert {"format.crlf", "format.blank_line"} <= {f["rule"] for f in local["findings"]}
    same_reports(local, ray)


@needs_ray
def test_fix_with_the_audit_on_ray_writes_what_the_local_fix_writes(cluster, planted, tmp_path):
    outputs = {}
    for engine in ("local", "ray"):
        extra = ("--ray-address", cluster) if engine == "ray" else ()
        proc = subprocess.run([str(BIN / "datakit"), "fix", str(planted), "-o", str(tmp_path / f"{engine}.jsonl"), "-q",
                               "--engine", engine, *extra], check=False, capture_output=True, text=True,
                              env=env(DATAKIT_RAY_PIECE_BYTES=str(PIECE_BYTES)), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[engine] = [(tmp_path / f"{engine}{part}.jsonl").read_bytes() for part in ("", ".rejected")]
    assert outputs["ray"] == outputs["local"] and outputs["local"][1]  # same clean and rejected bytes, some rejected


@needs_ray
def test_a_damaged_shard_is_one_line_as_with_the_local_engine(cluster, shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    (broken / "part-1.jsonl.gz").write_bytes((shards / "part-1.jsonl.gz").read_bytes()[:5000])
    local_run, _ = audit(tmp_path / "local.json", broken, "--only", "format")
    ray_run, _ = audit(tmp_path / "ray.json", broken, "--only", "format", "--engine", "ray", "--ray-address", cluster)
    assert local_run.returncode == ray_run.returncode == 2
    assert ray_run.stderr.strip().startswith("error:") and "gzip stream is damaged" in ray_run.stderr
    assert "Traceback" not in ray_run.stderr and "Ray" not in ray_run.stderr.replace("ray", "")


def test_without_ray_installed_the_ray_engine_says_how_to_install_it(planted, tmp_path):
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    proc, _ = audit(tmp_path / "r.json", planted, "--engine", "ray", PYTHONPATH=str(fake.parent))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --engine ray needs Ray: pip install 'datakit[ray]'"]


def test_the_local_engine_never_imports_ray(planted):
    code = f"""
import sys
from datakit.audit import Audit, audit
from datakit.config import build_config
from datakit.normalise import load
audit({str(planted)!r}, only=["format", "duplicate"])
config = build_config(only=["format"])
with Audit(load({str(planted)!r}), config, engine="ray"):  # records in memory: the local engine runs them
    pass
assert "ray" not in sys.modules, "ray was imported"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
