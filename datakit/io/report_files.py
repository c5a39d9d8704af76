"""Writing an audit's reports to disk, atomically: the views in `reports/` return text, and this is where it lands.

A JSON report whose findings are in a Parquet file gets that file beside it (`<name>.findings.parquet`), named
relatively, so the pair can be moved together and `datakit report` re-renders from it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from datakit.io.atomic import atomic_open, write_text
from schemas.report import AuditReport


def sidecar_name(json_path: str | Path) -> Path:
    p = Path(json_path)
    return p.with_name((p.name[:-5] if p.name.lower().endswith(".json") else p.name) + ".findings.parquet")


def write_report_json(report: AuditReport, path: str | Path) -> AuditReport:
    """Write the JSON report (and, when its findings are in a file, that file beside it, written first); returns the
    report as written, its `findings_file` relative to the JSON's folder."""
    from reports.json_report import to_json

    if report.findings_file is not None:
        target = sidecar_name(path)
        with atomic_open(target, "wb") as out, open(report.findings_file.path, "rb") as src:
            shutil.copyfileobj(src, out)
        report = report.model_copy(update={"findings_file": report.findings_file.model_copy(update={"path": target.name})})
    write_text(path, to_json(report) + "\n")
    return report


def write_html(report: AuditReport, path: str | Path, max_findings_per_rule: int, base: str | Path | None = None) -> None:
    from reports.html import render_html  # imported only when used: matplotlib costs ~0.8 s to load

    write_text(path, render_html(report, max_findings_per_rule, base))


def write_markdown(report: AuditReport, path: str | Path, base: str | Path | None = None) -> None:
    from reports.markdown import render_markdown

    write_text(path, render_markdown(report, base=base))
