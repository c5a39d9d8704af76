"""Tokens/s of trainkit's generation (trainkit/generate.py): batched (left-padded, longest first) against one prompt at
a time, in the same process on the same model, so the ratio is free of machine noise between runs.

The model is a random-init Qwen2 of the chosen shape (saved once and loaded back through `from_pretrained`) with a
fresh LoRA adapter on q/v (peft's generate path, as `trainkit chat` / `generate` use it), the tokenizer the tests
train on the bundled samples, prompts the first N instructions of examples/alpaca_en_sample.json rendered through the
chat template. Greedy; a random model rarely stops, so nearly every answer is NEW tokens long. Prints one JSON line per
mode and a summary line with the ratio and how many greedy answers agree between the two modes.

    SIZE=tiny N=16 NEW=32 BATCH=8 python bench/bench_generate.py          # CPU
    SIZE=1.5b N=64 NEW=128 BATCH=32 python bench/bench_generate.py        # GPU (bf16)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_train_gpu import SHAPES

SIZE = os.environ.get("SIZE", "tiny")
N, NEW, BATCH = int(os.environ.get("N", "16")), int(os.environ.get("NEW", "32")), int(os.environ.get("BATCH", "8"))
CUDA = torch.cuda.is_available()


def saved_model() -> Path:
    """Tokenizer + random-init weights, saved once per shape (bf16 on the GPU)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.trainkit_helpers import build_tokenizer

    path = Path(f"/tmp/rand-gen-{SIZE}")
    if not (path / "config.json").is_file():
        tokenizer = build_tokenizer(path)
        vocab = len(tokenizer) if SIZE == "tiny" else 151936  # the real vocabulary's output layer cost
        config = Qwen2Config(vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SHAPES[SIZE])
        torch.manual_seed(0)
        Qwen2ForCausalLM(config).to(torch.bfloat16 if CUDA else torch.float32).save_pretrained(str(path))
    return path


def inference(path: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainkit.generate import Inference, _device, _dtype
    from trainkit.model import load_tokenizer
    from trainkit.tokenize import prepare_tokenizer

    device = _device()
    tokenizer = load_tokenizer(path)
    prepare_tokenizer(tokenizer, "chat")
    base = AutoModelForCausalLM.from_pretrained(str(path), dtype=_dtype(device)).to(device)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).eval()
    model.config.use_cache = True
    return Inference(model=model, tokenizer=tokenizer, template="chat", max_length=4096, device=device,
                     answers_with=f"random {SIZE} Qwen2 + LoRA", run={})


def timed(inf, prompts, batch_size: int) -> tuple[dict, list[list[int]]]:
    from trainkit.generate import generate_ids

    if CUDA:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    new = generate_ids(inf, prompts, max_new_tokens=NEW, batch_size=batch_size, progress=False)
    if CUDA:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(len(ids) for ids in new)
    row = {"mode": "batched" if batch_size > 1 else "one_by_one", "batch_size": batch_size, "prompts": len(prompts),
           "new_tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
           "records_per_s": round(len(prompts) / seconds, 2)}
    if CUDA:
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row, new


def main() -> None:
    from tests.conftest import EXAMPLES

    torch.set_num_threads(int(os.environ.get("THREADS", str(torch.get_num_threads()))))
    records = json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8"))[:N]
    prompts = [[{"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")}] for r in records]
    inf = inference(saved_model())
    timed(inf, prompts[: min(BATCH, len(prompts))], BATCH)  # warm-up: kernels, allocator, caches
    batched, a = timed(inf, prompts, BATCH)
    single, b = timed(inf, prompts, 1)
    for row in (batched, single):
        print(json.dumps({"size": SIZE, "device": torch.cuda.get_device_name() if CUDA else "cpu", **row}))
    agree = sum(x == y for x, y in zip(a, b))
    print(json.dumps({"size": SIZE, "batched_over_one_by_one": round(batched["tokens_per_s"] / single["tokens_per_s"], 2),
                      "greedy_answers_identical": f"{agree}/{len(a)}"}))


if __name__ == "__main__":
    main()
