"""The findings of a report, whichever form they take: inline under `findings`, or in the Parquet file that
`findings_file` names (past 100,000 findings). Every view reads them through here, never one form directly."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from schemas.findings import Finding, with_messages
from schemas.report import AuditReport


def findings_path(report: AuditReport, base: str | Path | None = None) -> Path | None:
    """The findings file of `report`, resolved against the folder of its JSON report (`base`), or None when inline."""
    if report.findings_file is None:
        return None
    path = Path(report.findings_file.path)
    return path if path.is_absolute() or base is None else Path(base) / path


def first_per_rule(report: AuditReport, cap: int, base: str | Path | None = None) -> list[Finding]:
    """At most `cap` findings of each rule (the first by line), in the report's order: by line, then rule."""
    path = findings_path(report, base)
    if path is None:
        kept: dict[str, int] = {}
        out = []
        for f in report.findings:
            if kept.get(f.rule, 0) < cap:
                kept[f.rule] = kept.get(f.rule, 0) + 1
                out.append(f)
        return out
    if not path.exists():
        raise FileNotFoundError(f"{path}: the findings file this report names is missing; keep it next to the JSON "
                                "report, or audit again.")
    rows = (pl.scan_parquet(path).with_columns(pl.col("template").cast(pl.String))
            .group_by("rule", maintain_order=True).head(cap).collect(engine="streaming"))
    rows = with_messages(rows).sort(["line", "rule"], nulls_last=False, maintain_order=True)
    return [Finding.model_validate(r) for r in rows.iter_rows(named=True)]
