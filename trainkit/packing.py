"""Packing short records into full rows, and the masks that keep packed records from seeing each other.

A row holds whole records (never a split one). Every token gets its record's position (restarting
at 0) and a document id; attention is causal *within* a document only. Per-record position ids
alone do not isolate records on transformers 5 (its packed-sequence detection is skipped whenever
a mask is passed, and differs by attention backend), so the mask is built here and handed to the
model already in 4D (block-diagonal causal) or as a flex_attention BlockMask, which transformers
passes through untouched.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from trainkit.tokenize import IGNORE, Example

PAD_DOCUMENT = -1  # padding forms its own block, so no query row is ever fully masked (no NaN in softmax)
FILLER_LINE = 0  # the source line of a filler row's one token: it is no record (records' lines start at 1)


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of records per row, best-fit decreasing: longest first, each into the fullest row it fits.

    Deterministic for given lengths; rows come out in creation order, the trainer's sampler shuffles them.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, row index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"record of {n} tokens does not fit a packed row of {capacity}; filter over-length records first.")
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            space, row = free.pop(at)
            rows[row].append(i)
            bisect.insort(free, (space - n, row))
        else:
            rows.append([i])
            bisect.insort(free, (capacity - n, len(rows) - 1))
    return rows


def fill_to_multiple(rows: list[list[Example]], multiple: int, pad_id: int) -> list[list[Example]]:
    """Rows plus filler rows (one padding token, nothing to learn) up to a multiple of `multiple`: micro-batch x
    processes, the rows all processes take at each micro-step.

    Then every process gets its own rows and none twice (accelerate would otherwise repeat the first rows to
    even out the last micro-step), and N processes step through the same global batches as one process with N
    times the micro-batch. A filler adds no target, so it changes no gradient.
    """
    filler = Example([pad_id], [IGNORE], line=FILLER_LINE)
    return rows + [[filler] for _ in range(-len(rows) % multiple)]


@dataclass
class RowCollator:
    """Turns a batch of rows (each a list of examples, one example when not packing) into model inputs.

    Emits `labels` (the unshifted training labels, which the Trainer counts), `shift_labels` (the target of
    each position inside its own record, -100 at record ends and padding), `loss_weights` (the record's
    class weight on each of its targets), `position_ids`, `document_ids`, and `record_lines` (the source
    lines of each row's records, a plain list the model never sees: the run's data order is written from it).
    """

    pad_id: int
    pad_to_multiple_of: int = 8
    weight_of: dict[str, float] | None = None  # record label -> loss weight

    def __call__(self, rows: list[list[Example]]) -> dict[str, torch.Tensor]:
        width = max(sum(len(e) for e in row) for row in rows)
        width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        shape = (len(rows), width)
        ids = torch.full(shape, self.pad_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE, dtype=torch.long)
        shift = torch.full(shape, IGNORE, dtype=torch.long)
        weights = torch.zeros(shape, dtype=torch.float32)
        pos = torch.zeros(shape, dtype=torch.long)
        docs = torch.full(shape, PAD_DOCUMENT, dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for d, ex in enumerate(row):
                n = len(ex)
                lab = torch.tensor(ex.labels)
                ids[r, at:at + n] = torch.tensor(ex.input_ids)
                labels[r, at:at + n] = lab
                shift[r, at:at + n - 1] = lab[1:]
                weights[r, at:at + n] = self._weight(ex)
                pos[r, at:at + n] = torch.arange(n)
                docs[r, at:at + n] = d
                at += n
            pos[r, at:] = torch.arange(width - at)
        weights = weights.masked_fill(shift == IGNORE, 0.0)
        return {"input_ids": ids, "labels": labels, "shift_labels": shift, "loss_weights": weights,
                "position_ids": pos, "document_ids": docs, "attention_mask": (docs != PAD_DOCUMENT).long(),
                "record_lines": [[ex.line for ex in row if ex.line != FILLER_LINE] for row in rows]}

    def _weight(self, ex: Example) -> float:
        if not self.weight_of:
            return 1.0
        return self.weight_of.get(ex.label if ex.label is not None else "", 1.0)


def is_packed(document_ids: torch.Tensor) -> bool:
    """True when some row holds more than one record, so a padding mask is not enough."""
    return bool((document_ids > 0).any())


def document_mask(document_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype):
    """The block-diagonal causal mask for packed rows, in the form the attention backend takes.

    sdpa: boolean (batch, 1, L, L), True = may attend. eager: the same as an additive float mask.
    flex_attention: a BlockMask built from the document ids (never materialises L x L).
    """
    batch, length = document_ids.shape
    if attn_implementation == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        def same_document_causal(b, h, q, kv):
            return (document_ids[b, q] == document_ids[b, kv]) & (q >= kv)

        return create_block_mask(same_document_causal, batch, None, length, length, device=document_ids.device)
    causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    allowed = (document_ids[:, :, None] == document_ids[:, None, :]) & causal
    allowed = allowed[:, None]
    if attn_implementation == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return allowed
