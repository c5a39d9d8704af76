"""Answers from a trained run: load the adapter (or the merged model, or the base) as the run saved it, and generate.

Prompts are rendered through the run's own template and tokenised segment by segment exactly as training did
(templates.py + tokenize.py), so the adapter sees at inference the text it was trained on. Batches are padded on
the left, so every prompt ends where its answer starts: greedy decoding (temperature 0) gives the same answers batched
or one by one in fp32 (in bf16 on a GPU padding can change a rounding, rarely an argmax), and sampling is
deterministic for a seed and batch size.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from trainkit.model import load_tokenizer, quantization_config, quiet_transformers
from trainkit.templates import Segment
from trainkit.tokenize import _leading_bos, prepare_tokenizer, record_segments
from trainkit.trust import ModelTrust, code_hint, refuse_pickle_weights

RUN_FILE = "run.json"  # trainkit.train.RUN_FILE (not imported: train.py pulls in the Trainer)
SYSTEM_SHARE = 0.5  # a system message on at least half the training records is the run's system prompt
SYSTEM_SAMPLE = 2000  # training records read to find it (chat starts in a second, whatever the data's size)


class InferenceError(ValueError):
    """The run folder cannot answer as asked (not a run, unfinished, model moved); one line says what to do."""


@dataclass(frozen=True)
class Prompt:
    """A conversation to answer. An Alpaca record keeps its instruction and input apart, as training rendered them
    (the Alpaca template gives the input its own section)."""

    messages: list[dict]
    instruction: str | None = None
    input: str | None = None


@dataclass
class Inference:
    """A model ready to answer with the run's template, tokenizer and limits."""

    model: Any
    tokenizer: Any
    template: str  # chat | alpaca_en | alpaca_zh: what the run trained with
    max_length: int  # the plan's max_length in tokens: the adapter never trained on longer records
    device: str
    answers_with: str  # "adapter <dir>", "merged model <dir>", "base model <dir>", "model <dir>"
    run: dict = field(repr=False)  # run.json

    @property
    def pads(self) -> bool:
        """False for prefix / prompt tuning: peft ignores position ids there, so left padding would shift every
        position; such a model is given batches of prompts of one length (no padding) instead."""
        config = getattr(self.model, "active_peft_config", None)
        return not getattr(config, "is_prompt_learning", False)

    @cached_property
    def system(self) -> str | None:
        """The run's system prompt: the system message that at least half of the training records carry (among the
        first SYSTEM_SAMPLE), if any. Read from the training data on first use (chat needs it; batch generation takes
        each record's own)."""
        from datakit.io.read import open_raw
        from datakit.normalise import normalise

        data = Path(self.run.get("data", ""))
        if not data.is_file():
            return None
        try:
            with open_raw(data) as stream:
                first = next(stream.batches(max_records=SYSTEM_SAMPLE), [])
            systems = normalise(first, str(data)).valid["system"].to_list()
        except Exception:  # noqa: BLE001  the data moved or changed since training: no system prompt, not a crash
            return None
        counts = Counter(s for s in systems if s)
        if not counts:
            return None
        text, n = counts.most_common(1)[0]
        return text if n >= SYSTEM_SHARE * len(systems) else None


def read_run(run_dir: Path) -> dict:
    """run.json of a trainkit run folder, or a one-line error naming what to pass instead."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise InferenceError(f"{run_dir}: not a trainkit run folder (no {RUN_FILE}); pass the --output folder of `trainkit train`.")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        run["plan"]["method"]["value"], run["plan"]["template"]["value"], run["plan"]["max_length"]["value"]
    except (ValueError, KeyError, TypeError) as e:
        raise InferenceError(f"{path}: unreadable ({type(e).__name__}: {e}); the run folder is damaged.") from None
    return run


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def _load_causal_lm(folder: Path, flag: str, trust: ModelTrust, device: str, four_bit: bool = False):
    import pickle

    from transformers import AutoModelForCausalLM

    if not (folder / "config.json").is_file():
        raise InferenceError(f"{flag} {folder}: no model there (no config.json).")
    refuse_pickle_weights(folder, trust, flag)
    kwargs: dict[str, Any] = {"dtype": _dtype(device), **trust.weight_options()}
    if four_bit:
        kwargs |= {"quantization_config": quantization_config("bf16"), "device_map": {"": 0}}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except pickle.UnpicklingError as e:
        raise InferenceError(f"{flag} {folder}: its pickle weights hold more than tensors ({str(e).splitlines()[-1]}); "
                             "use a safetensors copy.") from None
    except Exception as e:  # noqa: BLE001  transformers, safetensors and torch each raise their own types for a bad folder
        raise InferenceError(f"{flag} {folder}: cannot load the model ({type(e).__name__}: {str(e)[:300]})."
                             + code_hint(folder)) from None
    return model if four_bit else model.to(device)


def load_for_inference(run_dir: Path, *, merged: Path | None = None, base: bool = False, trust_remote_code: bool = False,
                       allow_pickle_weights: bool = False) -> Inference:
    """The run's model in eval mode on the GPU when there is one: its adapter on the base (default), the merged
    model (`merged`), or the base model alone (`base`, for comparison). The tokenizer is always the run's saved one,
    so every choice reads the same prompt text."""
    run_dir = Path(run_dir)
    if merged is not None and base:
        raise InferenceError("--merged and --base: choose one (the merged model already holds the adapter).")
    run = read_run(run_dir)
    trust = ModelTrust(remote_code=trust_remote_code, pickle_weights=allow_pickle_weights)
    method, template = run["plan"]["method"]["value"], run["plan"]["template"]["value"]
    saved = run_dir / ("model" if method in ("full", "freeze") else "adapter")
    if not saved.is_dir():
        raise InferenceError(f"{run_dir}: the run has not finished (no {saved.name}/ folder); resume it with "
                             f"`trainkit train ... --output {run_dir} --resume` first.")
    base_dir = Path(run["model"])
    if (base or (method not in ("full", "freeze") and merged is None)) and not (base_dir / "config.json").is_file():
        raise InferenceError(f"{run_dir}: its base model {base_dir} is gone (no config.json); put it back, or merge the "
                             "adapter where the base is (`trainkit merge --base DIR`) and pass --merged.")
    quiet_transformers()
    tokenizer = load_tokenizer(saved, trust)
    prepare_tokenizer(tokenizer, template)
    device = _device()
    if merged is not None:
        model, answers_with = _load_causal_lm(Path(merged), "--merged", trust, device), f"merged model {merged}"
    elif base:
        model, answers_with = _load_causal_lm(base_dir, "base model", trust, device), f"base model {base_dir}"
    elif method in ("full", "freeze"):
        model, answers_with = _load_causal_lm(saved, "model", trust, device), f"model {saved}"
    else:
        from peft import PeftModel

        refuse_pickle_weights(saved, trust, "adapter")
        four_bit = method == "qlora" and device == "cuda"  # as trained; on a CPU the base loads unquantised
        base_model = _load_causal_lm(base_dir, "base model", trust, device, four_bit)
        try:
            model = PeftModel.from_pretrained(base_model, str(saved))
        except Exception as e:  # noqa: BLE001  safetensors, peft and torch each raise their own types for a bad folder
            raise InferenceError(f"{saved}: cannot load the adapter onto {base_dir} ({type(e).__name__}: {str(e)[:300]}); "
                                 "the adapter files are damaged, or the base model is not the one it was trained on.") from None
        answers_with = f"adapter {saved}"
    model.eval()
    model.config.use_cache = True
    return Inference(model=model, tokenizer=tokenizer, template=template, max_length=int(run["plan"]["max_length"]["value"]),
                     device=device, answers_with=answers_with, run=run)


# ---- prompts -> ids ----------------------------------------------------------------------------------------


def as_prompt(prompt: Prompt | list[dict]) -> Prompt:
    return prompt if isinstance(prompt, Prompt) else Prompt(list(prompt))


def prompt_of(row: dict) -> tuple[Prompt, str | None]:
    """A datakit record (a row of `datakit.normalise.load(...).valid`) as the prompt before its final answer, and that
    answer (the reference). A record that ends on a question (no answer after its last user or tool turn) is all
    prompt, with no reference."""
    messages = [m for m in row["messages"] if m["content"] is not None]
    answered = bool(messages) and messages[-1]["role"] == "assistant"
    history, reference = (messages[:-1], messages[-1]["content"]) if answered else (messages, None)
    alpaca = row.get("format") == "alpaca" and answered
    return Prompt(history, row.get("instruction") if alpaca else None, row.get("input") if alpaca else None), reference


def prompt_segments(prompt: Prompt, template: str, tokenizer) -> list[Segment]:
    """The segments training would render before this conversation's next answer (an empty answer is rendered and
    dropped, so the generation prompt is the template's own)."""
    row = {"messages": [*prompt.messages, {"role": "assistant", "content": ""}], "input": prompt.input,
           "format": "alpaca" if prompt.instruction is not None else "messages", "instruction": prompt.instruction}
    return record_segments(row, template, tokenizer)[:-1]


def prompt_ids(inf: Inference, prompts: list[list[dict] | Prompt]) -> list[list[int]]:
    """Token ids of each prompt: the segments tokenised one by one and joined, as `tokenize.tokenize_frame` does."""
    rendered = [prompt_segments(as_prompt(p), inf.template, inf.tokenizer) for p in prompts]
    texts = [s.text for segs in rendered for s in segs]
    flat = inf.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    bos = _leading_bos(inf.tokenizer, inf.template)
    out, at = [], 0
    for segs in rendered:
        ids = [bos] if bos is not None else []
        for toks in flat[at: at + len(segs)]:
            ids += toks
        at += len(segs)
        out.append(ids)
    return out


# ---- generation --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How answers are drawn: greedy at temperature 0, else sampled with top-p."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise InferenceError(f"--max-new-tokens {self.max_new_tokens}: must be at least 1.")
        if self.temperature < 0:
            raise InferenceError(f"--temperature {self.temperature}: must be 0 (greedy) or more.")
        if not 0 < self.top_p <= 1:
            raise InferenceError(f"--top-p {self.top_p}: must be in (0, 1].")

    def options(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": None}


def stop_ids(inf: Inference) -> list[int]:
    """The tokenizer's end-of-sequence (training taught the model to emit it after each answer) and the model's own."""
    ids = [inf.tokenizer.eos_token_id]
    own = getattr(getattr(inf.model, "generation_config", None), "eos_token_id", None)
    ids += own if isinstance(own, list) else [own] if own is not None else []
    return list(dict.fromkeys(i for i in ids if i is not None))


class StopFlag:
    """A stopping criterion another thread can raise (Ctrl-C during a streamed answer stops that answer only)."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_batch(inf: Inference, batch: list[list[int]], sampling: Sampling, *, streamer=None,
                   stop: StopFlag | None = None) -> list[list[int]]:
    """New token ids for each prompt of one batch, left-padded so every prompt ends where its answer begins."""
    from transformers import StoppingCriteriaList

    pad = inf.tokenizer.pad_token_id
    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=inf.device)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=inf.device)
    out = inf.model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=sampling.max_new_tokens,
                             eos_token_id=stop_ids(inf), pad_token_id=pad, streamer=streamer,
                             stopping_criteria=StoppingCriteriaList([stop]) if stop else None, **sampling.options())
    answers = []
    ends = set(stop_ids(inf)) | {pad}
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in ends), len(row))
        answers.append(row[:cut])
    return answers


def generate_ids(inf: Inference, prompts: list[list[dict] | Prompt], *, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, batch_size: int = 8, progress: bool = True) -> list[list[int]]:
    """The new token ids answering each prompt, in the prompts' order (end-of-sequence and padding cut off).

    Prompts are batched longest first (little padding); the seed is set once, so the same call gives the same
    answers. `progress` shows a bar with records/s on stderr."""
    from transformers import set_seed

    from datakit.progress import Stages

    sampling = Sampling(max_new_tokens, temperature, top_p)
    sampling.check()
    if batch_size < 1:
        raise InferenceError(f"--batch-size {batch_size}: must be at least 1.")
    ids = prompt_ids(inf, prompts)
    answers: list[list[int]] = [[] for _ in ids]
    set_seed(seed)
    with Stages(enabled=progress) as stages:
        advance = stages.records(f"generating with the {inf.answers_with}", len(ids))
        done = 0
        for chunk in batches([len(x) for x in ids], batch_size, inf.pads):
            try:
                out = generate_batch(inf, [ids[i] for i in chunk], sampling)
            except torch.OutOfMemoryError:
                raise InferenceError(f"out of GPU memory generating {len(chunk)} prompt(s) of up to {len(ids[chunk[0]])} "
                                     f"tokens with {sampling.max_new_tokens} new tokens each; pass --batch-size "
                                     f"{max(1, len(chunk) // 2)} (or a smaller --max-new-tokens).") from None
            for i, new in zip(chunk, out):
                answers[i] = new
            done += len(chunk)
            advance(done, done)
    return answers


def batches(lengths: list[int], batch_size: int, pads: bool) -> list[list[int]]:
    """Prompt indices in batches, longest prompts first (the least padding); without padding, one length per batch."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if pads:
        return [order[s: s + batch_size] for s in range(0, len(order), batch_size)]
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < batch_size and lengths[out[-1][0]] == lengths[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def generate_answers(inf: Inference, prompts: list[list[dict] | Prompt], *, max_new_tokens: int = 256,
                     temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                     progress: bool = True) -> list[str]:
    """The model's answer to each prompt (chat messages without the answer, or `Prompt`s), in the prompts' order:
    `generate_ids` decoded."""
    new = generate_ids(inf, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                       batch_size=batch_size, progress=progress)
    return [inf.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]
