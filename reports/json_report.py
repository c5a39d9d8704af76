"""The report as JSON (the published contract) and its JSON Schema."""
from __future__ import annotations

import json
from pathlib import Path

from schemas.report import AuditReport


def to_json(report: AuditReport) -> str:
    return report.model_dump_json(indent=2)


def json_schema() -> str:
    return json.dumps(AuditReport.model_json_schema(), indent=2, ensure_ascii=False) + "\n"


def read_json(path: str | Path) -> AuditReport:
    return AuditReport.model_validate_json(Path(path).read_text(encoding="utf-8"))
