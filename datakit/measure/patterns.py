"""Where each response first matches one of the configured internal-reference patterns (leakage.internal_patterns).
Columns added ("internal_ref"): `internal_start` and `internal_end`, the span of the first match (null: none).

The patterns need Python's `re` (look-arounds), one text at a time, so the responses are searched in chunks on
every core (`datakit.measure.parallel`)."""
from __future__ import annotations

import re

import polars as pl

from datakit.measure.parallel import map_batches
from schemas.config import AuditConfig
from schemas.dataset import Dataset


def add_internal_references(ds: Dataset, config: AuditConfig, evals: object = None) -> None:
    patterns = config.leakage.internal_patterns
    responses = [r or "" for r in ds.frame["response"].to_list()]
    chunks = [(patterns, responses[i: i + _SEARCH_CHUNK]) for i in range(0, len(responses), _SEARCH_CHUNK)]
    spans = [span for part in map_batches(_first_matches, chunks, len(chunks)) for span in part]
    valid = ds.frame["valid"].to_list()
    ds.frame = ds.frame.with_columns(
        pl.Series("internal_start", [s[0] if s and v else None for s, v in zip(spans, valid)], dtype=pl.Int64),
        pl.Series("internal_end", [s[1] if s and v else None for s, v in zip(spans, valid)], dtype=pl.Int64))


_SEARCH_CHUNK = 5_000  # responses per worker job: the patterns need Python's `re` (look-arounds), one text at a time


def _first_matches(job: tuple[list[str], list[str]]) -> list[tuple[int, int] | None]:
    """Span of the first pattern that matches each text (patterns tried in order), or None."""
    patterns, texts = [re.compile(p) for p in job[0]], job[1]
    return [next(((m.start(), m.end()) for p in patterns if (m := p.search(t))), None) for t in texts]
