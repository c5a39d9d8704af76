"""Packing is exact: records packed into one row give the logits and loss they give alone, and rows lose nothing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datakit.normalise import load
from tests.conftest import EXAMPLES
from trainkit.loss import chunked_loss_sum, loss_sum
from trainkit.model import load_model, load_tokenizer
from trainkit.packing import RowCollator, document_mask, pack_rows
from trainkit.tokenize import IGNORE, Example, tokenize_frame


def _records(tiny_model, n=4):
    tok = load_tokenizer(tiny_model)
    return tokenize_frame(load(EXAMPLES / "identity.json").valid.head(n), tok).examples


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _packed_vs_alone(model, examples, attn, dtype):
    batch = RowCollator(pad_id=0)([examples])
    with torch.no_grad():
        mask = document_mask(batch["document_ids"], attn, dtype)
        packed = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).logits[0]
        errors, at = [], 0
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex.input_ids])).logits[0]
            errors.append(_rel(packed[at:at + len(ex)], alone))
            at += len(ex)
    return errors


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_each_record_run_alone_fp32(tiny_model, attn):
    model = load_model(tiny_model, method="lora", precision="fp32", attn_implementation=attn).eval()
    errors = _packed_vs_alone(model, _records(tiny_model), attn, torch.float32)
    assert max(errors) < 1e-5, errors


def test_packed_logits_equal_alone_within_bf16_noise(tiny_model):
    model = load_model(tiny_model, method="lora", precision="bf16", attn_implementation="sdpa").eval()
    errors = _packed_vs_alone(model, _records(tiny_model), "sdpa", torch.bfloat16)
    assert max(errors) < 2e-2, errors


def test_packed_loss_equals_the_sum_of_per_record_losses(tiny_model):
    model = load_model(tiny_model, method="lora", precision="fp32", attn_implementation="sdpa").eval()
    examples = _records(tiny_model)
    collate = RowCollator(pad_id=0)
    options = {"attn_implementation": "sdpa", "direct_head": True}
    with torch.no_grad():
        packed = loss_sum(model, collate([examples]), **options)
        alone = sum(loss_sum(model, collate([[ex]]), **options) for ex in examples)
        padded = loss_sum(model, collate([[ex] for ex in examples]), **options)
    assert abs(float(packed - alone)) / float(alone) < 1e-5
    assert abs(float(padded - alone)) / float(alone) < 1e-5


def test_chunked_loss_equals_plain_cross_entropy_in_value_and_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(3, 40, 16, requires_grad=True)
    targets = torch.randint(0, 50, (3, 40))
    targets[:, :5] = IGNORE
    weights = torch.rand(3, 40)
    chunked = chunked_loss_sum(hidden, head, targets, weights, chunk=7)
    chunked.backward()
    grad_chunked = hidden.grad.clone()
    hidden.grad = None
    keep = targets != IGNORE
    plain = (F.cross_entropy(head(hidden)[keep], targets[keep], reduction="none") * weights[keep]).sum()
    plain.backward()
    assert torch.allclose(chunked, plain, rtol=1e-5)
    assert torch.allclose(grad_chunked, hidden.grad, rtol=1e-4, atol=1e-7)


def test_shift_labels_stop_at_record_boundaries_and_padding():
    a = Example([1, 2, 3], [IGNORE, 2, 3], line=1)
    b = Example([4, 5], [IGNORE, 5], line=2)
    batch = RowCollator(pad_id=0, pad_to_multiple_of=8)([[a, b]])
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert batch["shift_labels"][0].tolist() == [2, 3, IGNORE, 5, IGNORE, IGNORE, IGNORE, IGNORE]
    assert batch["position_ids"][0].tolist()[:5] == [0, 1, 2, 0, 1]
    assert batch["document_ids"][0].tolist() == [0, 0, 0, 1, 1, -1, -1, -1]
    assert batch["loss_weights"][0].tolist() == [1, 1, 0, 1, 0, 0, 0, 0]


def test_class_weights_follow_each_record_label():
    a = Example([1, 2, 3], [IGNORE, 2, 3], line=1, label="rare")
    b = Example([4, 5], [IGNORE, 5], line=2, label="common")
    batch = RowCollator(pad_id=0, weight_of={"rare": 3.0, "common": 0.5})([[a, b]])
    assert batch["loss_weights"][0].tolist()[:5] == [3.0, 3.0, 0.0, 0.5, 0.0]


def test_rows_hold_every_record_once_within_capacity():
    lengths = [5, 300, 17, 250, 120, 64, 64, 1, 511, 200] * 7
    rows = pack_rows(lengths, 512)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 512 for row in rows)
    assert pack_rows(lengths, 512) == rows  # deterministic
    assert len(rows) <= -(-sum(lengths) // 512) + 2  # close to the lower bound


def test_record_longer_than_a_row_is_refused_not_split():
    with pytest.raises(ValueError, match="does not fit"):
        pack_rows([10, 600], 512)
