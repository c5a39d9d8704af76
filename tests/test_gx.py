"""Great Expectations (extra `gx`), for real: the exported suite is a GX 1.x suite, and GX's own engine validates it."""
from __future__ import annotations

import json

import pytest

from datakit.audit import run_audit
from datakit.config import build_config
from reports.gx import suite_json
from tests.conftest import EXAMPLES, run_cli

gx = pytest.importorskip("great_expectations", reason="the gx extra is not installed: pip install -e '.[gx]'")


def flawed_file(tmp_path):
    """Six records: one exact duplicate, one blank answer, one far over a 40-token limit."""
    rows = [{"instruction": f"Name a colour number {i}.", "output": f"Colour {i} is a fine shade of blue."} for i in range(3)]
    rows.append(dict(rows[0]))
    rows.append({"instruction": "Say nothing.", "output": "   "})
    rows.append({"instruction": "Write a long answer.", "output": "word " * 300})
    path = tmp_path / "flawed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_exported_suite_loads_as_a_gx_suite_and_is_stable(tmp_path):
    path = flawed_file(tmp_path)
    proc = run_cli("audit", path, "--only", "length,empty,duplicate", "--gx-suite", tmp_path / "suite.json", "--max-tokens", "40",
                   "--no-html", "-q", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "suite.json").read_text()
    again = run_audit(path, build_config(only=["length", "empty", "duplicate"], max_tokens=40))
    assert suite_json(again.report, again.metrics.columns) == text  # no ids or dates: the same audit exports the same bytes
    suite = gx.ExpectationSuite(**json.loads(text))
    kinds = {(e.expectation_type, e.column) for e in suite.expectations}
    assert ("expect_column_values_to_be_between", "tokens") in kinds
    assert ("expect_column_values_to_be_unique", "record_hash") in kinds
    assert ("expect_column_values_to_be_between", "response_chars") in kinds
    limit = next(e for e in suite.expectations if e.column == "tokens")
    assert limit.max_value == 40 and limit.meta == {"datakit_family": "length"}


def test_gx_validation_finds_the_flaws_and_is_folded_into_the_report(tmp_path):
    proc = run_cli("audit", flawed_file(tmp_path), "--only", "length,empty,duplicate", "--gx", "--max-tokens", "40",
                   "--json", tmp_path / "r.json",
                   "--markdown", tmp_path / "r.md", "-q", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())["gx"]
    assert result["gx_version"] == gx.__version__ and result["success"] is False
    by = {(r["expectation"], r["column"]): r for r in result["results"]}
    assert by[("expect_column_values_to_be_between", "tokens")]["unexpected_count"] == 1
    assert by[("expect_column_values_to_be_unique", "record_hash")]["unexpected_count"] == 2  # GX counts both copies
    assert by[("expect_column_values_to_be_between", "response_chars")]["unexpected_count"] == 1
    assert by[("expect_column_values_to_be_between", "prompt_chars")]["success"] is True
    assert result["evaluated"] == len(result["results"]) and result["successful"] < result["evaluated"]
    page = (tmp_path / "r.html").read_text()
    assert 'id="gx"' in page and "expect_column_values_to_be_unique" in page
    assert "**Great Expectations:**" in (tmp_path / "r.md").read_text()


def test_gx_on_the_bundled_sample_checks_only_the_families_audited(tmp_path):
    proc = run_cli("audit", EXAMPLES / "alpaca_en_sample.json", "--gx", "--only", "length,empty", "--json", tmp_path / "r.json",
                   "--no-html", "-q", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())["gx"]
    assert {r["family"] for r in result["results"]} == {"length", "empty"}
    assert all(r["element_count"] == 200 for r in result["results"])
