"""The self-contained HTML report: one offline page (inline CSS, JS, SVG charts) that is a view of an `AuditReport`.

Dataset strings reach the page only through Jinja's autoescaping, escaped SVG text, or a JSON block
whose `<`, `>` and `&` are \\u-escaped and which the page's script renders with `textContent`.
Findings beyond `max_findings_per_rule` per rule are left out of the page, with counts shown.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from reports.charts import report_charts
from reports.findings import first_per_rule
from schemas.findings import Finding, Severity
from schemas.report import AuditReport, FamilyResult, RuleResult

MAX_FINDINGS_PER_RULE = 2000
ASSETS = Path(__file__).parent / "assets"
VERDICT_RANK = {"pass": 0, "info": 1, "warn": 2, "fail": 3}
SUMMARY_ROWS = 12


@dataclass
class SummaryBlock:
    """One entry of a family summary, shaped for display: a value, a two-column table, or a table with headers."""

    title: str
    value: str | None = None
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    more: int = 0


@dataclass
class FamilyView:
    family: str
    verdict: str  # pass | warn | fail | info | not run | skipped
    findings: int = 0
    rules: list[RuleResult] = field(default_factory=list)
    summary: list[SummaryBlock] = field(default_factory=list)
    embedded: int = 0

    @property
    def ran(self) -> bool:
        return self.verdict in VERDICT_RANK

    @property
    def facts(self) -> list[SummaryBlock]:
        return [b for b in self.summary if b.value is not None]

    @property
    def tables(self) -> list[SummaryBlock]:
        return [b for b in self.summary if b.value is None]

    @property
    def hit_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if r.count]

    @property
    def clean_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.count]


def render_html(report: AuditReport, max_findings_per_rule: int = MAX_FINDINGS_PER_RULE, base: str | Path | None = None) -> str:
    """The report page as one HTML string; deterministic for a given report. `base` is the folder of the JSON
    report, against which a relative `findings_file` is read."""
    data, embedded = findings_payload(report, first_per_rule(report, max_findings_per_rule, base))
    families = family_views(report, embedded)
    ran = [f for f in families if f.ran]
    overall = max((f.verdict for f in ran), key=VERDICT_RANK.__getitem__, default="pass")
    js = (ASSETS / "report.js").read_text(encoding="utf-8")
    return page_environment().get_template("report.html.j2").render(
        report=report,
        ran={f.family for f in report.families},
        overall=overall,
        families=families,
        charts=report_charts(report),
        severities={s.value: report.count(s) for s in Severity},
        embedded_total=sum(embedded.values()),
        cap=max_findings_per_rule,
        next_steps=[_split_comment(s) for s in report.next_steps],
        config_json=report.config.model_dump_json(indent=2),
        data_json=script_json(data),
        css=(ASSETS / "report.css").read_text(encoding="utf-8"),
        js=js,
        # the Content-Security-Policy lets only this exact script run: no injected script, no inline handler, no fetch
        script_hash="sha256-" + base64.b64encode(hashlib.sha256(js.encode()).digest()).decode(),
    )


def page_environment() -> Environment:
    """The Jinja environment of every report page (templates/, shared pieces in templates/_page.html.j2): autoescaped,
    so text from data or users is text."""
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = lambda n: f"{n:,}"
    return env


def script_json(data: object) -> str:
    """JSON safe inside <script type="application/json">: no `<`, `>` or `&` remain, so neither `</script>`
    nor `<!--` in the data can end or change the block; JSON.parse reads the \\u escapes back."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def findings_payload(report: AuditReport, findings: list[Finding]) -> tuple[dict, dict[str, int]]:
    """The findings the page's tables page through (`reports.findings.first_per_rule`), repeated strings stored once.

    Rows are [rule index, severity index, line, field, message, excerpt, related line, related source, detail],
    where field, message and related source are indexes into `strings`.
    """
    family_of = {r.code: r.family for r in report.rules}
    rules: list[str] = []
    rule_index: dict[str, int] = {}
    strings: list[str] = []
    string_index: dict[str, int] = {}
    severities = ["error", "warning", "info"]
    kept: dict[str, int] = {}
    rows = []

    def intern(text: str | None) -> int | None:
        if text is None:
            return None
        if text not in string_index:
            string_index[text] = len(strings)
            strings.append(text)
        return string_index[text]

    for f in findings:
        kept[f.rule] = kept.get(f.rule, 0) + 1
        if f.rule not in rule_index:
            rule_index[f.rule] = len(rules)
            rules.append(f.rule)
        rows.append([rule_index[f.rule], severities.index(f.severity.value), f.line, intern(f.field), intern(f.message),
                     f.excerpt, f.related_line, intern(f.related_source), f.detail])
    data = {
        "rules": rules,
        "families": [family_of.get(r, r.split(".")[0]) for r in rules],
        "severities": severities,
        "strings": strings,
        "rows": rows,
    }
    embedded: dict[str, int] = {}
    for rule, n in kept.items():
        fam = family_of.get(rule, rule.split(".")[0])
        embedded[fam] = embedded.get(fam, 0) + n
    return data, embedded


def family_views(report: AuditReport, embedded: dict[str, int]) -> list[FamilyView]:
    """Every known family in registry order: the ones that ran with their results, the others as not run / skipped."""
    from validators import families as known_families

    ran = {f.family: f for f in report.families}
    names = list(dict.fromkeys([f.family for f in report.families] + known_families()))
    order = {name: i for i, name in enumerate(known_families())}
    names.sort(key=lambda n: order.get(n, len(order)))
    views = []
    for name in names:
        fam = ran.get(name)
        if fam is None:
            views.append(FamilyView(name, _not_run_reason(report, name)))
            continue
        views.append(FamilyView(name, fam.verdict, fam.findings, [r for r in report.rules if r.family == name],
                                summary_blocks(fam), embedded.get(name, 0)))
    return views


def _not_run_reason(report: AuditReport, family: str) -> str:
    only, skip = report.config.only, report.config.skip
    return "skipped" if (only and family not in only) or family in skip else "not run"


def summary_blocks(fam: FamilyResult) -> list[SummaryBlock]:
    """A family's summary dict laid out generically: scalars as values, mappings and lists of rows as tables."""
    blocks = []
    for key, value in fam.summary.items():
        title = key.replace("_", " ")
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            items = list(value.items())
            blocks.append(SummaryBlock(title, rows=[[str(k), _fmt(v)] for k, v in items[:SUMMARY_ROWS]],
                                       more=max(0, len(items) - SUMMARY_ROWS)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            headers = list(dict.fromkeys(k for v in value for k in v))
            rows = [[_fmt(v.get(h)) for h in headers] for v in value[:SUMMARY_ROWS]]
            blocks.append(SummaryBlock(title, headers=headers, rows=rows, more=max(0, len(value) - SUMMARY_ROWS)))
        elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
            shown = ", ".join(_fmt(v) for v in value[:SUMMARY_ROWS])
            blocks.append(SummaryBlock(title, value=shown + (f" … (+{len(value) - SUMMARY_ROWS:,})" if len(value) > SUMMARY_ROWS else "")))
        elif isinstance(value, (dict, list)):
            blocks.append(SummaryBlock(title, value=json.dumps(value, ensure_ascii=False)[:600]))
        else:
            blocks.append(SummaryBlock(title, value=_fmt(value)))
    return blocks


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:200]
    return str(value)


def _split_comment(step: str) -> tuple[str, str]:
    """A next-step line as (command, comment): `datakit fix ...   # why` shows the why apart."""
    command, _, comment = step.partition("   # ")
    return command.strip(), comment.strip()
