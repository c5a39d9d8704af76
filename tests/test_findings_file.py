"""Past the inline limit the JSON report keeps its summary and the findings go to a Parquet file beside it, one message
template per kind of finding; the HTML page, the Markdown summary and `datakit report` read that form too."""
from __future__ import annotations

import json

import polars as pl

from schemas.findings import with_messages
from tests.conftest import run_cli
from tests.planted import EVAL_SET, write_planted


def audit(tmp_path, path, name: str, *extra: str) -> dict:
    proc = run_cli("audit", path, "--label-field", "category", "--against", EVAL_SET, "--json", tmp_path / f"{name}.json",
                   "--markdown", tmp_path / f"{name}.md", "-q", "--fail-on", "never", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))


def test_findings_beyond_the_limit_are_in_a_parquet_file_every_view_reads(tmp_path):
    path = write_planted(tmp_path / "planted.jsonl")
    inline = audit(tmp_path, path, "inline")
    filed = audit(tmp_path, path, "filed", "--inline-findings", "100")
    assert filed["findings"] == [] and filed["findings_file"]["count"] == len(inline["findings"]) > 100
    sidecar = tmp_path / filed["findings_file"]["path"]
    assert sidecar.name == "filed.findings.parquet" and sidecar.exists()
    frame = pl.read_parquet(sidecar)
    assert frame.height == len(inline["findings"])
    assert frame["template"].n_unique() < frame.height / 5  # templates, not one sentence per finding
    rendered = with_messages(frame.with_columns(pl.col("template").cast(pl.String)))
    key = lambda f: (f["rule"], f["line"] or 0, f["field"] or "", f["message"])
    assert sorted(map(key, rendered.to_dicts())) == sorted(map(key, inline["findings"]))
    assert filed["rules"] == inline["rules"] and filed["families"] == inline["families"]
    md = (tmp_path / "filed.md").read_text(encoding="utf-8")
    assert "near_duplicate.cluster" in md and "line " in md
    page = (tmp_path / "filed.html").read_text(encoding="utf-8")
    assert "near-duplicate of line" in page
    again = run_cli("report", tmp_path / "filed.json", "--html", tmp_path / "again.html", "--markdown", tmp_path / "again.md")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.md").read_text(encoding="utf-8") == md
    assert "near-duplicate of line" in (tmp_path / "again.html").read_text(encoding="utf-8")


def test_a_report_whose_findings_file_is_missing_says_so(tmp_path):
    path = write_planted(tmp_path / "planted.jsonl")
    audit(tmp_path, path, "filed", "--inline-findings", "10")
    (tmp_path / "filed.findings.parquet").unlink()
    proc = run_cli("report", tmp_path / "filed.json", "--html", tmp_path / "x.html")
    assert proc.returncode == 2 and "findings file" in proc.stderr and "Traceback" not in proc.stderr
