"""Scoring records with a local causal LM: the answer's perplexity given its instruction, and its instruction-following
difficulty IFD = loss(answer | instruction) / loss(answer) (Li et al., "From Quantity to Quality", NAACL 2024).

IFD near 0: the instruction makes the answer easy to predict; IFD >= 1: the instruction does not help at all, so the
pair teaches little or does not belong together. Both losses are the mean cross-entropy over the answer's tokens, the
instruction-conditioned one through trainkit's own tokenisation and loss masks (the training template), the
unconditioned one on the answer text alone, so what is scored is what training would see.

Records are scored many to a forward pass: sorted by length so a batch holds rows of about one length, right-padded
with a padding mask, and each row's loss summed over its own answer tokens, so a record's score does not depend on
the records it was batched with (tests/test_score.py checks batched against one-by-one scores).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import polars as pl
import torch
import torch.nn.functional as F

from trainkit.loss import chunked_loss_sum
from trainkit.model import load_tokenizer
from trainkit.packing import RowCollator
from trainkit.templates import Segment
from trainkit.tokenize import IGNORE, Example, encode_segments, tokenize_frame

MAX_TOKENS = 2048  # longer records are scored on their first tokens: the loss per token is what matters
# Tokens per forward pass (rows x padded length): enough rows to keep the matrix units busy, few enough that the
# activations of a 7B model fit beside it. The output layer is applied in chunks, so the vocabulary does not count.
BATCH_TOKENS = {"cuda": 32_768, "cpu": 8_192}
MAX_ROWS = 64


class Scorer:
    """A model and its tokenizer, loaded once per process (GPU when there is one, else CPU), scoring frames of records."""

    def __init__(self, model_dir: str | Path, batch_tokens: int | None = None):
        from transformers import AutoModelForCausalLM

        from trainkit.train import direct_head_ok  # the training module: imported when called (it loads the Trainer)

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu" and os.environ.get("DATAKIT_SERIAL_MEASURES"):
            torch.set_num_threads(1)  # one of several batch workers, each on its own core
        self.tokenizer = load_tokenizer(model_dir)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device).eval()
        self.collate = RowCollator(pad_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0,
                                   pad_to_multiple_of=1)
        self.direct_head = direct_head_ok(self.model, "full", bool(getattr(self.model.config, "final_logit_softcapping", None)))
        self.batch_tokens = batch_tokens or BATCH_TOKENS[self.device]

    @torch.no_grad()
    def score(self, frame: pl.DataFrame, progress: Callable[[int], None] | None = None) -> pl.DataFrame:
        """Per valid record of a datakit frame with an answer: id, perplexity of the answer given the instruction, and
        IFD (null where the template cannot render the record). `progress(n)` is called as records are scored."""
        valid = frame.filter(pl.col("valid")).with_row_index("row")
        if valid.is_empty():
            return pl.DataFrame(schema={"id": pl.Int64, "perplexity": pl.Float64, "ifd": pl.Float64})
        # rows numbered for the call: in a directory of shards, two records of one batch may share a line number
        tokenized = tokenize_frame(valid.with_columns(pl.col("row").cast(pl.Int64).alias("line")), self.tokenizer)
        given = [Example(e.input_ids[:MAX_TOKENS], e.labels[:MAX_TOKENS], e.line) for e in tokenized.examples]
        responses = valid["response"].fill_null("").to_list()
        alone = self._answers_alone([responses[e.line] for e in given], [e.line for e in given])
        losses = self.mean_losses(given + alone, progress=(lambda n: progress(n // 2)) if progress else None)
        ids = valid["id"].to_list()
        rows = []
        for k, example in enumerate(given):
            with_instruction, answer_only = losses[k], losses[len(given) + k]
            rows.append((ids[example.line],
                         math.exp(min(with_instruction, 50.0)) if with_instruction is not None else None,
                         with_instruction / answer_only if with_instruction is not None and answer_only else None))
        return pl.DataFrame(rows, schema={"id": pl.Int64, "perplexity": pl.Float64, "ifd": pl.Float64}, orient="row")

    def _answers_alone(self, responses: list[str], lines: list[int]) -> list[Example]:
        """Each answer text with no instruction or template around it, every token but the first a target."""
        tokens = self.tokenizer(responses, add_special_tokens=False)["input_ids"] if responses else []
        out = []
        for text, ids, line in zip(responses, tokens, lines):
            full, labels = encode_segments([ids], [Segment(text, train=True)], self.tokenizer.eos_token_id, None)
            out.append(Example(full[:MAX_TOKENS], labels[:MAX_TOKENS], line))
        return out

    def mean_losses(self, examples: list[Example], progress: Callable[[int], None] | None = None) -> list[float | None]:
        """Mean cross-entropy over each example's target tokens (None when it has none), in the order given."""
        out: list[float | None] = [None] * len(examples)
        done = 0
        for batch in self._batches([len(e) for e in examples]):
            rows = [examples[i] for i in batch]
            inputs = self.collate([[e] for e in rows])
            targets = (inputs["shift_labels"] != IGNORE).sum(dim=1).tolist()
            sums = self._row_loss_sums({k: v.to(self.device) for k, v in inputs.items() if isinstance(v, torch.Tensor)})
            for i, total, n in zip(batch, sums.tolist(), targets):
                out[i] = total / n if n else None
            done += len(batch)
            if progress:
                progress(done)
        return out

    def _batches(self, lengths: list[int]):
        """Indices of the examples, longest first, in batches of at most `batch_tokens` padded tokens (rows x the
        batch's longest row) and MAX_ROWS rows; a record longer than the budget is a batch of its own."""
        batch: list[int] = []
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            if batch and ((len(batch) + 1) * lengths[batch[0]] > self.batch_tokens or len(batch) == MAX_ROWS):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _row_loss_sums(self, batch: dict) -> torch.Tensor:
        """Per row, the sum of cross-entropy over its targets: the model runs once over the padded rows; the output
        layer is applied to target positions only, in chunks (`trainkit.loss`), where the model allows it."""
        targets, weights = batch["shift_labels"], batch["loss_weights"]
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "position_ids": batch["position_ids"], "use_cache": False}
        if self.direct_head:
            out = self.model(**inputs, logits_to_keep=torch.empty(0, dtype=torch.long, device=targets.device),
                             output_hidden_states=True)
            hidden, head = out.hidden_states[-1], self.model.get_output_embeddings()
            return torch.stack([chunked_loss_sum(hidden[r], head, targets[r], weights[r]) for r in range(len(targets))])
        logits = self.model(**inputs).logits.float()  # a model that changes its logits (soft-capping) computes them itself
        ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        return ce.sum(dim=1)


@lru_cache(maxsize=2)
def scorer(model_dir: str) -> Scorer:
    """The process's scorer for `model_dir` (a batch worker loads the model once, then scores every batch it gets)."""
    return Scorer(model_dir)
