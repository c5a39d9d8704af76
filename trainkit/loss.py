"""The training loss: per-token cross-entropy on assistant tokens, weighted per record, summed in chunks.

Logits are only computed for positions that have a target, chunk by chunk, and each chunk is
recomputed in the backward pass (activation checkpointing), so the (tokens x vocabulary) fp32 logits
of a long packed row never exist at once: 8K tokens x 152K vocabulary would be 5 GB.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from trainkit.packing import document_mask, is_packed
from trainkit.tokenize import IGNORE

CHUNK_TOKENS = 4096


def _chunk_loss(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # the head's weights, not its forward: under FSDP2 the head's module hooks already ran in the model's forward,
    # and running them again here (and in the recomputation) breaks the backward
    logits = F.linear(hidden, head.weight, head.bias).float()
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()


def chunked_loss_sum(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, weights: torch.Tensor,
                     chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Sum over target positions of weight x cross-entropy, never materialising more than `chunk` rows of logits."""
    keep = targets != IGNORE
    hidden, targets, weights = hidden[keep], targets[keep], weights[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    # at least one (maybe empty) chunk: a micro-batch without targets (filler rows) still reaches every trainable
    # weight with a zero gradient, which data-parallel training waits for
    for at in range(0, max(targets.numel(), 1), chunk):
        part = (hidden[at:at + chunk], head, targets[at:at + chunk], weights[at:at + chunk])
        total = total + (checkpoint(_chunk_loss, *part, use_reentrant=False) if torch.is_grad_enabled() else _chunk_loss(*part))
    return total


def attention_mask_for(batch: dict, attn_implementation: str, dtype: torch.dtype):
    """The 4D/BlockMask for packed rows, or the ordinary 2D padding mask when every row holds one record."""
    if is_packed(batch["document_ids"]):
        return document_mask(batch["document_ids"], attn_implementation, dtype)
    return batch["attention_mask"]


def loss_sum(model, batch: dict, *, attn_implementation: str, direct_head: bool, virtual_tokens: int = 0) -> torch.Tensor:
    """Weighted loss sum of one batch from `packing.RowCollator`.

    direct_head: the model's forward runs with no logits kept (`logits_to_keep` empty) and the output layer is
    applied here, chunked; it goes through the (peft, DDP) wrappers' own forward so nothing they do is skipped.
    False for models that post-process logits, and for prompt learning (padded rows only).
    """
    targets, weights = batch["shift_labels"], batch["loss_weights"]
    if direct_head:
        inner = model.module if hasattr(model, "module") else model  # DistributedDataParallel
        base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        dtype = next(p.dtype for p in base.parameters() if p.is_floating_point())
        mask = attention_mask_for(batch, attn_implementation, dtype)
        out = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"], use_cache=False,
                    logits_to_keep=torch.empty(0, dtype=torch.long, device=targets.device), output_hidden_states=True)
        return chunked_loss_sum(out.hidden_states[-1], base.get_output_embeddings(), targets, weights)
    if is_packed(batch["document_ids"]):
        raise ValueError("packed rows need the direct loss path; run without --packing for this model or method.")
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logits = logits[:, virtual_tokens:].float()  # prompt tuning prepends its virtual tokens' positions
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="none")
    return (ce * weights.reshape(-1)).sum()
