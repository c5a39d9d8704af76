"""The report as JSON (the published contract) and its JSON Schema."""
from __future__ import annotations

import json
import stat
from pathlib import Path

from schemas.report import AuditReport


def to_json(report: AuditReport) -> str:
    return report.model_dump_json(indent=2)


def json_schema() -> str:
    return json.dumps(AuditReport.model_json_schema(), indent=2, ensure_ascii=False) + "\n"


def read_json(path: str | Path) -> AuditReport:
    """A report written by `datakit audit --json`; ValueError naming the file when it is no readable UTF-8 file
    (a named pipe is refused, not waited on); pydantic's ValidationError when it is no report."""
    p = Path(path)
    if p.exists() and not p.is_dir() and not stat.S_ISREG(p.stat().st_mode):
        raise ValueError(f"{p}: is not a regular file (a named pipe, device or socket); pass the report file itself.")
    try:
        return AuditReport.model_validate_json(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not a datakit JSON report: byte {e.start} is not UTF-8 text (a data file, a binary "
                         "file or another encoding?). Write one with `datakit audit DATA --json report.json`.") from None
