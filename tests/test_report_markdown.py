"""The Markdown summary: a pull-request comment with the headline, a verdict per family and top findings with lines."""
from __future__ import annotations

import json

from reports.markdown import code, render_markdown, text
from schemas.findings import Finding, Severity
from tests.conftest import EXAMPLES, run_cli
from validators import families


def broken_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    rows = [json.dumps({"instruction": f"question {i}", "output": f"answer number {i}"}) for i in range(6)]
    rows[2] = "{not json"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_audit_writes_a_summary_with_verdicts_and_finding_lines(tmp_path):
    proc = run_cli("audit", broken_file(tmp_path), "--only", "format,empty", "--json", tmp_path / "r.json",
                   "--markdown", tmp_path / "r.md", "-q")
    assert proc.returncode == 1, proc.stderr
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("## datakit audit: `") and "❌ fail" in md.splitlines()[0]
    assert "**6 records** (5 readable)" in md
    assert "| format | ❌ fail | 1 | `format.invalid_json` 1 |" in md
    for name in families():
        assert f"| {name} |" in md
    assert "| duplicate | not run | | |" in md
    assert "- line 3 · `format.invalid_json`: line 3 is not valid JSON — “\\{not json”" in md
    assert "`datakit fix " in md


def test_report_command_writes_the_same_summary_from_the_json(tmp_path):
    run_cli("audit", broken_file(tmp_path), "--only", "format", "--json", tmp_path / "r.json", "--markdown", tmp_path / "a.md",
            "--no-html", "-q")
    proc = run_cli("report", tmp_path / "r.json", "--markdown", tmp_path / "b.md")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.md").read_text() == (tmp_path / "a.md").read_text()
    assert not (tmp_path / "r.html").exists()  # only what was asked for


def test_dataset_text_cannot_break_the_table_or_inject_markup(tmp_path):
    run_cli("audit", EXAMPLES / "alpaca_eval_sample.json", "--only", "format", "--json", tmp_path / "r.json", "--no-html",
            "--fail-on", "never", "-q")
    from reports.json_report import read_json

    report = read_json(tmp_path / "r.json")
    hostile = Finding(rule="format.schema", severity=Severity.error, source="x.jsonl", line=7, field="out`put|x",
                      message="bad | row <script>alert(1)</script>\n## heading [link](http://x) `code`",
                      excerpt="</details><img src=x onerror=alert(1)>")
    md = render_markdown(report.model_copy(update={"findings": [hostile]}))
    assert "<script" not in md and "<img" not in md and "</details><" not in md
    item = next(line for line in md.splitlines() if line.startswith("- line 7"))
    assert "\\|" in item and "\n" not in item and "\\[link\\]" in item
    assert "`out'put|x`" in item


def test_text_and_code_spans_are_one_inert_line():
    assert text("a|b\n<b>*x*</b>") == "a\\|b &lt;b&gt;\\*x\\*&lt;/b&gt;"
    assert text("y" * 500, 10) == "y" * 9 + "…"
    assert code("a `b`\nc") == "`a 'b' c`"
