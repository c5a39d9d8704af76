"""The HTML report: written where the user expects, a deterministic offline view of the JSON, dataset text escaped.

What the page does in a real browser is tested in tests/browser/test_report_page.py.
"""
from __future__ import annotations

import json
import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.audit import _histogram
from reports.charts import counts_in, report_charts
from reports.html import findings_payload, render_html, script_json, summary_blocks
from reports.json_report import read_json
from schemas.findings import Finding, Severity
from schemas.report import FamilyResult, Histogram
from tests.conftest import EXAMPLES, run_cli
from validators import families

SAMPLE = EXAMPLES / "alpaca_eval_sample.json"
PAYLOADS = [
    '<script>document.title="pwned";window.__xss=1</script>',
    '"><img src=x onerror="document.title=\'pwned\';window.__xss=2">',
    "</textarea><script>window.__xss=3</script>",
    "</script><!-- <script>window.__xss=4</script>",
]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The bundled sample audited once by the real CLI: its folder holds r.json and r.html."""
    out = tmp_path_factory.mktemp("sample")
    proc = run_cli("audit", SAMPLE, "--label-field", "dataset", "--json", out / "r.json", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def xss_dataset(tmp_path):
    """Records whose text, label and unparseable lines carry script-injection payloads."""
    lines = [p for p in PAYLOADS]  # not JSON: reported as format.invalid_json with the line as excerpt
    lines += [json.dumps({"instruction": f"Repeat: {p}", "output": p, "category": p}) for p in PAYLOADS]
    lines += [json.dumps({"instruction": f"question {i}", "output": f"answer {i}", "category": "plain"}) for i in range(8)]
    path = tmp_path / "xss.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_audit_writes_the_html_next_to_the_json(sample):
    out, proc = sample
    page = (out / "r.html").read_text()
    assert page.startswith("<!doctype html>") and "alpaca_eval_sample.json" in page
    assert f"written: {out / 'r.html'}" in proc.stdout


def test_audit_without_json_writes_report_html_in_the_working_directory(tmp_path):
    proc = run_cli("audit", SAMPLE, "--only", "format", "--fail-on", "never", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").is_file()


def test_no_html_writes_no_page(tmp_path):
    proc = run_cli("audit", SAMPLE, "--only", "format", "--fail-on", "never", "-q", "--no-html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_command_renders_the_same_page_from_the_json(sample, tmp_path):
    """The page is a view of the JSON: re-rendering the saved report gives the very same bytes."""
    out, _ = sample
    proc = run_cli("report", out / "r.json", "--html", tmp_path / "again.html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again.html").read_bytes() == (out / "r.html").read_bytes()


def test_report_command_defaults_to_html_next_to_the_json(sample, tmp_path):
    out, _ = sample
    (tmp_path / "saved.json").write_bytes((out / "r.json").read_bytes())
    proc = run_cli("report", tmp_path / "saved.json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "saved.html").is_file()


def test_report_command_on_json_that_is_not_a_report_is_one_clear_line(tmp_path):
    bad = tmp_path / "data.json"
    bad.write_text('[{"instruction": "a", "output": "b"}]')
    proc = run_cli("report", bad)
    assert proc.returncode == 2
    assert "not a datakit JSON report" in proc.stderr and "Traceback" not in proc.stderr


def test_page_loads_nothing_from_outside(sample):
    page = (sample[0] / "r.html").read_text()
    assert not re.search(r"<(?:link|img|iframe|object|embed)\b", page)
    assert not re.search(r"\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page)
    assert {u for u in re.findall(r"https?://[^\s\"'<>)]+", page)} <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_every_dataset_string_is_escaped(tmp_path):
    path = xss_dataset(tmp_path)
    proc = run_cli("audit", path, "--only", "format,hygiene", "--label-field", "category", "--json", tmp_path / "x.json",
                   "--fail-on", "never", "-q")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "x.html").read_text()
    for payload in PAYLOADS:
        assert payload not in page
    assert "<img" not in page and "<textarea" not in page and "</textarea" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the findings JSON block and the page's own code
    assert "&lt;script&gt;document.title=" in page  # the label chart's text, escaped


def test_findings_json_block_cannot_end_the_script_element():
    text = script_json({"x": "</script><!-- <script>alert(1)</script> & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"x": "</script><!-- <script>alert(1)</script> & \u2028"}


def test_page_is_byte_identical_for_the_same_report(sample):
    report = read_json(sample[0] / "r.json")
    assert render_html(report) == render_html(report)


def test_findings_beyond_the_cap_are_counted_not_embedded(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(f"{{broken {i}\n" for i in range(30)) + json.dumps({"instruction": "q", "output": "a"}) + "\n")
    proc = run_cli("audit", path, "--only", "format", "--json", tmp_path / "b.json", "--html-max-findings", "5",
                   "--fail-on", "never", "-q")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "b.html").read_text()
    data = json.loads(re.search(r'id="datakit-findings">(.*?)</script>', page, re.DOTALL).group(1))
    invalid = data["rules"].index("format.invalid_json")
    assert sum(1 for row in data["rows"] if row[0] == invalid) == 5
    assert "5 of 30 findings are in this page (at most 5 per rule)" in page


def test_families_that_did_not_run_say_so(sample):
    saved = read_json(sample[0] / "r.json")
    config = saved.config.model_copy(update={"only": ["format"], "label_field": None})
    report = saved.model_copy(update={"config": config, "families": [f for f in saved.families if f.family == "format"],
                                      "profile": saved.profile.model_copy(update={"labels": None, "histograms": None})})
    page = render_html(report)
    for name in families()[1:]:
        assert f'id="family-{name}"' in page
    if len(families()) > 1:
        assert "excluded by --only / --skip" in page
    charts = {c.key: c for c in report_charts(report)}
    assert charts["tokens"].svg is None and charts["tokens"].missing.startswith("not run")
    assert charts["labels"].missing == "not run: no label field configured (--label-field)."


def test_repeated_messages_are_stored_once_in_the_page(sample):
    report = read_json(sample[0] / "r.json")
    same = Finding(rule="format.blank_line", severity=Severity.info, source="x", line=1, message="blank " * 50)
    report = report.model_copy(update={"findings": [same.model_copy(update={"line": i}) for i in range(1, 101)]})
    data, embedded = findings_payload(report, report.findings)
    assert len(data["rows"]) == 100 and data["strings"].count("blank " * 50) == 1
    assert embedded == {"format": 100}


def test_summaries_of_any_shape_are_laid_out():
    fam = FamilyResult(family="diversity", verdict="warn", findings=0, summary={
        "distinct_2": 0.42, "leading_phrases": {"how do": 120, "what is": 30}, "top": [{"phrase": "x", "count": 3}],
        "sizes": [2, 2, 3], "nested": {"a": {"b": 1}}, "none": None})
    blocks = {b.title: b for b in summary_blocks(fam)}
    assert blocks["distinct 2"].value == "0.42"
    assert blocks["leading phrases"].rows == [["how do", "120"], ["what is", "30"]]
    assert blocks["top"].headers == ["phrase", "count"] and blocks["top"].rows == [["x", "3"]]
    assert blocks["sizes"].value == "2, 2, 3"
    assert blocks["nested"].value == '{"a": {"b": 1}}' and blocks["none"].value == "–"


def test_chart_inputs_are_read_from_the_shapes_families_use():
    expected = [("how do", 120), ("what is", 30)]
    assert counts_in({"leading_phrases": {"what is": 30, "how do": 120}}, "leading_phrases") == expected
    assert counts_in({"leading_phrases": [["what is", 30], ["how do", 120]]}, "leading_phrases") == expected
    assert counts_in({"leading_phrases": [{"phrase": "how do", "count": 120}, {"phrase": "what is", "count": 30}]},
                     "leading_phrases") == expected
    assert counts_in({"other": 1}, "leading_phrases") is None and counts_in(None, "x") is None


def test_charts_are_drawn_from_profile_and_summaries(sample):
    report = read_json(sample[0] / "r.json")
    profile = report.profile.model_copy(update={
        "histograms": {"prompt": Histogram(edges=[0, 100, 200, 300], counts=[5, 2, 1]),
                       "response": Histogram(edges=[0, 1000, 2000, 3000], counts=[5, 2, 1], overflow=4)},
        "languages": {"en": 200, "zh-cn": 69}})
    mine = {"diversity", "near_duplicate", "duplicate"}
    families = [f for f in report.families if f.family not in mine] + [
        FamilyResult(family="diversity", verdict="warn", findings=0, summary={"leading_phrases": {"what is": 90, "how to": 20}}),
        FamilyResult(family="near_duplicate", verdict="warn", findings=0, summary={"cluster_sizes": {"2": 7, "3": 1}}),
        FamilyResult(family="duplicate", verdict="warn", findings=0, summary={"clusters": [[1, 2], [3, 4, 5]]}),
    ]
    charts = {c.key: c for c in report_charts(report.model_copy(update={"profile": profile, "families": families}))}
    for key in ("tokens", "labels", "languages", "leading", "clusters"):
        assert charts[key].svg and charts[key].svg.startswith("<svg") and "<path" in charts[key].svg, key
    assert "limit 2,048" in charts["tokens"].svg and "+4 records" in charts["tokens"].svg
    assert "selfinstruct" in charts["labels"].svg and "zh-cn" in charts["languages"].svg


def test_chart_text_from_the_dataset_is_escaped_and_not_mathtext(sample):
    report = read_json(sample[0] / "r.json")
    hostile = {"</svg><script>alert(1)</script>": 3, "$\\alpha^{$": 2, "a--b -->": 1}
    chart = next(c for c in report_charts(report.model_copy(update={"profile": report.profile.model_copy(
        update={"languages": hostile})})) if c.key == "languages")
    assert "<script" not in chart.svg and "</svg><" not in chart.svg.replace("</svg>", "", 1)
    assert "$\\alpha^{$" in chart.svg


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=300), st.integers(min_value=1, max_value=10**6))
def test_token_histogram_counts_every_record_in_round_bins(values, limit):
    hist = _histogram(pl.Series(values, dtype=pl.Int64), limit)
    assert sum(hist.counts) + hist.overflow == len(values)
    width = hist.edges[1] - hist.edges[0]
    assert str(width).strip("0") in ("1", "2", "5") and len(hist.counts) <= 40
    assert hist.edges[-1] > max(values) or hist.overflow
