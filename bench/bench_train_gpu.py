"""GPU throughput of trainkit's training step, to compare with ../shared/tools/hf_baseline.py in the same device call.

Same workload as the baseline: a Qwen2 of the 1.5B or 7B shape (random init, saved to /tmp and loaded
back through `from_pretrained`), sequences of Alpaca-like lognormal length (the baseline's generator,
seed and clamp), LoRA r=8 / alpha 16 / dropout 0.05 on q/v, lr 5e-5, bf16. What trainkit changes:
records packed into rows of ROW tokens with a block-diagonal mask (sdpa) or a BlockMask (flex_attention),
the loss computed in chunks (no full fp32 logits), QLoRA without peft's fp32 upcast.

Before timing, each case checks on the GPU that packed logits equal per-record logits (bf16 noise).
Prints one JSON line per case: real (non-pad) tokens/s, padding share, peak GiB.

    SIZE=1.5b STEPS=15 python3 bench/bench_train_gpu.py lora:sdpa lora:flex_attention qlora:sdpa
    SIZE=7b STEPS=15 python3 bench/bench_train_gpu.py lora:sdpa qlora:sdpa:gc

A case is METHOD:ATTENTION[:gc]; `gc` turns on gradient checkpointing (needed for 7B QLoRA under 24 GiB).
Environment: SIZE (0.5b | 1.5b | 7b; `tiny` runs on the CPU as a smoke test of this script), STEPS (timed
steps, default 15), WARM (untimed first steps, default 3), ROW (tokens per packed row, default 8192).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = {
    "0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2},
    "1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2},
    "7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
}
SIZE = os.environ.get("SIZE", "1.5b")
STEPS, WARM = int(os.environ.get("STEPS", "15")), int(os.environ.get("WARM", "3"))
ROW = int(os.environ.get("ROW", "8192" if SIZE != "tiny" else "1024"))
CUDA = torch.cuda.is_available()
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}


def config():
    from transformers import Qwen2Config

    vocab = 151936 if SIZE != "tiny" else 1024
    return Qwen2Config(vocab_size=vocab, max_position_embeddings=max(4096, ROW), tie_word_embeddings=False, **SHAPES[SIZE])


def saved_model() -> Path:
    """Random-init weights in bf16, saved once (the baseline's /tmp/rand-SIZE is reused when it exists)."""
    from transformers import Qwen2ForCausalLM

    path = Path(f"/tmp/rand-{SIZE}")
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        Qwen2ForCausalLM(config()).to(torch.bfloat16).save_pretrained(str(path))
    return path


def sequences(n_records: int, vocab: int) -> list:
    """The baseline's lengths and tokens: lognormal(5.0, 0.6) clamped to 16..1024, one generator seeded 0."""
    from trainkit.tokenize import Example

    g = torch.Generator().manual_seed(0)
    lens = torch.exp(torch.randn(n_records, generator=g) * 0.6 + 5.0).clamp(16, 1024).long()
    out = []
    for i, n in enumerate(lens.tolist()):
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        out.append(Example(ids, ids, line=i + 1))  # every token trained, as in the baseline
    return out


def packing_error(model, examples, attn: str) -> float:
    """Largest relative logit error of packed records against each run alone, on this GPU, in bf16."""
    from trainkit.packing import RowCollator, document_mask

    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in RowCollator(pad_id=0, pad_to_multiple_of=128)([examples]).items()}
    worst, at = 0.0, 0
    with torch.no_grad():
        mask = document_mask(batch["document_ids"], attn, torch.bfloat16)
        packed = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).logits[0].float()
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex.input_ids], device=device)).logits[0].float()
            part = packed[at:at + len(ex)]
            worst = max(worst, float((part - alone).norm() / alone.norm()))
            at += len(ex)
    return worst


def run(case: str) -> dict:
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from trainkit.model import load_model, wrap
    from trainkit.monitor import Throughput
    from trainkit.packing import RowCollator, pack_rows
    from trainkit.train import RowsDataset, SFTTrainer

    method, attn, *flags = case.split(":")
    checkpointing = "gc" in flags
    precision = "bf16" if CUDA else "fp32"
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = load_model(saved_model(), method=method, precision=precision, attn_implementation=attn)
    if CUDA and method != "qlora":
        model = model.cuda()
    records = sequences(int((STEPS + WARM + 2) * ROW / 150), model.config.vocab_size)
    check = packing_error(model, records[:6], attn)
    model = wrap(model, method, lora=LORA, target_modules=["q_proj", "v_proj"], linear_modules=[])
    rows = [[records[i] for i in row] for row in pack_rows([len(e) for e in records], ROW)][: STEPS + WARM]

    class Clock(TrainerCallback):
        start = None
        tokens_at_start = 0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == WARM:
                if CUDA:
                    torch.cuda.synchronize()
                self.start, self.tokens_at_start = time.perf_counter(), throughput.tokens

    throughput, clock = Throughput(), Clock()
    args = TrainingArguments(output_dir=f"/tmp/trainkit-bench-{method}", per_device_train_batch_size=1, max_steps=STEPS + WARM,
                             learning_rate=5e-5, bf16=CUDA, use_cpu=not CUDA, logging_steps=1000, save_strategy="no", report_to=[],
                             dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, seed=0,
                             activation_checkpointing=checkpointing, activation_checkpointing_kwargs={"use_reentrant": False})
    trainer = SFTTrainer(model=model, args=args, train_dataset=RowsDataset(rows), callbacks=[clock], throughput=throughput,
                         data_collator=RowCollator(pad_id=0, pad_to_multiple_of=ROW if attn == "flex_attention" else 64),
                         loss_options={"attn_implementation": attn, "direct_head": True})
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if CUDA:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - clock.start
    real = throughput.tokens - clock.tokens_at_start
    out = {"size": SIZE, "method": method, "attention": attn, "gradient_checkpointing": checkpointing, "row_tokens": ROW,
           "steps": STEPS, "real_tok_s": round(real / seconds), "pad_waste": round(1 - throughput.tokens / throughput.padded, 3),
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None,
           "packed_vs_alone_rel_err": float(f"{check:.3g}")}
    del trainer, model
    if CUDA:
        torch.cuda.empty_cache()
    return out


def main() -> None:
    if SIZE not in SHAPES:
        sys.exit(f"SIZE={SIZE}: choose one of {', '.join(SHAPES)}.")
    if not CUDA and SIZE != "tiny":
        print("skipped: no CUDA device here. Run it on the GPU machine (SIZE=tiny smoke-tests it on the CPU).")
        return
    import peft
    import transformers

    from trainkit.model import quiet_transformers

    quiet_transformers()
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                      "gpu": torch.cuda.get_device_name() if CUDA else "cpu"}), flush=True)
    for case in sys.argv[1:] or ["lora:sdpa", "lora:flex_attention", "qlora:sdpa"]:
        try:
            print(json.dumps(run(case)), flush=True)
        except Exception as e:  # noqa: BLE001  one case failing (e.g. out of memory) must not hide the others' numbers
            print(json.dumps({"size": SIZE, "case": case, "error": repr(e)[:800]}), flush=True)


if __name__ == "__main__":
    main()
