"""Tiny models for the trainkit tests: a BPE tokenizer trained here on the bundled samples, a random-init Qwen2.

Both are saved with `save_pretrained` and loaded back through the same path a user's model takes; the
`tiny_model` / `tiny_model_no_chat` fixtures in tests/conftest.py build them once per session.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import EXAMPLES

# Tiny models on 2 shared cores: one thread avoids OpenMP spin-waiting against other processes (about 5x faster
# here), for this process and for the CLI subprocesses `run_cli` starts (they inherit the environment).
os.environ["OMP_NUM_THREADS"] = "1"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def sample_texts() -> list[str]:
    texts = []
    for name in ("alpaca_en_sample.json", "alpaca_zh_sample.json", "sharegpt_sample.json", "identity.json"):
        for rec in json.loads((EXAMPLES / name).read_text(encoding="utf-8")):
            texts += [str(v) for v in rec.values() if isinstance(v, str)]
            texts += [t.get("value", "") for t in rec.get("conversations", []) if isinstance(t, dict)]
    return texts + ["### Instruction:", "### Input:", "### Response:", "### 指令:", "### 输入:", "### 回答:"]


def build_tokenizer(out: Path, chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sample_texts(), trainers.BpeTrainer(vocab_size=1024, special_tokens=SPECIALS,
                                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE if chat_template else None)
    fast.save_pretrained(str(out))
    return AutoTokenizer.from_pretrained(str(out), local_files_only=True)


def build_model(out: Path, chat_template: bool = True, layers: int = 2) -> Path:
    """A random-init Qwen2 (hidden 64, `layers` layers) with the locally trained tokenizer, saved to `out`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.set_num_threads(1)
    tokenizer = build_tokenizer(out, chat_template)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(str(out))
    return out


def alpaca_sample(n: int) -> list[dict]:
    """The first n records of the bundled English Alpaca sample: real instructions of mixed lengths, for packing."""
    return json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8"))[:n]


def identity_records(n: int) -> list[dict]:
    """Short real records (LLaMA-Factory's identity set): quick to train on, and the model can learn them."""
    return json.loads((EXAMPLES / "identity.json").read_text(encoding="utf-8"))[:n]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def fsdp2_gradients_match(model_dir: Path) -> bool:
    """On each process torchrun started: trainkit's loss on packed rows gives the same gradients on the model
    sharded by accelerate's FSDP2 wrapping as on the whole model. accelerate shards only on GPUs, so its wrapping
    function is called directly, with the few accelerator attributes it reads."""
    from types import SimpleNamespace

    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    from transformers import AutoModelForCausalLM

    from trainkit.loss import loss_sum
    from trainkit.packing import RowCollator
    from trainkit.tokenize import IGNORE, Example

    torch.distributed.init_process_group("gloo")
    ids = torch.randint(5, 900, (80,), generator=torch.Generator().manual_seed(1)).tolist()

    def record(tokens: list[int], prompt: int) -> Example:
        return Example(tokens, [IGNORE] * prompt + tokens[prompt:], line=1)

    rows = [[record(ids[0:25], 5), record(ids[25:40], 3)], [record(ids[40:65], 5), record(ids[65:80], 3)]]  # packed
    batch = RowCollator(pad_id=0)(rows)
    whole = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="sdpa")
    loss_sum(whole, batch, attn_implementation="sdpa", direct_head=True).backward()
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), torch_device_mesh=None, parallelism_config=None,
                                  mixed_precision="no", device=torch.device("cpu"))
    sharded = fsdp2_prepare_model(accelerator, AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="sdpa"))
    loss_sum(sharded, batch, attn_implementation="sdpa", direct_head=True).backward()
    grads = dict(whole.named_parameters())
    match = all(torch.allclose(p.grad.full_tensor(), grads[name].grad, atol=1e-5) for name, p in sharded.named_parameters())
    torch.distributed.destroy_process_group()
    return match


if __name__ == "__main__":  # torchrun ... -m tests.trainkit_helpers MODEL_DIR
    import sys

    if not fsdp2_gradients_match(Path(sys.argv[1])):
        sys.exit("FSDP2 gradients differ from the unsharded model's")
    print("FSDP2 gradients match")


SYSTEM = "You are a careful assistant."


def identity_with_system(n: int) -> list[dict]:
    """Identity records as OpenAI messages, most with one system prompt (the run's system prompt), a few multi-turn."""
    records = []
    for i, r in enumerate(identity_records(n)):
        messages = [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
        if i % 5 == 1:
            messages += [{"role": "user", "content": "And again?"}, {"role": "assistant", "content": r["output"]}]
        records.append({"messages": ([{"role": "system", "content": SYSTEM}] if i % 4 else []) + messages})
    return records


def train_tiny_run(model, folder, records):
    """A real `trainkit.train` run, cheap settings: the folder a user would point generate/chat at."""
    from trainkit import train

    data = write_jsonl(folder / "train.jsonl", records)
    return train(data, model, folder / "run", method="lora", max_steps=6, learning_rate=2e-2, progress=False).run_dir
