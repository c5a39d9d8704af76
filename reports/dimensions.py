"""One-line readings of the quality-dimension summaries for the terminal and the Markdown summary: each variant's share
per consistency group, how much of its own prompt an answer covers and the model scores (correspondence), the most
common misspellings,
how completeness judged end punctuation and what cut answers it found, and the most common hedges. Plain text, not
escaped."""
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
    if corr.get("scored_answers"):
        lines.append(f"correspondence · model scores of {corr['scored_answers']:,} answers: median IFD {corr['median_ifd']:.3f}, "
                     f"median perplexity {corr['median_perplexity']:,.1f}, {corr['high_ifd_answers']:,} with IFD at or above "
                     f"{report.config.correspondence.max_ifd:g}")
    return lines + _answer_quality_lines(summaries)


def _answer_quality_lines(summaries: dict) -> list[str]:
    """spelling, completeness, accuracy: what was found, most common first, and how completeness was calibrated."""
    lines = []
    spelling = summaries.get("spelling") or {}
    if spelling.get("most_common"):
        by_rule = spelling["records_by_rule"]
        common = ", ".join(f"{w['misspelling']} -> {w['correction']} ({w['count']:,})" for w in spelling["most_common"][:5])
        lines.append(f"spelling · answers with a misspelling: {by_rule['spelling.misspelling']:,} fixable by `datakit fix`, "
                     f"{by_rule['spelling.ambiguous']:,} to choose by hand; prompts: {by_rule['spelling.prompt']:,}; "
                     f"most common: {common}")
    completeness = summaries.get("completeness") or {}
    if completeness.get("prose_answers"):
        cut = ", ".join(f"{code.split('.')[1].replace('_', ' ')} {n:,}"
                        for code, n in completeness["records_by_rule"].items() if n)
        lines.append(f"completeness · end punctuation {completeness['no_end_punctuation']}; cut answers: {cut or 'none'}")
    accuracy = summaries.get("accuracy") or {}
    if accuracy.get("most_common_phrases"):
        by_rule = accuracy["records_by_rule"]
        said = ", ".join(f"'{p['phrase']}' ({p['count']:,})" for p in accuracy["most_common_phrases"][:5])
        lines.append(f"accuracy · hedged answers {by_rule['accuracy.hedged']:,}, deferring answers "
                     f"{by_rule['accuracy.deferral']:,}; most common: {said}")
    return lines
