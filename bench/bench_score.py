"""Records per second of `--score-model` scoring (trainkit.score): one record per forward pass against batches of
records, in the same run, alternating, on real records.

    python bench/bench_score.py [--records 400] [--rounds 2] [--layers 2] [--hidden 64] [--threads 1]

The model is the tests' tiny random-init Qwen2 (tests/trainkit_helpers.py, built here and loaded through
`save_pretrained` / `from_pretrained` like a user's model); --layers / --hidden make it bigger. Records: the first
N of ../shared/data/llamafactory/alpaca_en_demo.json (examples/alpaca_en_sample.json when that is absent). The GPU
when there is one, else the CPU with --threads torch threads.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs (one-by-one, batched), alternating")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (1: no OpenMP spin-waiting against the "
                        "other processes of a shared machine)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from datakit.normalise import load
    from tests.trainkit_helpers import build_tokenizer
    from trainkit.score import Scorer

    source = ROOT.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"
    if not source.exists():
        source = ROOT / "examples" / "alpaca_en_sample.json"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        _build(model_dir, args.layers, args.hidden, build_tokenizer)
        data = Path(tmp) / "records.json"
        data.write_text(json.dumps(json.loads(source.read_text(encoding="utf-8"))[:args.records], ensure_ascii=False))
        frame = load(data).frame
        scorers = {"one record per pass": Scorer(model_dir, batch_tokens=1), "batched": Scorer(model_dir)}
        device = scorers["batched"].device
        print(f"{frame.height} records of {source.name}; model hidden {args.hidden}, {args.layers} layers; {device}, "
              f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}")
        print("| round | mode | seconds | records/s |\n|---|---|---:|---:|")
        rates: dict[str, list[float]] = {name: [] for name in scorers}
        scores = {}
        for r in range(1, args.rounds + 1):
            for name, scorer in scorers.items():
                start = time.perf_counter()
                scores[name] = scorer.score(frame)
                seconds = time.perf_counter() - start
                rates[name].append(frame.height / seconds)
                print(f"| {r} | {name} | {seconds:.1f} | {frame.height / seconds:.1f} |")
        one, many = scores["one record per pass"], scores["batched"]
        worst = max(abs(a - b) for a, b in zip(one["ifd"].drop_nulls(), many["ifd"].drop_nulls()))
        best = {name: max(v) for name, v in rates.items()}
        print(f"\nbest of {args.rounds}: {best['one record per pass']:.1f} -> {best['batched']:.1f} records/s "
              f"({best['batched'] / best['one record per pass']:.1f}x); largest IFD difference {worst:.2e}; "
              f"load {os.getloadavg()[0]:.1f}")


def _build(out: Path, layers: int, hidden: int, build_tokenizer) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(out)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(str(out))


if __name__ == "__main__":
    main()
