"""How fast the HTML report is for a large dataset: render time, page size, and Chromium's load and search times.

    python bench/bench_report.py --records 50000

Builds the dataset with ../shared/tools/make_bench_set.py (unless --data is given), audits it with the
real CLI, re-renders the page from the JSON, then opens it in headless Chromium (Debian's `chromium`,
driven by Playwright) and times loading, the tables' script, and one search over every finding.
Writes under bench/out/ and prints a Markdown line for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MAKE_SET = ROOT.parent / "shared" / "tools" / "make_bench_set.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--data", type=Path, help="an existing dataset instead of a generated one")
    ap.add_argument("--cap", type=int, default=2000, help="findings per rule embedded in the page (--html-max-findings)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = args.data or OUT / f"bench{args.records}.jsonl"
    if not data.exists():
        subprocess.run([sys.executable, str(MAKE_SET), "--records", str(args.records), "--out", str(data)], check=True)

    exe = Path(sys.executable).parent / "datakit"
    report_json, page = OUT / "report.json", OUT / "report.html"
    started = time.perf_counter()
    subprocess.run([str(exe), "audit", str(data), "--label-field", "category", "--json", str(report_json),
                    "--html", str(page), "--html-max-findings", str(args.cap), "--fail-on", "never", "-q"], check=True)
    audit_s = time.perf_counter() - started

    sys.path.insert(0, str(ROOT))
    from reports.html import render_html
    from reports.json_report import read_json

    report = read_json(report_json)
    started = time.perf_counter()
    render_html(report, args.cap)
    render_s = time.perf_counter() - started

    biggest = max(report.families, key=lambda f: f.findings).family
    timings = browser_timings(page, biggest)
    size_mb = page.stat().st_size / 1e6
    print(f"{len(report.findings):,} findings (at most {args.cap:,} per rule in the page); audit + page {audit_s:.1f} s; page render {render_s:.2f} s; "
          f"page {size_mb:.2f} MB")
    print(f"chromium: DOMContentLoaded {timings['dcl']:.0f} ms, load {timings['load']:.0f} ms, "
          f"tables built by {timings['ready']:.0f} ms, a search through the largest table {timings['search']:.0f} ms")
    print(f"| {time.strftime('%Y-%m-%d')} | {platform.node()} ({platform.processor() or platform.machine()}) | "
          f"{report.profile.records:,} records, {len(report.findings):,} findings, cap {args.cap:,} | page {size_mb:.2f} MB, render "
          f"{render_s:.2f} s | DOMContentLoaded {timings['dcl']:.0f} ms, load {timings['load']:.0f} ms, "
          f"search {timings['search']:.0f} ms |")


def browser_timings(page: Path, family: str) -> dict[str, float]:
    """Navigation timing of the page, when its script had built the tables, and one search through the largest table."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium is not installed: apt-get update && apt-get install -y chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(page.resolve().as_uri(), wait_until="load")
            tab.wait_for_selector("html[data-ready='1']")
            nav = tab.evaluate("() => { const n = performance.getEntriesByType('navigation')[0]; "
                               "return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, ready: performance.now()}; }")
            box = tab.locator(f"#family-{family} .findings")
            before = box.locator(".status").inner_text()
            started = time.perf_counter()
            box.locator("input").fill("no such text anywhere")
            tab.wait_for_function("([el, before]) => el.textContent !== before",
                                  arg=[box.locator(".status").element_handle(), before])
            nav["search"] = (time.perf_counter() - started) * 1000 - 120  # less the input debounce
            tab.screenshot(path=str(OUT / "report-bench.png"))
            if errors:
                sys.exit(f"page errors: {errors}")
            return nav
        finally:
            browser.close()


if __name__ == "__main__":
    main()
