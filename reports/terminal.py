"""The terminal summary of an audit: profile, a table per rule family with counts and example lines."""
from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from reports.dimensions import dimension_lines
from schemas.findings import Severity
from schemas.report import AuditReport

VERDICT_STYLE = {"pass": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}
SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def _profile_table(report: AuditReport) -> Table:
    p = report.profile
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("file", escape(report.source))
    t.add_row("records", f"{p.records:,} ({p.valid_records:,} readable)")
    t.add_row("formats", ", ".join(f"{k} {v:,}" for k, v in p.formats.items()) or "none")
    if p.total_tokens:
        for name, pc in (("prompt tokens", p.prompt_tokens), ("response tokens", p.response_tokens), ("total tokens", p.total_tokens)):
            t.add_row(name, f"p50 {pc.p50:,}  p90 {pc.p90:,}  p99 {pc.p99:,}  max {pc.max:,}  ({escape(p.tokenizer or '')})")
    if p.languages:
        t.add_row("languages", ", ".join(f"{k} {v:,}" for k, v in list(p.languages.items())[:6]))
    if p.labels:
        t.add_row("labels", escape(", ".join(f"{k!r} {v:,}" for k, v in list(p.labels.items())[:10])))
    return t


def _family_table(report: AuditReport, family: str) -> Table | None:
    rules = [r for r in report.rules if r.family == family and r.count]
    if not rules:
        return None
    t = Table(show_header=True, header_style="bold", expand=True, box=None)
    t.add_column("rule", no_wrap=True)
    t.add_column("count", justify="right")
    t.add_column("examples (line: message)", ratio=1)
    for r in rules:
        examples = "\n".join(
            f"{e.line if e.line is not None else '-'}: {escape(e.message[:160])}" for e in r.examples)
        t.add_row(f"[{SEVERITY_STYLE[r.severity.value]}]{r.code}[/]", f"{r.count:,}", examples)
    return t


def render(report: AuditReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(Panel(_profile_table(report), title="datakit audit", expand=True))
    verdicts = Table(show_header=True, header_style="bold", box=None)
    verdicts.add_column("family")
    verdicts.add_column("verdict")
    verdicts.add_column("findings", justify="right")
    for fam in report.families:
        verdicts.add_row(fam.family, f"[{VERDICT_STYLE[fam.verdict]}]{fam.verdict}[/]", f"{fam.findings:,}")
    console.print(verdicts)
    for fam in report.families:
        table = _family_table(report, fam.family)
        if table is not None:
            console.print(Panel(table, title=fam.family, title_align="left"))
    for line in dimension_lines(report):
        console.print(escape(line))
    counts = {s.value: report.count(s) for s in Severity}
    console.print(Group(
        f"[bold]{counts['error']:,} errors, {counts['warning']:,} warnings, {counts['info']:,} info[/] "
        f"in {report.elapsed_s:.2f}s",
        *(f"next: {escape(s)}" for s in report.next_steps),
    ))
