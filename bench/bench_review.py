"""How fast `datakit review` opens a 200,000-record set and answers each action, measured in headless Chromium.

    python bench/bench_review.py [--records 200000] [--repeat 5] [--dir FOLDER]

Builds the dataset with ../shared/tools/make_bench_set.py (skipped, with a message, when ../shared is absent),
audits it once (`datakit audit --json`, not timed here: the review reads the saved report), starts the real
`datakit review --report --no-browser` and times, in Chromium (Debian's, through Playwright):
- the server's start (process start to its URL printed: report, line index, findings index);
- opening the page: navigation to the first page of findings listed (the page's `data-ready`);
- each action, from the key press or click to the change on screen (median of --repeat): next record (j), a rule
  filter, a text search, keep (Enter), undo (u), a bulk count; and the same requests as bare `fetch` calls in the page,
  against a baseline measured in the same run (a fetch of the page's own stylesheet: the floor of any request).
Targets (issue #13): open < 2 s, every action < 100 ms. Adds a row to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MAKE_SET = ROOT.parent / "shared" / "tools" / "make_bench_set.py"
FAMILIES = "format,empty,length,hygiene,duplicate,completeness"
FETCHES = {  # what each action asks the server, timed as a bare fetch in the page
    "baseline: static file": "/static/review.css",
    "list page (50)": "/api/items?limit=50",
    "rule filter": "/api/items?rule=hygiene.html&limit=50",
    "text search": "/api/items?q=code%20fence&limit=50",
    "deep page": "/api/items?offset=100000&limit=50",
    "record": "/api/record/{line}",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, help="keep the dataset and its report here and reuse them next time")
    args = ap.parse_args()
    if not MAKE_SET.exists():
        print(f"skipped: {MAKE_SET} is absent (the benchmark data is built from ../shared).")
        return
    sys.path.insert(0, str(BENCH))
    sys.path.insert(0, str(ROOT))
    from run import machine, record

    from tests.browser.chromium import chromium_path

    exe = Path(sys.executable).parent / "datakit"
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data, report = folder / f"bench{args.records}.jsonl", folder / f"bench{args.records}.report.json"
        if not data.exists():
            subprocess.run([sys.executable, str(MAKE_SET), "--records", str(args.records), "--out", str(data)], check=True)
        if not report.exists():
            subprocess.run([str(exe), "audit", str(data), "--only", FAMILIES, "--json", str(report), "--no-html", "-q",
                            "--fail-on", "never"], check=True)
        (folder / f"bench{args.records}.review.jsonl").unlink(missing_ok=True)  # every run starts undecided
        started = time.perf_counter()
        proc = subprocess.Popen([str(exe), "review", str(data), "--report", str(report), "--no-browser", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().strip()
            server_start = time.perf_counter() - started
            if not url.startswith("http://"):
                sys.exit(f"datakit review printed no URL: {proc.stderr.read()[-2000:]}")
            timings = measure(url, chromium_path(), args.repeat)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        flagged = timings.pop("flagged")
    opened = timings.pop("open")
    actions = {k: v for k, v in timings.items() if not k.startswith("fetch ")}
    fetches = {k.removeprefix("fetch "): v for k, v in timings.items() if k.startswith("fetch ")}
    base = fetches["baseline: static file"]
    print(f"\nserver start {server_start:.2f} s; page open {opened * 1000:.0f} ms; {flagged:,} flagged records")
    print("\n| action (key/click to screen) | median ms |\n|---|---|")
    for name, ms in actions.items():
        print(f"| {name} | {ms:.1f} |")
    print("\n| request (bare fetch in the page) | median ms | x baseline |\n|---|---|---|")
    for name, ms in fetches.items():
        print(f"| {name} | {ms:.1f} | {ms / base:.1f} |")
    shown = f"datakit review bench{args.records}.jsonl --report report.json --no-browser (audit --only {FAMILIES})"
    slowest = max(actions, key=actions.get)
    record("Review app (bench_review.py)",
           "`datakit review` on records from `../shared/tools/make_bench_set.py` (its report from `datakit audit --json`, "
           "read with `--report`), timed in headless Chromium through Playwright: the page open from navigation to the "
           "first page of findings listed; each action inside the page, from its event to the change on screen "
           "(MutationObserver; text search less the page's 200 ms typing pause); requests also as bare fetches against a "
           "static file fetched in the same run. Targets (issue #13): open < 2 s, every action < 100 ms.",
           ["date", "machine", "records (flagged)", "server start", "page open", "actions, median ms", "slowest action",
            "record / list fetch ms (x static file)", "command"],
           [time.strftime("%Y-%m-%d"), machine(), f"{args.records:,} ({flagged:,})", f"{server_start:.2f} s",
            f"{opened * 1000:.0f} ms", ", ".join(f"{k} {v:.0f}" for k, v in actions.items()),
            f"{slowest} {actions[slowest]:.0f} ms",
            (f"{fetches['record']:.1f} ({fetches['record'] / base:.1f}x) / {fetches['list page (50)']:.1f} "
             f"({fetches['list page (50)'] / base:.1f}x)"), f"`{shown}`"])


def measure(url: str, chromium: str, repeat: int) -> dict:
    """Milliseconds per action, timed inside the page: from the event to the change on screen (a MutationObserver
    sees it), so Playwright's own polling is not counted."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.chromium import FLAGS

    out: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto("about:blank")
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("html[data-ready='1']", timeout=60_000)
        out["open"] = time.perf_counter() - t
        out["flagged"] = int(page.locator("#progress-text").inner_text().split(" of ")[1].split()[0])

        def timed(name: str, act: str, done: str, arg=None, before=None) -> None:
            runs = []
            for i in range(repeat):
                if before:
                    before()
                runs.append(page.evaluate(TIMER.replace("ACT", act).replace("DONE", done), arg(i) if arg else None))
            out[name] = statistics.median(runs)

        page.locator("#items li.item").first.click()
        expect(page.locator("#record-title")).to_be_visible()
        timed("next record (j)", "var shown = $('record-title').textContent; key('j');",
              "$('record-title').textContent !== shown && !!document.querySelector('#items li.item.selected')")
        rules = page.locator("#f-rule option").evaluate_all("os => os.map(o => o.value).filter(Boolean)")
        timed("rule filter", "$('f-rule').value = arg; $('f-rule').dispatchEvent(new Event('change'));",
              "(document.querySelector('#items li.item') || {dataset: {}}).dataset.rule === arg && "
              "$('record-title').textContent.startsWith('line ' + document.querySelector('#items li.item').dataset.line + ' ')",
              arg=lambda i: rules[i % len(rules)])
        page.get_by_label("Filter by rule").select_option("")
        words = ["code", "fence", "bracket", "quote", "html", "list", "copy", "answer", "table", "word"]
        timed("text search", "$('f-q').value = arg; $('f-q').dispatchEvent(new Event('input'));",
              "new URLSearchParams(location.hash.slice(1)).get('q') === arg", arg=lambda i: words[i % len(words)])
        out["text search"] -= 200  # the page waits for a 200 ms pause in typing before it asks
        page.get_by_label("Search findings").fill("")
        page.wait_for_function("() => !new URLSearchParams(location.hash.slice(1)).get('q')")

        def first_shown():
            page.locator("#items li.item").first.click()
            line = page.locator("#items li.item").first.get_attribute("data-line")
            expect(page.locator("#record-title")).to_have_text(re.compile(f"^line {line} "))

        first = "document.querySelector('#items li.item .badge').textContent"
        runs_keep, runs_undo = [], []
        for _ in range(repeat):
            first_shown()
            runs_keep.append(page.evaluate(TIMER.replace("ACT", "key('Enter');").replace("DONE", first + " === 'kept as is'")))
            runs_undo.append(page.evaluate(TIMER.replace("ACT", "key('u');").replace("DONE", first + " === 'undecided'")))
        out["keep (Enter)"], out["undo (u)"] = statistics.median(runs_keep), statistics.median(runs_undo)
        page.get_by_label("Filter by rule").select_option("hygiene.html")
        timed("bulk count (hygiene.html)", "$('bulk-confirm').hidden = true; $('bulk-start').click();", "!$('bulk-confirm').hidden")
        line = page.locator("#items li.item").first.get_attribute("data-line")
        token = url.rsplit("token=", 1)[1]
        for name, path in FETCHES.items():
            out["fetch " + name] = page.evaluate("""async ([path, token, n]) => {
                const runs = [];
                for (let i = 0; i < n; i++) {
                    const t = performance.now();
                    const r = await fetch(path, {headers: {"X-Review-Token": token}});
                    await r.text();
                    runs.push(performance.now() - t);
                }
                runs.sort((a, b) => a - b);
                return runs[Math.floor(runs.length / 2)];
            }""", [path.format(line=line), token, repeat * 2])
        browser.close()
    return out


# Times one action in the page: ACT starts it, DONE (an expression) says the screen shows its result.
TIMER = """async (arg) => {
    const $ = (id) => document.getElementById(id);
    const key = (k) => document.body.dispatchEvent(new KeyboardEvent("keydown", {key: k, bubbles: true}));
    const t = performance.now();
    ACT
    await new Promise((resolve) => {
        const done = () => { try { return DONE; } catch (e) { return false; } };
        if (done()) return resolve();
        const seen = new MutationObserver(() => { if (done()) { seen.disconnect(); resolve(); } });
        seen.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
    });
    return performance.now() - t;
}"""


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()
