"""Where a review's findings come from: a fresh audit of the data, or the JSON report an earlier audit saved (its
findings inline or in the Parquet file beside it), checked to be a report of this very file."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from datakit.audit import Audit
from datakit.io.read import open_raw
from datakit.progress import Stages
from reports.findings import findings_path
from schemas.config import AuditConfig
from schemas.findings import FINDING_COLUMNS, with_messages


@dataclass
class Findings:
    source: str
    frame: pl.DataFrame  # every finding, messages rendered
    config: AuditConfig
    labels: dict[int, str]  # line -> label of the records that have one (when a label field is configured)
    records: int


def audited(path: str | Path, config: AuditConfig, progress: bool) -> Findings:
    with Audit(path, config, progress=progress) as run:
        frame = with_messages(run.findings().collect(engine="streaming"))
        labels = dict(run.records().filter(pl.col("label").is_not_null()).select("line", "label")
                      .collect(engine="streaming").iter_rows()) if config.label_field else {}
        return Findings(run.report.source, frame, config, labels, run.report.profile.records)


def saved(path: str | Path, report_path: str | Path, progress: bool) -> Findings:
    from pydantic import ValidationError

    from reports.json_report import read_json

    report_path = Path(report_path)
    try:
        report = read_json(report_path)
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{report_path}: not a datakit JSON report ({'.'.join(map(str, first['loc'])) or 'document'}: "
                         f"{first['msg']}). Write one with `datakit audit DATA --json report.json`, or leave out --report.") from None
    if (checksum := _file_checksum(path)) != report.checksum:
        raise ValueError(f"{report_path}: this report is of another version of {path} (its checksum {report.checksum[:19]}… "
                         f"is not the file's {checksum[:19]}…). Audit again, or run `datakit review {path}` without --report.")
    sidecar = findings_path(report, report_path.parent)
    if sidecar is None:
        frame = pl.DataFrame([f.model_dump(mode="json") for f in report.findings],
                             schema={c: pl.Int64 if c in ("line", "record_id", "related_line") else pl.String
                                     for c in FINDING_COLUMNS})
    elif not sidecar.exists():
        raise FileNotFoundError(f"{sidecar}: the findings file {report_path} names is missing; keep it next to the JSON "
                                "report, or run `datakit review` without --report to audit again.")
    else:
        frame = with_messages(pl.read_parquet(sidecar).with_columns(pl.col("template").cast(pl.String)))
    labels = _labels(path, report.config.label_field, progress) if report.config.label_field else {}
    return Findings(report.source, frame, report.config, labels, report.profile.records)


def _file_checksum(path: str | Path) -> str:
    """The checksum an audit gives a file: sha256 of its bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _labels(path: str | Path, label_field: str, progress: bool) -> dict[int, str]:
    """line -> label, read as `datakit.normalise` reads it (a saved report keeps only the counts per label)."""
    from datakit.normalise import normalise

    labels: dict[int, str] = {}
    with Stages(enabled=progress) as stages, open_raw(path) as stream:
        advance = stages.records(f"reading the labels of {Path(path).name}", stream.size)
        count = 0
        for batch in stream.batches():
            frame = normalise(batch, str(path), label_field).frame.filter(pl.col("label").is_not_null())
            labels.update(frame.select("line", "label").iter_rows())
            count += len(batch)
            advance(stream.position, count)
    return labels
