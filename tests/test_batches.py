"""Batching never changes an answer: the audit of a file in many small batches finds exactly what one batch finds,
on real records with planted duplicates, near-duplicates, conflicts, eval leakage and class skew."""
from __future__ import annotations

import json

import pytest

from datakit.audit import Audit
from datakit.config import build_config
from datakit.engine.inputs import FileInput
from tests.planted import EVAL_SET, write_planted


def audited(path, batch_records: int, workers: int = 1) -> tuple[list[str], dict, dict]:
    config = build_config(label_field="category", against=[str(EVAL_SET)])
    with Audit(path, config, batch_records=batch_records, workers=workers) as run:
        rows = sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in run.findings_frame().to_dicts())
        return rows, {f.family: f.summary for f in run.report.families}, run.report.profile.model_dump()


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    path = write_planted(tmp_path_factory.mktemp("planted") / "planted.jsonl")
    return path, audited(path, batch_records=1_000_000)


def test_planted_set_has_every_cross_record_problem(whole):
    _, (rows, summaries, _) = whole
    rules = {json.loads(r)["rule"] for r in rows}
    assert {"duplicate.exact", "duplicate.conflicting_output", "near_duplicate.cluster", "leakage.eval_overlap",
            "leakage.eval_near", "balance.imbalanced", "format.mixed_formats", "language.off_language",
            "spelling.misspelling", "accuracy.hedged", "completeness.no_end_punctuation"} <= rules
    assert summaries["near_duplicate"]["clusters"] >= 30


@pytest.mark.parametrize(("batch_records", "workers"), [(97, 1), (1000, 1), (500, 2)])
def test_small_batches_find_exactly_what_one_batch_finds(whole, batch_records, workers):
    """In one process, and spread over two worker processes."""
    path, (rows, summaries, profile) = whole
    batched_rows, batched_summaries, batched_profile = audited(path, batch_records, workers)
    assert batched_rows == rows  # every field of every finding: rule, line, related line, message, excerpt, ...
    assert batched_summaries == summaries
    assert batched_profile == profile


@pytest.mark.parametrize("workers", [2, 3])
def test_evened_out_batches_come_in_a_multiple_of_the_workers_and_about_equal(whole, workers):
    """No worker computes a lone last batch while the others wait; the sizes asked are never exceeded."""
    path, _ = whole
    inputs = FileInput(path, batch_records=700)
    inputs.even_out(workers)
    sizes = [len(b.records) for b in inputs.batches()]
    assert len(sizes) % workers == 0 and max(sizes) <= 700
    assert max(sizes) - min(sizes) <= 0.1 * max(sizes)
