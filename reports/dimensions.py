"""One-line readings of the quality-dimension summaries for the terminal and the Markdown summary: each variant's share
per consistency group, and how much of its own prompt an answer covers (correspondence). Plain text, not escaped."""
from __future__ import annotations

from schemas.report import AuditReport

GROUPS = 6  # consistency groups shown: those with a minority variant or a split first


def dimension_lines(report: AuditReport) -> list[str]:
    summaries = {f.family: f.summary for f in report.families}
    lines = []
    variants = (summaries.get("consistency") or {}).get("variants") or []
    groups: dict[str, list[dict]] = {}
    for v in variants:
        groups.setdefault(v["group"], []).append(v)
    judged = sorted(groups.items(), key=lambda kv: (not any(v["minority"] for v in kv[1]), len(kv[1]) == 1, kv[0]))
    for group, rows in judged[:GROUPS]:
        if len(rows) > 1:
            shares = ", ".join(f"{v['variant']} {v['share']:.1%} ({v['records']:,})" for v in rows)
            lines.append(f"consistency · {group}: {shares}")
    corr = summaries.get("correspondence") or {}
    if corr.get("own_relevance_histogram"):
        bars = " ".join(f"{k} {n:,}" for k, n in corr["own_relevance_histogram"].items())
        lines.append(f"correspondence · answers covering their own prompt (share of its weighted words): {bars}; "
                     f"mean {corr['mean_own_relevance']:.0%} own vs {corr['mean_other_relevance']:.0%} other prompts; "
                     f"{corr['unrelated_answers']:,} answers fit another prompt better")
    return lines
