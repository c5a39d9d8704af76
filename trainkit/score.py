"""Scoring records with a local causal LM: the answer's perplexity given its instruction, and its instruction-following
difficulty IFD = loss(answer | instruction) / loss(answer) (Li et al., "From Quantity to Quality", NAACL 2024).

IFD near 0: the instruction makes the answer easy to predict; IFD >= 1: the instruction does not help at all, so the
pair teaches little or does not belong together. Both losses are the mean cross-entropy over the answer's tokens, the
instruction-conditioned one through trainkit's own tokenisation and loss masks (the training template), the
unconditioned one on the answer text alone, so what is scored is what training would see.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import polars as pl
import torch

from trainkit.loss import loss_sum
from trainkit.model import load_tokenizer
from trainkit.packing import RowCollator
from trainkit.templates import Segment
from trainkit.tokenize import IGNORE, Example, encode_segments, tokenize_frame

MAX_TOKENS = 2048  # longer records are scored on their first tokens: the loss per token is what matters


class Scorer:
    """A model and its tokenizer, loaded once per process (GPU when there is one, else CPU), scoring frames of records."""

    def __init__(self, model_dir: str | Path):
        from transformers import AutoModelForCausalLM

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(model_dir)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device).eval()
        self.collate = RowCollator(pad_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0)

    @torch.no_grad()
    def score(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Per valid record of a datakit frame with an answer: id, perplexity of the answer given the instruction, and
        IFD (null where the template cannot render the record)."""
        valid = frame.filter(pl.col("valid"))
        tokenized = tokenize_frame(valid, self.tokenizer)
        by_line = dict(zip(valid["line"].to_list(), zip(valid["id"].to_list(), valid["response"].to_list())))
        ids, ppl, ifd = [], [], []
        for example in tokenized.examples:
            record_id, response = by_line[example.line]
            given = self._mean_loss(example)
            alone = self._mean_loss(self._answer_alone(response or "", example.line))
            ids.append(record_id)
            ppl.append(math.exp(min(given, 50.0)) if given is not None else None)
            ifd.append(given / alone if given is not None and alone else None)
        return pl.DataFrame({"id": ids, "perplexity": ppl, "ifd": ifd},
                            schema={"id": pl.Int64, "perplexity": pl.Float64, "ifd": pl.Float64})

    def _answer_alone(self, response: str, line: int) -> Example:
        """The answer text with no instruction or template around it, every token but the first a target."""
        tokens = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        ids, labels = encode_segments([tokens], [Segment(response, train=True)], self.tokenizer.eos_token_id, None)
        return Example(ids, labels, line)

    def _mean_loss(self, example: Example) -> float | None:
        example = Example(example.input_ids[:MAX_TOKENS], example.labels[:MAX_TOKENS], example.line)
        batch = self.collate([[example]])
        targets = int((batch["shift_labels"] != IGNORE).sum())
        if not targets:
            return None
        batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        total = loss_sum(self.model, batch, attn_implementation="sdpa", direct_head=False)
        return float(total) / targets


@lru_cache(maxsize=2)
def scorer(model_dir: str) -> Scorer:
    """The process's scorer for `model_dir` (a batch worker loads the model once, then scores every batch it gets)."""
    return Scorer(model_dir)
