"""The HTML report in a real headless Chromium: loads cleanly offline, charts drawn, tables work, injected text stays text.

Screenshots go to tests/artifacts/ (ignored by git). Chromium comes from Debian (`.ci/run` installs
it); without it these tests skip locally and fail under CI.
"""
from __future__ import annotations

import io
import json
import re
import time

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.chromium import screenshot, visit
from tests.conftest import EXAMPLES, run_cli
from tests.test_report_html import PAYLOADS, xss_dataset

TITLE = "datakit audit · "


@pytest.fixture(scope="module")
def sample_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    proc = run_cli("audit", EXAMPLES / "alpaca_eval_sample.json", "--label-field", "dataset", "--json", out / "r.json",
                   "--fail-on", "never", "-q")
    assert proc.returncode == 0, proc.stderr
    return out / "r.html"


def test_sample_report_loads_offline_without_console_errors(sample_page):
    started = time.perf_counter()
    with visit(sample_page) as v:
        v.page.wait_for_selector("html[data-ready='1']")
        print(f"bundled sample report loaded and scripted in {time.perf_counter() - started:.2f}s (incl. browser start)")
        assert v.errors == []
        assert v.requests == [sample_page.resolve().as_uri()]
        assert v.page.title() == TITLE + str(EXAMPLES / "alpaca_eval_sample.json")
        screenshot(v.page, "report-sample.png")


def test_charts_are_drawn_and_the_page_is_not_blank(sample_page):
    with visit(sample_page) as v:
        charts = v.page.eval_on_selector_all("svg.chart", """els => els.map(s => {
            const r = s.getBoundingClientRect();
            return {w: r.width, h: r.height, paths: s.querySelectorAll('path').length, label: s.getAttribute('aria-label')};
        })""")
        png = screenshot(v.page, "report-sample-charts.png")
        class_chart = v.page.locator("#chart-labels svg.chart").screenshot()
    assert charts, "no chart rendered"
    for c in charts:
        assert c["w"] > 100 and c["h"] > 50 and c["paths"] > 3, c
    assert any(c["label"] == "Class distribution" for c in charts)
    page_colors = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(page_colors) > 50
    bars = Image.open(io.BytesIO(class_chart)).convert("RGB")
    indigo = sum(n for n, (r, g, b) in bars.getcolors(maxcolors=1 << 20) if b > 200 and r < 120 and g < 110)
    assert indigo > 500, "the class bars were not painted"


def test_injected_markup_in_records_stays_text_and_runs_nothing(tmp_path):
    path = xss_dataset(tmp_path)
    proc = run_cli("audit", path, "--only", "format,hygiene", "--label-field", "category", "--json", tmp_path / "x.json",
                   "--fail-on", "never", "-q")
    assert proc.returncode == 0, proc.stderr
    with visit(tmp_path / "x.html") as v:
        v.page.wait_for_selector("html[data-ready='1']")
        screenshot(v.page, "report-xss-probe.png")
        assert v.page.evaluate("window.__xss") is None
        assert v.page.title().startswith(TITLE) and "pwned" not in v.page.title()
        assert v.page.evaluate("document.querySelectorAll('img, textarea, iframe').length") == 0
        assert v.page.evaluate("document.scripts.length") == 2
        table_text = v.page.locator("#family-format .findings tbody").inner_text()
        for payload in PAYLOADS:
            assert payload in table_text  # shown verbatim as the unparseable line's excerpt
        chart_text = v.page.locator("#chart-labels svg").text_content()
        assert '<script>document.title="pwned";' in chart_text
        assert v.errors == []  # a Content-Security-Policy violation would mean injected markup was parsed
        assert v.requests == [(tmp_path / "x.html").resolve().as_uri()]


def test_findings_table_searches_filters_and_pages(tmp_path):
    path = tmp_path / "broken.jsonl"
    lines = [f"{{broken {i}" for i in range(30)] + [json.dumps({"instruction": "q", "output": "a"}), ""]
    path.write_text("\n".join(lines) + "\n\n" + json.dumps({"instruction": "q2", "output": "b"}) + "\n")
    proc = run_cli("audit", path, "--only", "format", "--json", tmp_path / "b.json", "--fail-on", "never", "-q")
    assert proc.returncode == 0, proc.stderr
    with visit(tmp_path / "b.html") as v:
        page = v.page
        box = page.locator("#family-format .findings")
        status, rows = box.locator(".status"), box.locator("tbody tr")
        total = json.loads((tmp_path / "b.json").read_text())["families"][0]["findings"]
        assert status.inner_text() == f"1–10 of {total}" and rows.count() == 10
        box.get_by_role("button", name="Next ›").click()
        assert status.inner_text() == f"11–20 of {total}"
        box.get_by_role("searchbox").fill("17")
        expect(status).to_have_text(re.compile(r"^1–1 of 1 "))
        assert rows.first.locator("td.line").inner_text() == "17"
        box.get_by_role("searchbox").fill("")
        expect(status).to_have_text(f"1–10 of {total}")
        box.get_by_label("Filter by rule").select_option(label="format.blank_line")
        assert rows.count() >= 1 and "filtered from" in status.inner_text()
        assert {r.inner_text() for r in box.locator("td.rule code").all()} == {"format.blank_line"}
        screenshot(page, "report-table-filtered.png")
        assert v.errors == []
