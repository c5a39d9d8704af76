"""trainkit.score: many records to a forward pass give each record the score it gets alone, in any batch."""
from __future__ import annotations

import json

import pytest

from datakit.normalise import load
from tests.conftest import EXAMPLES
from trainkit.score import Scorer


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Real records of very different lengths (short and long answers, English and Chinese), and a record whose answer
    is empty (only the end-of-text token to predict after the instruction; nothing to predict alone: no IFD)."""
    en = json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8"))[:14]
    zh = json.loads((EXAMPLES / "alpaca_zh_sample.json").read_text(encoding="utf-8"))[:6]
    path = tmp_path_factory.mktemp("score") / "mixed.jsonl"
    rows = en + zh + [{"instruction": "Say nothing.", "input": "", "output": ""}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load(path).frame


def test_batched_scores_equal_one_record_per_pass(records, tiny_model):
    alone = Scorer(tiny_model, batch_tokens=1)  # a budget of one token: every record is a batch of its own
    batched = Scorer(tiny_model, batch_tokens=4096)
    one, many = alone.score(records), batched.score(records)
    assert one["id"].to_list() == many["id"].to_list() == list(range(21))
    assert one["ifd"][20] is None and many["ifd"][20] is None and many["perplexity"][20] is not None
    for column in ("perplexity", "ifd"):
        assert many[column].head(20).to_list() == pytest.approx(one[column].head(20).to_list(), abs=1e-4)
        assert many[column].head(20).to_list() != pytest.approx(many[column].head(20).reverse().to_list(), abs=1e-4)


def test_the_logits_path_gives_the_same_scores(records, tiny_model):
    """Models that change their logits (soft-capping) are scored from the full logits instead of the chunked head."""
    chunked = Scorer(tiny_model, batch_tokens=4096)
    full = Scorer(tiny_model, batch_tokens=4096)
    assert chunked.direct_head
    full.direct_head = False
    assert full.score(records)["ifd"].to_list() == pytest.approx(chunked.score(records)["ifd"].to_list(), abs=1e-4)


def test_batches_hold_the_budget_and_cover_every_record(tiny_model):
    scorer = Scorer(tiny_model, batch_tokens=100)
    lengths = [5, 90, 30, 30, 12, 200, 7, 49, 51]
    batches = list(scorer._batches(lengths))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_progress_counts_every_record(records, tiny_model):
    seen = []
    Scorer(tiny_model, batch_tokens=512).score(records, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 21
