"""`datakit review` as a user runs it: the real command in a subprocess, its printed URL, and the guard in front of
every request (token in the URL, then in a header for the API; loopback Host only; no other origin); Ctrl-C stops it
cleanly; a second review of the same decisions file, a report of another file and a taken port are refused."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import run_cli
from tests.test_review_session import FAMILIES, HTML, review_sample


@dataclass
class Served:
    url: str
    port: int
    token: str
    proc: subprocess.Popen


@contextmanager
def review_server(*args: str, cwd: Path | None = None) -> Iterator[Served]:
    """`datakit review ARGS --no-browser` running until the block ends (then Ctrl-C, as a user stops it)."""
    exe = Path(sys.executable).parent / "datakit"
    proc = subprocess.Popen([str(exe), "review", *map(str, args), "--no-browser", "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=dict(os.environ, COLUMNS="200", NO_COLOR="1"))
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            proc.wait(timeout=60)
            raise AssertionError(f"no URL printed: {url!r} {proc.stderr.read()}")
        parts = urlsplit(url)
        yield Served(url, parts.port, parts.query.removeprefix("token="), proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


def request(served: Served, method: str, path: str, headers: dict | None = None, body: dict | None = None,
            ) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    sent = {"Host": f"127.0.0.1:{served.port}"} | (headers or {})
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=sent)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    data = review_sample(folder / "sample.jsonl")
    before = data.read_bytes()
    with review_server(data, "--only", FAMILIES, "--decisions", folder / "review.jsonl") as s:
        s.folder = folder
        yield s
    out, err = s.proc.communicate(timeout=30)
    assert data.read_bytes() == before  # the input is never modified
    assert s.proc.returncode == 0, err
    assert re.search(r"stopped: [01] of 10 flagged records decided", out) and f"--decisions {folder / 'review.jsonl'}" in " ".join(out.split())


def test_the_page_needs_the_token_from_the_url(served):
    assert request(served, "GET", "/")[0] == 403
    assert request(served, "GET", "/?token=wrong" + served.token[5:])[0] == 403
    status, headers, page = request(served, "GET", f"/?token={served.token}")
    assert status == 200 and b'<script src="/static/review.js"' in page
    assert "script-src 'self'" in headers["content-security-policy"] and headers["referrer-policy"] == "no-referrer"
    assert "httponly" in headers["set-cookie"].lower() and "samesite=strict" in headers["set-cookie"].lower()


def test_the_script_loads_with_the_cookie_the_page_set_and_not_without(served):
    cookie = {"Cookie": f"datakit_review_{served.port}={served.token}"}
    status, headers, script = request(served, "GET", "/static/review.js", cookie)
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"textContent" in script
    assert request(served, "GET", "/static/review.js")[0] == 403
    other_port = {"Cookie": f"datakit_review_{served.port + 1}={served.token}"}  # another review's cookie
    assert request(served, "GET", "/static/review.js", other_port)[0] == 403
    assert request(served, "GET", "/static/..%2f..%2fapp.py", cookie)[0] == 404
    assert request(served, "GET", "/static/../app.py", cookie)[0] == 404


def test_the_api_needs_the_token_in_its_header(served):
    header = {"X-Review-Token": served.token}
    assert request(served, "GET", "/api/summary")[0] == 403
    assert request(served, "GET", "/api/summary", {"X-Review-Token": served.token[:-1]})[0] == 403
    assert request(served, "GET", f"/api/summary?token={served.token}")[0] == 403  # the URL's token opens only the page
    assert request(served, "GET", "/api/summary", {"Cookie": f"datakit_review_{served.port}={served.token}"})[0] == 403
    status, _, body = request(served, "GET", "/api/summary", header)
    assert status == 200 and json.loads(body)["records"] == 210


def test_a_post_without_the_header_token_changes_nothing(served):
    decision = {"line": HTML, "action": "drop"}
    forged = {"Cookie": f"datakit_review_{served.port}={served.token}", "Content-Type": "text/plain"}  # what a form on another page sends
    assert request(served, "POST", f"/api/decide?token={served.token}", forged, decision)[0] == 403
    assert request(served, "POST", f"/?token={served.token}", forged, decision)[0] == 403
    assert not (served.folder / "review.jsonl").read_text()


def test_another_host_name_or_origin_is_refused_even_with_the_token(served):
    header = {"X-Review-Token": served.token}
    for host in (f"evil.example:{served.port}", "127.0.0.1", f"127.0.0.1:{served.port + 1}", f"localhost.evil.example:{served.port}"):
        status, _, body = request(served, "GET", "/api/summary", header | {"Host": host})
        assert status == 403 and b"answers only to 127.0.0.1" in body, host
    assert request(served, "GET", "/api/summary", header | {"Host": f"localhost:{served.port}"})[0] == 200
    for origin in ("http://evil.example", f"http://127.0.0.1:{served.port + 1}", "null"):
        assert request(served, "POST", "/api/decide", header | {"Origin": origin}, {"line": HTML, "action": "drop"})[0] == 403
    assert request(served, "GET", "/api/summary", header | {"Sec-Fetch-Site": "cross-site"})[0] == 403


def test_a_decision_with_the_token_is_written_and_a_bad_one_explained(served):
    header = {"X-Review-Token": served.token, "Origin": f"http://127.0.0.1:{served.port}"}
    status, _, body = request(served, "POST", "/api/decide", header, {"line": HTML, "action": "keep", "note": "fine"})
    assert status == 200 and json.loads(body)["progress"]["decided"] == 1
    status, _, body = request(served, "POST", "/api/decide", header, {"line": 1_000_000, "action": "keep"})
    assert status == 400 and json.loads(body) == {"error": "line 1000000 has no finding to review"}
    status, _, body = request(served, "GET", "/api/items?offset=x", header)
    assert status == 400 and "expected a number" in json.loads(body)["error"]
    rows = [json.loads(x) for x in (served.folder / "review.jsonl").read_text().splitlines()]
    assert [(r["line"], r["action"], r["note"]) for r in rows] == [(HTML, "keep", "fine")]


def test_a_second_review_of_the_same_decisions_file_is_refused(served):
    proc = run_cli("review", served.folder / "sample.jsonl", "--only", "hygiene", "--decisions",
                   served.folder / "review.jsonl", "--no-browser", "-q", timeout=120)
    assert proc.returncode == 2 and "another run is writing this file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_saved_report_is_reviewed_without_auditing_again_and_must_be_of_this_file(tmp_path):
    data = review_sample(tmp_path / "sample.jsonl")
    proc = run_cli("audit", data, "--only", "hygiene", "--json", tmp_path / "r.json", "--no-html", "-q", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("audit", data, "--only", "hygiene", "--json", tmp_path / "p.json", "--no-html", "-q", "--fail-on", "never",
                   "--inline-findings", "0")
    assert proc.returncode == 0 and (tmp_path / "p.findings.parquet").exists(), proc.stderr
    for report in ("r.json", "p.json"):  # findings inline, and in the Parquet file beside the report
        with review_server(data, "--report", tmp_path / report) as s:
            status, _, body = request(s, "GET", "/api/items?rule=hygiene.html", {"X-Review-Token": s.token})
            assert status == 200 and json.loads(body)["total"] == 6  # records with HTML (11 findings)
    other = tmp_path / "other.jsonl"
    other.write_text(data.read_text().replace("Say hi", "Say hello"))
    proc = run_cli("review", other, "--report", tmp_path / "r.json", "--no-browser", "-q", timeout=120)
    assert proc.returncode == 2 and "this report is of another version of" in proc.stderr
    assert not (tmp_path / "other.review.jsonl").exists() or not (tmp_path / "other.review.jsonl").read_text()


def test_a_taken_port_and_a_missing_file_are_one_line_errors(served, tmp_path):
    proc = run_cli("review", served.folder / "sample.jsonl", "--port", str(served.port), "--decisions",
                   tmp_path / "r.jsonl", "--no-browser", "-q", timeout=120)
    assert proc.returncode == 2 and f"--port {served.port}: that port is in use" in proc.stderr
    proc = run_cli("review", tmp_path / "nope.jsonl", "--no-browser", timeout=120)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("review", tmp_path, "--no-browser", timeout=120)
    assert proc.returncode == 2 and "is a directory" in proc.stderr
    os.mkfifo(tmp_path / "pipe.jsonl")
    proc = run_cli("review", tmp_path / "pipe.jsonl", "--no-browser", timeout=120)  # refused, never waited on
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr
    proc = run_cli("review", served.folder / "sample.jsonl", "--report", tmp_path / "r.json", "--only", "pii", "--no-browser",
                   timeout=120)
    assert proc.returncode == 2 and "leave out the audit options" in proc.stderr
