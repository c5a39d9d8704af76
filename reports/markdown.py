"""A compact Markdown summary of an `AuditReport` for a pull-request comment: headline, verdict table, top findings.

Dataset text is escaped for Markdown and HTML (GitHub renders inline HTML), flattened to one line and
shortened, so a record cannot break the table or inject markup into the comment.
"""
from __future__ import annotations

import re
from pathlib import Path

from reports.dimensions import dimension_lines
from reports.findings import first_per_rule
from schemas.findings import Finding, Severity
from schemas.report import AuditReport

VERDICT = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail", "info": "ℹ️ info"}
TOP_FINDINGS = 5
TEXT_CHARS = 140
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")


def text(value: object, limit: int = TEXT_CHARS) -> str:
    """Any string as inert Markdown: one line, at most `limit` characters, HTML and Markdown syntax escaped."""
    s = " ".join(str(value).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def family_name(value: str) -> str:
    """A family name as written when it is a plain identifier (as every built-in one is), else escaped as `text`."""
    return value if _IDENTIFIER.fullmatch(value) else text(value)


def code(value: object, limit: int = 200, cell: bool = False) -> str:
    """A string as an inline code span: one line, no backticks (Markdown and HTML are not interpreted inside); in a
    table `cell`, `|` is escaped too, since GitHub splits cells on it even inside a code span."""
    s = " ".join(str(value).split()).replace("`", "'")
    if cell:
        s = s.replace("|", "\\|")
    return f"`{s if len(s) <= limit else s[: limit - 1] + '…'}`"


def render_markdown(report: AuditReport, top: int = TOP_FINDINGS, base: str | Path | None = None) -> str:
    from validators import families as known_families

    p = report.profile
    ran = {f.family: f for f in report.families}
    overall = max((f.verdict for f in report.families), key=["pass", "info", "warn", "fail"].index, default="pass")
    counts = {s.value: report.count(s) for s in Severity}
    facts = [f"**{p.records:,} records** ({p.valid_records:,} readable)",
             "formats: " + (", ".join(f"{text(k)} {v:,}" for k, v in p.formats.items()) or "none")]
    if p.languages:
        facts.append("languages: " + ", ".join(f"{text(k)} {100 * v / max(p.valid_records, 1):.0f}%"
                                               for k, v in list(p.languages.items())[:4]))
    if p.total_tokens:
        facts.append(f"tokens p50 {p.total_tokens.p50:,} / p99 {p.total_tokens.p99:,} (limit {report.config.length.max_tokens:,})")
    facts.append(f"**{counts['error']:,} errors, {counts['warning']:,} warnings, {counts['info']:,} info**")
    lines = [f"## datakit audit: {code(report.source)} — {VERDICT[overall]}", "", " · ".join(facts), ""]

    lines += ["| family | verdict | findings | rules hit |", "|---|---|---:|---|"]
    names = list(dict.fromkeys([f.family for f in report.families] + known_families()))
    for name in names:
        fam = ran.get(name)
        if fam is None:
            lines.append(f"| {family_name(name)} | not run | | |")
            continue
        hit = sorted((r for r in report.rules if r.family == name and r.count), key=lambda r: -r.count)
        lines.append(f"| {family_name(name)} | {VERDICT[fam.verdict]} | {fam.findings:,} | "
                     + ", ".join(f"{code(r.code, cell=True)} {r.count:,}" for r in hit) + " |")
    if report.gx:
        g = report.gx
        failed = [r for r in g.results if not r.success]
        lines += ["", f"**Great Expectations:** {g.successful} of {g.evaluated} expectations met"
                  + ("" if not failed else " — not met: " + ", ".join(
                      f"{code(r.expectation)} on {code(r.column)} ({r.unexpected_count or 0:,} unexpected)" for r in failed))]
    if dimension_lines(report):
        lines += [""] + [f"- {text(line, 400)}" for line in dimension_lines(report)]
    if report.next_steps:
        lines += ["", "**Next:**"] + [f"- {code(s.partition('   # ')[0].strip())}" for s in report.next_steps]

    family_of = {r.code: r.family for r in report.rules}
    total = {f.family: f.findings for f in report.families}
    by_family: dict[str, list[Finding]] = {}
    for f in first_per_rule(report, top, base):
        by_family.setdefault(family_of.get(f.rule, f.rule.split(".")[0]), []).append(f)
    if by_family:
        lines += ["", "<details><summary>Top findings per family</summary>", ""]
        for name in names:
            found = by_family.get(name)
            if not found:
                continue
            n = total.get(name, len(found))
            lines += [f"**{family_name(name)}** ({n:,})", ""]
            lines += [_finding_line(f) for f in found[:top]]
            if n > top:
                lines.append(f"- … and {n - top:,} more")
            lines.append("")
        lines.append("</details>")
    sha = report.checksum.split(":")[-1][:12]
    lines += ["", f"<sub>datakit {text(report.version)} · sha256 {text(sha)} · {report.elapsed_s:.2f} s</sub>", ""]
    return "\n".join(lines)


def _finding_line(f: Finding) -> str:
    """One finding as a list item: where, rule, field, what is wrong (the message up to its first ': '), the excerpt."""
    where = f"line {f.line}" if f.line is not None else "file"
    field = f" · {code(f.field, 40)}" if f.field else ""
    excerpt = f" — “{text(f.excerpt, 60)}”" if f.excerpt else ""
    what = f.message.partition(": ")[0] if len(f.message.partition(": ")[0]) >= 12 else f.message
    return f"- {where} · {code(f.rule)}{field}: {text(what)}{excerpt}"

