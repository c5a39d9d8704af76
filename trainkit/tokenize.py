"""Records to token ids and labels, with loss only on assistant tokens (everything else is -100).

Each record is rendered to segments (templates.py), every segment is tokenised on its own and the
ids concatenated, so a label never straddles a prompt/response boundary; the end-of-sequence token
is appended (and trained) so the model learns to stop.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

from trainkit.templates import ALPACA, CHATML, Segment, TemplateError, alpaca_segments, chat_segments, choose_template

IGNORE = -100
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass
class Example:
    """One tokenised record. `labels[t]` is `input_ids[t]` where token t is trained, else -100 (not shifted)."""

    input_ids: list[int]
    labels: list[int]
    line: int
    label: str | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Tokenized:
    examples: list[Example]
    template: str
    template_reason: str
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why) for records with nothing to train on

    @property
    def lengths(self) -> list[int]:
        return [len(e) for e in self.examples]


class TokenizerSetupError(ValueError):
    """The tokenizer lacks something training needs (an end-of-sequence token); the message says what to set."""


def mostly_chinese(prompts: list[str]) -> bool:
    """True when over 30% of the prompts' non-space characters are CJK ideographs."""
    text = "".join(p or "" for p in prompts[:2000])
    chars = len(re.sub(r"\s", "", text))
    return chars > 0 and len(CJK.findall(text)) / chars > 0.3


def prepare_tokenizer(tokenizer, template: str) -> None:
    """Give the tokenizer what training needs: a pad token (its EOS), and ChatML when `chat` is asked of a
    tokenizer without a chat template."""
    if tokenizer.eos_token_id is None:
        raise TokenizerSetupError("the tokenizer has no eos_token, so the model could never learn to stop; set "
                                  "`eos_token` in its tokenizer_config.json.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if template == "chat" and not tokenizer.chat_template:
        tokenizer.chat_template = CHATML


def encode_segments(segment_ids: list[list[int]], segments: list[Segment], eos_id: int, bos_id: int | None) -> tuple[list[int], list[int]]:
    ids: list[int] = [bos_id] if bos_id is not None else []
    labels: list[int] = [IGNORE] * len(ids)
    for seg, toks in zip(segments, segment_ids):
        ids += toks
        labels += toks if seg.train else [IGNORE] * len(toks)
    last_turn = next((toks for seg, toks in zip(reversed(segments), reversed(segment_ids)) if seg.train), [])
    if eos_id not in last_turn:  # a chat template whose end-of-turn token is the EOS already ends it
        ids.append(eos_id)
        labels.append(eos_id)
    return ids, labels


def record_segments(row: dict, template: str, tokenizer) -> list[Segment]:
    messages = [m for m in row["messages"] if m["content"] is not None]
    if template == "chat":
        return chat_segments(messages, tokenizer)
    alpaca = row["format"] == "alpaca"
    return alpaca_segments(messages, ALPACA[template], row["instruction"] if alpaca else None, row["input"] if alpaca else None)


def _leading_bos(tokenizer, template: str) -> int | None:
    """BOS to prepend for Alpaca text when the tokenizer adds one itself (chat templates render their own)."""
    if template == "chat" or tokenizer.bos_token_id is None:
        return None
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token_id if probe and probe[0] == tokenizer.bos_token_id else None


def tokenize_frame(frame: pl.DataFrame, tokenizer, template: str = "auto") -> Tokenized:
    """Tokenise every valid row of a datakit frame (`datakit.normalise.load(...).valid`)."""
    rows = frame.select("line", "format", "messages", "instruction", "input", "label", "prompt").to_dicts()
    name, reason = choose_template(template, bool(tokenizer.chat_template), mostly_chinese([r["prompt"] for r in rows]))
    prepare_tokenizer(tokenizer, name)
    rendered, skipped = [], []
    for row in rows:
        try:
            segments = record_segments(row, name, tokenizer)
        except TemplateError:
            raise
        except Exception as e:  # noqa: BLE001  a template that rejects a role or an odd turn order: a data problem, reported
            skipped.append((row["line"], f"the {name} template cannot render it ({type(e).__name__}: {e})"))
            continue
        if not any(s.train and s.text for s in segments):
            skipped.append((row["line"], "no assistant turn to learn from"))
            continue
        rendered.append((row, segments))
    texts = [s.text for _, segs in rendered for s in segs]
    flat = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    bos = _leading_bos(tokenizer, name)
    examples, at = [], 0
    for row, segs in rendered:
        ids, labels = encode_segments(flat[at: at + len(segs)], segs, tokenizer.eos_token_id, bos)
        at += len(segs)
        examples.append(Example(ids, labels, row["line"], row["label"]))
    return Tokenized(examples, name, reason, skipped)
