"""trainkit's run report in a real headless Chromium: a run trained on labelled data whose labels and answers carry
script-injection payloads renders with no console error and no request beyond the file, charts drawn, the per-label
table, the worst records with the model's answers, the advice and the plan shown, and no payload run.

Screenshots go to tests/artifacts/ (ignored by git)."""
from __future__ import annotations

import pytest

from tests.browser.chromium import screenshot, visit
from tests.browser.test_report_xss import HOOKS, PAYLOADS
from tests.trainkit_helpers import alpaca_sample, identity_records, write_jsonl
from trainkit import train

HOSTILE_LABEL = PAYLOADS[1]  # <img src=x onerror=...>


@pytest.fixture(scope="module")
def run_page(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run-page")
    records = [r | {"kind": "who"} for r in identity_records(40)]
    records += [r | {"kind": HOSTILE_LABEL, "output": f"{r['output']} {PAYLOADS[i % len(PAYLOADS)]}"}
                for i, r in enumerate(alpaca_sample(12))]
    data = write_jsonl(tmp / "hostile.jsonl", records)
    result = train(data, tiny_model, tmp / "run", method="full", max_steps=12, learning_rate=3e-3, label_field="kind",
                   allow_findings=True, progress=False)
    return result.report


def test_run_report_renders_offline_with_no_console_errors_and_runs_no_payload(run_page):
    with visit(run_page, init_script=HOOKS) as v:
        page = v.page
        page.wait_for_load_state("load")
        assert v.errors == []
        assert v.requests == [run_page.resolve().as_uri()]
        assert page.evaluate("window.__xss") is None and page.evaluate("window.__events") == []
        assert page.title().startswith("trainkit run · ")
        charts = page.eval_on_selector_all("svg.chart", """els => els.map(s => {
            const r = s.getBoundingClientRect(); return {w: r.width, h: r.height, label: s.getAttribute('aria-label')}; })""")
        labels = page.locator("#by-label tbody td:first-child").all_text_contents()
        worst = page.locator("#worst article").count()
        answers = page.locator("#worst pre.text").all_text_contents()
        plan = page.locator("table.rules code").all_text_contents()
        screenshot(page, "run-report.png")
    assert {c["label"] for c in charts} >= {"loss and learning rate per optimizer step", "eval loss per label"}
    assert all(c["w"] > 200 and c["h"] > 80 for c in charts), charts
    assert HOSTILE_LABEL in labels and "who" in labels  # the payload is shown as text
    assert worst >= 1 and any(p in a for a in answers for p in PAYLOADS)  # hostile answers shown as text
    assert "learning_rate" in plan and "max_length" in plan


def test_the_page_has_every_section_in_order(run_page):
    with visit(run_page) as v:
        headings = v.page.locator("h2").all_text_contents()
    expected = ["Which data to add", "Loss and learning rate", "Where the model is weak", "Records with the highest eval loss",
                "The plan", "The audit of the training data", "How this run ran"]
    found = [h for h in headings if h in expected]
    assert found == expected


def test_eval_report_of_trainkit_eval_renders_with_base_and_trained_answers(run_page):
    from tests.conftest import run_cli

    proc = run_cli("eval", run_page.parent, "--compare-base", "2", "--worst", "2", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    page_file = run_page.parent / "eval_report.html"
    with visit(page_file, init_script=HOOKS) as v:
        assert v.errors == [] and v.requests == [page_file.resolve().as_uri()]
        assert v.page.evaluate("window.__xss") is None and v.page.evaluate("window.__events") == []
        assert v.page.title().startswith("trainkit eval · ")
        compared = v.page.locator("#compare article").count()
        columns = v.page.locator("#compare article").first.locator("h4").all_text_contents()
        screenshot(v.page, "eval-report.png")
    assert compared == 2
    assert columns[:2] == ["Prompt", "Reference answer"] and columns[2].startswith("base model")
