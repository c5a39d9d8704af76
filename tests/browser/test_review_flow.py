"""`datakit review` in a real headless Chromium: a whole review of a real sample with planted defects (accept a
repair, edit an answer and see its finding go, keep one record of a near-duplicate cluster, drop a conflicting answer,
bulk-accept every hygiene.html finding, undo, reload mid-way and go on), then `datakit fix --decisions` writes exactly
the expected clean and rejected files. Records carrying script payloads run nothing. Screenshots: tests/artifacts/.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from datakit.io.read import read_raw
from tests.browser.chromium import FLAGS, chromium_path, screenshot
from tests.conftest import run_cli
from tests.test_report_html import PAYLOADS
from tests.test_review_server import review_server
from tests.test_review_session import CONFLICT, EMAIL, FAMILIES, HEDGED, HTML, HTML_LIST, NEAR_COPY, XSS, review_sample

EDITED = "It was built from 1887 to 1889."
expect.set_options(timeout=20_000)  # the machine running the suite may be busy; a real failure still fails, later


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review-browser")
    data = review_sample(folder / "sample.jsonl")
    with review_server(data, "--only", FAMILIES, "--decisions", folder / "review.jsonl", "--label-field", "category") as s:
        s.folder, s.data = folder, data
        yield s


@contextmanager
def browser_page(served) -> Iterator:
    """A Chromium page on the review URL that may reach only the review server; page errors are collected."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.errors, page.foreign = [], []
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
            origin = f"http://127.0.0.1:{served.port}/"

            def route(r):
                if r.request.url.startswith(origin):
                    r.continue_()
                else:
                    page.foreign.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(served.url)
            page.wait_for_selector("html[data-ready='1']")
            yield page
        finally:
            browser.close()


def pick(page, rule: str, line: int) -> None:
    page.get_by_label("Filter by rule").select_option(rule)
    item = page.locator(f"#items li.item[data-line='{line}'][data-rule='{rule}']")
    item.click()
    expect(page.locator("#record-title")).to_have_text(re.compile(f"^line {line} "))


def test_script_payloads_in_records_stay_text(served):
    with browser_page(served) as page:
        for line in range(XSS, XSS + len(PAYLOADS)):
            pick(page, "hygiene.html", line)
            shown = page.locator("#fields").inner_text()
            assert PAYLOADS[line - XSS] in shown
            assert page.evaluate("window.__xss") is None and "pwned" not in page.title()
            assert page.evaluate("document.querySelectorAll('#record img, #record script, #record textarea').length") == 0
        page.get_by_label("Filter by label").select_option(PAYLOADS[0])
        expect(page.locator("#items li.item")).to_have_count(1)
        screenshot(page, "review-xss-probe.png")
        assert page.evaluate("document.scripts.length") == 1
        assert page.errors == [] and page.foreign == []


def test_a_whole_review_then_fix_applies_exactly_the_decisions(served, tmp_path):
    with browser_page(served) as page:
        progress = page.locator("#progress-text")
        flagged = int(re.search(r"of (\d+) flagged", progress.inner_text())[1])
        expect(progress).to_have_text(f"0 of {flagged} flagged records decided")
        screenshot(page, "review-start.png")

        pick(page, "pii.email", EMAIL)  # accept a repair: its diff first
        expect(page.locator("#proposal ins")).to_have_text("[EMAIL]")
        page.locator("body").press("a")
        expect(page.locator(f"#items li.item[data-line='{EMAIL}'] .badge")).to_have_text("repair accepted")
        screenshot(page, "review-accepted.png")

        pick(page, "accuracy.hedged", HEDGED)  # edit the answer, see the finding go before saving
        page.locator("body").press("e")
        answer = page.locator("#editor-fields textarea").last
        answer.fill(EDITED)
        page.get_by_role("button", name="Check").click()
        expect(page.locator("#recheck h4")).to_have_text("The edited record has no findings")
        screenshot(page, "review-edit.png")
        page.get_by_role("button", name="Save edit").click()
        expect(page.locator(f"#items li.item[data-line='{HEDGED}'] .badge")).to_have_text("edited")
        expect(page.locator("#fields")).to_contain_text(EDITED)

        pick(page, "near_duplicate.cluster", NEAR_COPY)  # keep the first copy of the cluster, drop the other
        group = page.locator(".group[data-rule='near_duplicate.cluster']")
        expect(group.locator(".member")).to_have_count(2)
        expect(group.locator(".member[data-line='201'] ins").first).to_have_text("quick")
        group.locator(".member[data-line='1']").get_by_role("button", name="Keep only this").click()
        expect(group.locator(".member[data-line='1'] .badge")).to_have_text("kept as is")
        expect(group.locator(".member[data-line='201'] .badge")).to_have_text("dropped")
        screenshot(page, "review-cluster.png")
        expect(progress).to_have_text(f"3 of {flagged} flagged records decided")

        page.reload()  # mid-way: the filter, the record shown and every decision come back
        page.wait_for_selector("html[data-ready='1']")
        expect(page.get_by_label("Filter by rule")).to_have_value("near_duplicate.cluster")
        expect(progress).to_have_text(f"3 of {flagged} flagged records decided")
        expect(page.locator("#items li.item.selected .badge")).to_have_text("dropped")
        screenshot(page, "review-reloaded.png")

        pick(page, "duplicate.conflicting_output", CONFLICT)  # drop the conflicting answer
        pair = page.locator(".group[data-rule='duplicate.conflicting_output']")
        expect(pair.locator(".member")).to_have_count(2)
        pair.locator(f".member[data-line='{CONFLICT}']").get_by_role("button", name="Drop this").click()
        expect(pair.locator(f".member[data-line='{CONFLICT}'] .badge")).to_have_text("dropped")
        screenshot(page, "review-conflict.png")

        page.get_by_label("Filter by rule").select_option("hygiene.html")  # bulk-accept every hygiene.html finding
        page.get_by_label("Bulk action", exact=True).select_option("accept")
        page.get_by_role("button", name="Apply to all…").click()
        expect(page.locator("#bulk-question")).to_have_text("accept the repair: 6 records listed by this filter. Apply?")
        screenshot(page, "review-bulk-confirm.png")
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#items li.item .badge")).to_have_text(["repair accepted"] * 6)
        expect(progress).to_have_text(f"10 of {flagged} flagged records decided")

        pick(page, "hygiene.html", HTML)  # a drop taken back with u returns to the bulk decision
        page.locator("body").press("d")
        expect(page.locator(f"#items li.item[data-line='{HTML}'] .badge")).to_have_text("dropped")
        page.locator("body").press("u")
        expect(page.locator(f"#items li.item[data-line='{HTML}'] .badge")).to_have_text("repair accepted")
        page.locator("#items li.item").first.click()
        page.locator("body").press("j")
        expect(page.locator("#items li.item.selected")).to_have_attribute("data-line", str(HTML_LIST))
        page.locator("body").press("k")
        expect(page.locator("#items li.item").first).to_have_class(re.compile("selected"))
        screenshot(page, "review-done.png")
        assert page.errors == [] and page.foreign == []

    auto = _fix(served, tmp_path / "auto.jsonl")
    reviewed = _fix(served, tmp_path / "clean.jsonl", "--decisions", served.folder / "review.jsonl")
    raw = {r.line: r for r in read_raw(served.data).records}
    expected_clean = {line: rec for line, rec in auto[0].items() if line not in (NEAR_COPY, CONFLICT)}
    expected_clean[1] = raw[1].obj
    expected_clean[HEDGED] = raw[HEDGED].obj | {"output": EDITED}
    assert reviewed[0] == expected_clean
    assert sorted(reviewed[1]) == sorted(set(auto[1]) - {1, HEDGED} | {NEAR_COPY, CONFLICT})
    assert reviewed[1][NEAR_COPY]["reasons"][0]["message"] == ("dropped by the reviewer: near-duplicate cluster: line 1 kept "
                                                              "by the reviewer")
    assert reviewed[1][CONFLICT]["reasons"][0]["rule"] == "review.drop"
    assert "[EMAIL]" in reviewed[0][EMAIL]["output"] and "<br" not in json.dumps(reviewed[0][HTML])


def _fix(served, out, *args) -> tuple[dict[int, dict], dict[int, dict]]:
    """Clean records by their input line, and rejected rows by line."""
    proc = run_cli("fix", served.data, "--only", FAMILIES, "-o", out, *args, "-q")
    assert proc.returncode == 0, proc.stderr
    rejected = {r["line"]: r for r in map(json.loads, out.with_name(out.stem + ".rejected.jsonl").read_text().splitlines())}
    kept_lines = [line for line in sorted(r.line for r in read_raw(served.data).records) if line not in rejected]
    clean = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(kept_lines) == len(clean)
    return dict(zip(kept_lines, clean)), rejected


def test_keys_and_buttons_page_through_a_long_list(tmp_path):
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Question {i}<br>", "output": f"Answer number {i}."}) + "\n"
                            for i in range(120)))
    with review_server(data, "--only", "hygiene") as s, browser_page(s) as page:
        status = page.locator("#list-status")
        expect(status).to_have_text("1–50 of 120 entries (a record once per rule)")
        page.locator("#items li.item").last.click()
        expect(page.locator("#record-title")).to_have_text(re.compile("^line 50 "))
        page.locator("body").press("j")  # past the last item: the next page, its first item
        expect(status).to_have_text("51–100 of 120 entries (a record once per rule)")
        expect(page.locator("#record-title")).to_have_text(re.compile("^line 51 "))
        page.locator("body").press("k")  # and back: the previous page, its last item
        expect(status).to_have_text("1–50 of 120 entries (a record once per rule)")
        expect(page.locator("#record-title")).to_have_text(re.compile("^line 50 "))
        page.get_by_role("button", name="Next ›").click()
        page.get_by_role("button", name="Next ›").click()
        expect(status).to_have_text("101–120 of 120 entries (a record once per rule)")
        expect(page.get_by_role("button", name="Next ›")).to_be_disabled()
        screenshot(page, "review-last-page.png")
        assert page.errors == [] and page.foreign == []
