"""Script-injection payloads in every field that reaches the reports: the HTML page runs none of them and asks the
network for nothing, its Content-Security-Policy admits only the page's own script, and the Markdown summary
renders them as text.

The payloads sit in record text, labels, extra fields and roles, the input's folder and file names, the name of an
--against file, the label field's name and config values (internal patterns, template markers). An init script hooks
what injected code would call (alert, console, window.open) and records every CSP violation, so a payload that ran,
or was parsed as markup and then blocked, fails the test.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from playwright.sync_api import expect

from tests.browser.chromium import visit
from tests.conftest import run_cli

# Each payload, if it ever ran, would set window.__xss or call a hooked function; some would fetch from evil.example.
PAYLOADS = [
    '<script>window.__xss="script";alert("script")</script>',
    '<img src=x onerror="window.__xss=\'onerror\'">',
    '<body onload="window.__xss=\'onload\'">',
    '<svg onload="window.__xss=\'svg-onload\'"><script>window.__xss="svg-script"</script></svg>',
    '<a href="javascript:window.__xss=\'js-url\'">click me</a>',
    '<iframe src="javascript:parent.__xss=\'iframe\'"></iframe>',
    '<div style="background:url(http://evil.example/bg.png);width:expression(window.__xss=\'css\')">styled</div>',
    '<style>@import "http://evil.example/s.css"; body{background:url(http://evil.example/b.png)}</style>',
    '<link rel=stylesheet href="http://evil.example/l.css"><meta http-equiv="refresh" content="0;url=http://evil.example/">',
    '<base href="http://evil.example/"><form action="http://evil.example/f"><button>go</button></form>',
    "{{7*7}} {% for x in [1] %}jinja{% endfor %} ${window.__xss='template'} #{7*7}",
    "\u202eexe.txt\u202c bidi override \u2066isolate\u2069",
    '</script><script>window.__xss="island"</script>',
    '<!-- <script>window.__xss="comment"</script> -->',
    '"><svg/onload=window.__xss="attr">',
    "'><details open ontoggle=window.__xss='toggle'>x</details>",
    "</textarea></title></pre></code><script>window.__xss='closer'</script>",
]
# Payloads a file or folder name can carry (no "/", at most 255 bytes).
NAME_PAYLOADS = [
    '<img src=x onerror=window.__xss=1>',
    '"><svg onload=alert(2)>{{7*7}}${x}',
    "\u202egnp.<script>window.__xss=3<\\script>",
]
LABEL_FIELD = '<img src=x onerror="window.__xss=\'label-field\'">'
CONFIG_VALUES = ['<script>window.__xss="pattern"<.script>', r"\{\{7\*7\}\}", "</pre><img src=x onerror=alert(4)>"]

HOOKS = """
window.__events = [];
["alert", "confirm", "prompt", "print", "open"].forEach(function (name) {
  window[name] = function () { window.__events.push(name + ": " + Array.prototype.join.call(arguments, " ")); };
});
["log", "info", "warn", "error", "debug"].forEach(function (name) {
  var original = console[name];
  console[name] = function () {
    window.__events.push("console." + name + ": " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
});
document.addEventListener("securitypolicyviolation", function (e) {
  window.__events.push("csp: " + e.violatedDirective + " " + e.blockedURI);
});
"""


def records() -> list[str]:
    """JSON Lines: payloads in every text field, as labels, extra fields and roles; some lines not JSON at all."""
    lines = []
    for i, p in enumerate(PAYLOADS):
        lines.append(json.dumps({"instruction": f"Repeat this: {p}", "input": p, "output": f"{p} {p}", LABEL_FIELD: p,
                                 p[:40]: "extra field named by a payload"}, ensure_ascii=False))
        lines.append(json.dumps({"messages": [{"role": "system", "content": p}, {"role": p[:30], "content": f"q{i}"},
                                              {"role": "assistant", "content": p}]}, ensure_ascii=False))
        lines.append(p)  # not JSON: its text is the finding's excerpt
    lines += [json.dumps({"instruction": f"question {i}", "output": f"answer {i}", LABEL_FIELD: "plain"}) for i in range(6)]
    return lines


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """One audit of the adversarial data by the real CLI: (folder of the reports, path of the audited file)."""
    root = tmp_path_factory.mktemp("xss")
    folder = root / NAME_PAYLOADS[0]
    folder.mkdir()
    data = folder / f"{NAME_PAYLOADS[1]}.jsonl"
    data.write_text("\n".join(records()) + "\n", encoding="utf-8")
    against = folder / f"{NAME_PAYLOADS[2]}.jsonl"
    against.write_text(json.dumps({"instruction": f"Repeat this: {PAYLOADS[0]}", "input": PAYLOADS[0],
                                   "output": f"{PAYLOADS[0]} {PAYLOADS[0]}"}) + "\n", encoding="utf-8")
    config = root / "audit.toml"
    config.write_text("[leakage]\ninternal_patterns = " + json.dumps(CONFIG_VALUES[:1]) + "\n"
                      "[hygiene]\ntemplate_markers = " + json.dumps(CONFIG_VALUES[1:2]) + "\n", encoding="utf-8")
    out = root / "out"
    proc = run_cli("audit", data, "--against", against, "--config", config, "--label-field", LABEL_FIELD,
                   "--json", out / "r.json", "--markdown", out / "r.md", "--fail-on", "never", "-q")
    assert proc.returncode == 0, proc.stderr
    return out, data


def test_no_payload_runs_and_nothing_leaves_the_page(audited):
    out, _ = audited
    page_file = out / "r.html"
    with visit(page_file, init_script=HOOKS) as v:
        page = v.page
        page.wait_for_selector("html[data-ready='1']")
        for box in page.locator(".findings[data-family]").all():  # render every payload-bearing row, page by page
            search = box.get_by_role("searchbox")
            for p in PAYLOADS:
                search.fill(p[:25])
                page.wait_for_timeout(150)
        page.evaluate("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
        page.wait_for_timeout(100)
        assert page.evaluate("window.__xss") is None
        assert page.evaluate("window.__events") == []
        assert v.errors == []
        assert v.requests == [page_file.resolve().as_uri()]
        assert page.evaluate("document.scripts.length") == 2
        assert page.evaluate("document.querySelectorAll('iframe, img, form, base, link, style:not(head style)').length") == 0


def test_every_payload_reaches_the_page_as_text(audited):
    out, data = audited
    with visit(out / "r.html", init_script=HOOKS) as v:
        page = v.page
        page.wait_for_selector("html[data-ready='1']")
        assert page.locator("h1").inner_text() == str(data)
        assert page.title() == f"datakit audit · {data}"
        config = page.locator("pre.config").text_content()
        assert all(json.dumps(value)[1:-1] in config for value in CONFIG_VALUES[:2])
        assert LABEL_FIELD in page.locator("#chart-labels").text_content()
        box = page.locator("#family-format .findings")
        for p in PAYLOADS:
            box.get_by_role("searchbox").fill(p)
            expect(box.locator("tbody")).to_contain_text(p)  # waits out the search box's debounce
        assert page.evaluate("window.__events") == []


def test_content_security_policy_admits_only_the_pages_own_script(audited, tmp_path):
    """Markup that escaped the escaping would still not run: an inline script and an event handler spliced into the
    page are blocked (and reported as CSP violations) while the page's own script still renders the tables."""
    out, _ = audited
    html = (out / "r.html").read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    assert "script-src 'sha256-" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "default-src 'none'" in csp and "connect-src" not in csp  # nothing fetched: default-src covers it
    assert html.index("Content-Security-Policy") < html.index("<title>")  # before the first dataset string
    spliced = out.parent / "spliced.html"
    injected = ('<script>window.__xss="spliced"</script><img src="data:," onerror="window.__xss=\'handler\'">'
                '<a id="jsurl" href="javascript:window.__xss=\'href\'">x</a>')
    spliced.write_text(html.replace("<main", injected + "<main", 1), encoding="utf-8")
    with visit(spliced, init_script=HOOKS) as v:
        page = v.page
        page.wait_for_selector("html[data-ready='1']")  # the page's own script ran
        page.click("#jsurl")
        page.wait_for_timeout(200)
        assert page.evaluate("window.__xss") is None
        blocked = page.evaluate("window.__events")
        assert blocked and all(e.startswith("csp: script-src") for e in blocked), blocked
        assert page.locator("#family-format .findings tbody tr").count() > 0


def tamper(report: dict) -> tuple[dict, int]:
    """The report with a payload added to every string (values and mapping keys) the report schema still accepts,
    one kind of field at a time: (the tampered report, how many kinds of field carry a payload)."""
    from schemas.report import AuditReport

    def kinds(node, path=()):
        if isinstance(node, dict):
            for k, v in node.items():
                yield (*path, "{key}")
                yield from kinds(v, (*path, k))
        elif isinstance(node, list):
            for v in node:
                yield from kinds(v, (*path, "*"))
        elif isinstance(node, str):
            yield path

    def changed(node, kind, payload, path=()):
        if isinstance(node, dict):
            return {(k + payload if (*path, "{key}") == kind else k): changed(v, kind, payload, (*path, k))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [changed(v, kind, payload, (*path, "*")) for v in node]
        return node + payload if isinstance(node, str) and path == kind else node

    tampered, carried = report, 0
    for i, kind in enumerate(dict.fromkeys(kinds(report))):
        attempt = changed(tampered, kind, PAYLOADS[i % len(PAYLOADS)])
        try:
            AuditReport.model_validate(attempt)
        except ValueError:
            continue
        tampered, carried = attempt, carried + 1
    return tampered, carried


def test_every_string_of_a_tampered_json_report_stays_text(audited, tmp_path):
    """`datakit report` renders a JSON report someone else wrote: every string in it is as hostile as the data."""
    out, _ = audited
    report, carried = tamper(json.loads((out / "r.json").read_text(encoding="utf-8")))
    assert carried > 40
    (tmp_path / "t.json").write_text(json.dumps(report), encoding="utf-8")
    proc = run_cli("report", tmp_path / "t.json", "--html", tmp_path / "t.html", "--markdown", tmp_path / "t.md")
    assert proc.returncode == 0, proc.stderr
    with visit(tmp_path / "t.html", init_script=HOOKS) as v:
        page = v.page
        page.wait_for_selector("html[data-ready='1']")
        page.evaluate("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
        page.wait_for_timeout(100)
        assert page.evaluate("window.__xss") is None
        assert page.evaluate("window.__events") == []
        assert v.errors == [] and v.requests == [(tmp_path / "t.html").resolve().as_uri()]
        assert page.evaluate("document.scripts.length") == 2
    assert_inert_markdown((tmp_path / "t.md").read_text(encoding="utf-8"))


class _Tags(HTMLParser):
    """Every start tag and attribute in a rendered fragment."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def assert_inert_markdown(md: str) -> str:
    """Render `md` as GitHub would (raw HTML allowed) and check only the summary's own markup comes out; the HTML."""
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    parser = _Tags()
    parser.feed(rendered)
    tags = {tag for tag, _ in parser.tags}
    assert tags <= {"h2", "p", "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "details",
                    "summary", "sub", "em"}, tags
    assert [attrs for _, attrs in parser.tags if any(a.startswith("on") or a == "href" for a, _ in attrs)] == []
    assert "<script" not in rendered
    return rendered


def test_markdown_summary_renders_payloads_as_text(audited):
    out, data = audited
    md = (out / "r.md").read_text(encoding="utf-8")
    rendered = assert_inert_markdown(md)
    assert str(data).split("/")[-1] in md  # the file name, payload and all, is shown (inside a code span)
    assert "window.__xss" in rendered
