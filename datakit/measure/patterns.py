"""Where each response first matches one of the configured internal-reference patterns (leakage.internal_patterns).
Columns added ("internal_ref"): `internal_start` and `internal_end`, the span of the first match (null: none).

The patterns need a backtracking engine (look-arounds), one text at a time, so the responses are searched in chunks
on every core (`datakit.measure.parallel`); each search of a user's pattern is bounded in time (`schemas.patterns`)."""
from __future__ import annotations

import polars as pl

from datakit.measure.parallel import map_batches
from schemas.config import AuditConfig, LeakageConfig, builtin_patterns
from schemas.dataset import Dataset
from schemas.patterns import PatternTooSlow, bounded


def add_internal_references(ds: Dataset, config: AuditConfig, evals: object = None) -> None:
    patterns = config.leakage.internal_patterns
    responses = [r or "" for r in ds.frame["response"].to_list()]
    chunks = [(patterns, responses[i: i + _SEARCH_CHUNK], i) for i in range(0, len(responses), _SEARCH_CHUNK)]
    try:
        spans = [span for part in map_batches(_first_matches, chunks, len(chunks)) for span in part]
    except PatternTooSlow as e:
        row = ds.frame.row(e.args[2], named=True)
        raise e.at(f"the response of {row['source']}:{row['line']}") from None
    valid = ds.frame["valid"].to_list()
    ds.frame = ds.frame.with_columns(
        pl.Series("internal_start", [s[0] if s and v else None for s, v in zip(spans, valid)], dtype=pl.Int64),
        pl.Series("internal_end", [s[1] if s and v else None for s, v in zip(spans, valid)], dtype=pl.Int64))


_SEARCH_CHUNK = 5_000  # responses per worker job: the patterns need a backtracking engine (look-arounds), one text at a time


def _first_matches(job: tuple[list[str], list[str], int]) -> list[tuple[int, int] | None]:
    """Span of the first pattern that matches each text (patterns tried in order), or None; PatternTooSlow names the
    text's row in the batch."""
    patterns = bounded(job[0], "leakage.internal_patterns", builtin_patterns(LeakageConfig, "internal_patterns"))
    spans = []
    for i, text in enumerate(job[1]):
        try:
            spans.append(next(((m.start(), m.end()) for p in patterns if (m := p.search(text))), None))
        except PatternTooSlow as e:
            raise e.at(job[2] + i) from None
    return spans
