"""The audit gate: training data goes through the same rules and config as `datakit audit`, and errors stop the run.

The report is kept in the run directory (with the input checksum inside), so every adapter can be
traced to the exact data it saw.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from datakit.audit import AuditRun, run_audit
from datakit.config import build_config
from datakit.io.report_files import write_report_json
from schemas.findings import Severity
from schemas.report import AuditReport

AUDIT_FILE = "audit_report.json"


class AuditRefused(Exception):
    """Error-level findings in the training data; the message is the summary and the commands to run."""

    exit_code = 3


def fix_command(data: str | Path) -> str:
    stem = Path(data).name.split(".")[0]
    return f"datakit fix {data} -o {stem}.clean.jsonl"


def refusal(report: AuditReport, data: str | Path, audit_file: Path) -> str:
    errors = Counter(f.rule for f in report.findings if f.severity == Severity.error)
    lines = [f"{data}: the audit found {sum(errors.values())} error-level finding(s); training refused.",
             *(f"  {n:>5}  {rule}" for rule, n in errors.most_common()),
             f"full report: {audit_file}",
             "next:"]
    steps = list(report.next_steps)
    if not any(s.startswith("datakit fix") for s in steps):
        steps.insert(0, f"{fix_command(data)}   # moves records with errors to the rejected file, with their reasons")
    lines += [f"  {s}" for s in steps]
    lines.append("  or re-run with --allow-findings to train on the data as it is.")
    return "\n".join(lines)


def audit_gate(data: str | Path, run_dir: Path, *, audit_config: str | Path | None = None, label_field: str | None = None,
               eval_data: str | Path | None = None, allow_findings: bool = False, keep_report: bool = True) -> AuditRun:
    """Audit DATA (checking it against the eval file for leakage when there is one); refuse on error-level findings.
    The run's dataset is what training reads next: the records trained on are the records audited.
    keep_report=False on the other processes of a multi-process launch: the main one writes the report."""
    config = build_config(audit_config, label_field=label_field, against=[str(eval_data)] if eval_data else None)
    run = run_audit(data, config)
    report = run.report
    audit_file = run_dir / AUDIT_FILE
    if keep_report:
        write_report_json(report, audit_file)
    if report.count(Severity.error) and not allow_findings:
        raise AuditRefused(refusal(report, data, audit_file))
    return run


def audit_summary(report: AuditReport) -> dict:
    """What the run report shows of the audit: counts by severity and by rule, the checksum, the next steps."""
    return {
        "source": report.source,
        "checksum": report.checksum,
        "records": report.profile.records,
        "valid_records": report.profile.valid_records,
        "by_severity": {s.value: report.count(s) for s in Severity},
        "by_rule": dict(Counter(f.rule for f in report.findings).most_common()),
        "next_steps": report.next_steps,
    }
