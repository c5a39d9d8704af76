"""The training plan: every hyper-parameter derived from the data and the hardware, each with the rule it came from.

The rules are the course documents' (method by GPU memory and model size, learning rate by size and
method, epochs by dataset size, effective batch 16-32, max length covering p99, LoRA r=8 / alpha=16 /
dropout 0.05); where the documents say nothing (models under 7B, prompt-learning methods), the
reason says what was chosen instead. A value the user set wins and its reason says so.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from trainkit.model_info import ModelInfo, inspect_model, minimal_targets, parameter_count

METHODS = ("lora", "qlora", "dora", "loha", "lokr", "ia3", "prefix", "prompt", "full", "freeze")
PROMPT_LEARNING = ("prefix", "prompt")
GIB = 2**30

# Learning rates the documents give per model size (billions of parameters): full, LoRA, QLoRA.
LR_TABLE = {7: (1e-5, 5e-5, 1e-4), 13: (5e-6, 3e-5, 5e-5), 70: (1e-6, 1e-5, 3e-5)}
# Not in the documents: peft's own examples' learning rates for methods with few, non-matrix parameters.
OTHER_LR = {"ia3": 3e-3, "prefix": 1e-2, "prompt": 3e-2}

# Memory model for planning (bytes): weights per parameter, and activations per token per layer per hidden
# unit (bf16, sdpa, LoRA, no checkpointing; 52 fits the 7B probe on the H100: 8K tokens -> ~42 GiB).
WEIGHT_BYTES = {"full": 16.0, "qlora": 0.6}  # full: bf16 weights + fp32 grads, Adam moments and master copy
ACTIVATION_BYTES = 52
CHECKPOINTED_ACTIVATION_BYTES = 4
HEADROOM = 0.85  # share of GPU memory the plan lets itself use


class Choice(BaseModel):
    value: Any
    reason: str


class LengthStats(BaseModel):
    p50: int
    p90: int
    p99: int
    max: int
    mean: float


class TrainPlan(BaseModel):
    """What `trainkit train` will do, and why. `trainkit plan` prints it; `train` uses it unless overridden."""

    data: str
    model: ModelInfo
    records: int = Field(description="Records with something to train on.")
    device: str
    gpu_mem_gib: float | None
    processes: int = Field(1, description="Processes (GPUs) training together, each on its own share of every batch.")
    token_lengths: LengthStats
    method: Choice
    learning_rate: Choice
    scheduler: Choice
    warmup_ratio: Choice
    epochs: Choice
    effective_batch: Choice
    micro_batch: Choice
    grad_accum: Choice
    max_length: Choice
    packing: Choice
    precision: Choice
    gradient_checkpointing: Choice
    lora: Choice
    target_modules: Choice
    template: Choice
    steps_per_epoch: int
    total_steps: int
    over_length: list[tuple[int, int]] = Field(default_factory=list, description="(line, tokens) of records over max_length.")
    skipped: list[tuple[int, str]] = Field(default_factory=list, description="(line, why) of records with nothing to train on.")
    warnings: list[str] = Field(default_factory=list)

    @property
    def global_batch_rows(self) -> int:
        """Rows per optimizer step over all processes: micro-batch x gradient accumulation x processes."""
        return self.micro_batch.value * self.grad_accum.value * self.processes


def _given(value: Any, flag: str) -> Choice:
    return Choice(value=value, reason=f"set by {flag}")


def length_stats(lengths: list[int]) -> LengthStats:
    s = sorted(lengths) or [0]
    q = lambda p: s[max(0, math.ceil(p * len(s)) - 1)]
    return LengthStats(p50=q(0.5), p90=q(0.9), p99=q(0.99), max=s[-1], mean=round(sum(s) / len(s), 1))


def choose_method(params: int, gpu_mem_gib: float | None, records: int) -> tuple[Choice, list[str]]:
    """Documents: 80 GB+ full possible, 24 GB+ LoRA, 12-16 GB QLoRA, less a smaller model; <100 samples
    few-shot LoRA, 100-10K LoRA/QLoRA. The byte counts turn the GPU tiers into a fit test for this model."""
    size = f"{parameter_count(params)} parameters"
    if gpu_mem_gib is None:
        return Choice(value="lora", reason=f"no GPU: LoRA in fp32 on the CPU ({size}); practical only for small models"), []
    usable = gpu_mem_gib * HEADROOM * GIB
    lora_need, qlora_need, full_need = params * 2 * 1.1, params * WEIGHT_BYTES["qlora"] * 1.1, params * WEIGHT_BYTES["full"]
    few = records < 100
    if few and lora_need < usable:
        return Choice(value="lora", reason=f"{records} records (<100): few-shot LoRA; bf16 weights of {size} "
                      f"({lora_need / GIB:.1f} GiB) fit {gpu_mem_gib:g} GiB"), []
    if records > 10_000 and gpu_mem_gib >= 80 and full_need < usable:
        return Choice(value="full", reason=f"{records} records (>10K) and {gpu_mem_gib:g} GiB (80 GB+): full fine-tuning "
                      f"fits ({full_need / GIB:.0f} GiB for weights, gradients and Adam states)"), []
    room = 0.15 * gpu_mem_gib * GIB  # the least left for activations, optimizer states and the CUDA context
    if lora_need + room < usable:
        return Choice(value="lora", reason=f"{gpu_mem_gib:g} GiB GPU (24 GB+ tier): LoRA on bf16 weights "
                      f"({lora_need / GIB:.1f} GiB) leaves room for activations"), []
    if qlora_need + room < usable:
        return Choice(value="qlora", reason=f"{gpu_mem_gib:g} GiB GPU is too small for bf16 weights of {size} "
                      f"({lora_need / GIB:.1f} GiB) with activations: QLoRA (4-bit, {qlora_need / GIB:.1f} GiB; the 12-16 GB tier)"), []
    return (Choice(value="qlora", reason=f"even 4-bit weights of {size} ({qlora_need / GIB:.1f} GiB) leave too little of "
                   f"{gpu_mem_gib:g} GiB for training"),
            [f"{size} does not fit {gpu_mem_gib:g} GiB: the documents' answer is a smaller model (e.g. a 1.5B-3B one)."])


def _interpolate(billions: float, column: int) -> tuple[float, str]:
    sizes = sorted(LR_TABLE)
    if billions >= sizes[-1]:
        return LR_TABLE[sizes[-1]][column], f"the documents' {sizes[-1]}B+ value"
    if billions < sizes[0]:
        scale = min(2.0, math.sqrt(sizes[0] / max(billions, 1e-3)))
        return LR_TABLE[sizes[0]][column] * scale, (f"the documents start at 7B; smaller models take larger steps, so the "
                                                     f"7B value x{scale:.2f} (sqrt(7B/size), at most x2)")
    for lo, hi in itertools.pairwise(sizes):
        if lo <= billions <= hi:
            t = (math.log(billions) - math.log(lo)) / (math.log(hi) - math.log(lo))
            value = math.exp((1 - t) * math.log(LR_TABLE[lo][column]) + t * math.log(LR_TABLE[hi][column]))
            how = f"the documents' {lo}B value" if t == 0 else f"log-interpolated between the documents' {lo}B and {hi}B values"
            return value, how
    raise AssertionError("unreachable")


def choose_learning_rate(billions: float, method: str) -> Choice:
    """Documents: 7B full 1e-5 / LoRA 5e-5 / QLoRA 1e-4; 13B 5e-6 / 3e-5 / 5e-5; 70B+ 1e-6 / 1e-5 / 3e-5."""
    if method in OTHER_LR:
        return Choice(value=OTHER_LR[method], reason=f"{method} is not in the documents' table; peft's examples use "
                      f"{OTHER_LR[method]:g} for it")
    column = {"full": 0, "freeze": 0, "qlora": 2}.get(method, 1)
    kind = ("full fine-tuning", "LoRA", "QLoRA")[column]
    value, how = _interpolate(billions, column)
    value = float(f"{value:.2g}")
    family = "" if method in ("lora", "qlora", "full") else f" ({method} follows the {kind} column)"
    return Choice(value=value, reason=f"{kind} on a {parameter_count(int(billions * 1e9))}-parameter model: {how}{family}")


def choose_epochs(records: int) -> Choice:
    """Documents: <100 records 5-10 epochs; 100-1000: 3-5; 1000-10000: 2-3; more: 1-2. Fewer records, more epochs."""
    for low, high, most, least in ((0, 100, 10, 5), (100, 1000, 5, 3), (1000, 10_000, 3, 2), (10_000, 100_000, 2, 1)):
        if records < high:
            t = (math.log10(max(records, 1)) - math.log10(max(low, 1))) / (math.log10(high) - math.log10(max(low, 1)))
            value = round(most - t * (most - least))
            span = f"<{high}" if low == 0 else f"{low}-{high}"
            return Choice(value=value, reason=f"{records} records ({span}: {least}-{most} epochs, more for fewer records)")
    return Choice(value=1, reason=f"{records} records (>100K: 1-2 epochs; one pass is plenty)")


def choose_max_length(stats: LengthStats, max_positions: int | None) -> Choice:
    """Cover the 99th percentile of the records' token lengths, rounded up to a multiple of 64; never past the model's window."""
    value = max(64, -(-stats.p99 // 64) * 64)
    reason = f"p99 of the records' token lengths is {stats.p99} (model tokenizer, template included), rounded up to 64"
    if max_positions and value > max_positions:
        value, reason = max_positions, reason + f", capped by the model's {max_positions}-token window"
    return Choice(value=value, reason=reason)


def choose_packing(stats: LengthStats, max_length: int, method: str) -> Choice:
    if method in PROMPT_LEARNING:
        return Choice(value=False, reason=f"{method} tuning prepends virtual tokens to each sequence; it cannot share a row")
    if stats.p50 * 2 <= max_length:
        return Choice(value=True, reason=f"the median record ({stats.p50} tokens) is under half of max_length ({max_length}): "
                      "padded batches would waste about half their compute; packed rows with a block-diagonal mask do not")
    return Choice(value=False, reason=f"the median record ({stats.p50} tokens) fills most of max_length ({max_length})")


def records_per_row(stats: LengthStats, max_length: int, packing: bool) -> int:
    """About how many records a packed row holds (one when not packing)."""
    return max(1, int(max_length / max(stats.mean, 1) * 0.95)) if packing else 1


def accumulation(effective: int, rows: int, per_row: int, processes: int) -> Choice:
    """Micro-batches per optimizer step: the global batch is rows per micro-batch x accumulation x processes."""
    accum = max(1, math.ceil(effective / (rows * per_row * processes)))
    on = f" on each of {processes} processes" if processes > 1 else ""
    return Choice(value=accum, reason=f"{accum} micro-batch(es) of {rows} row(s){on} reach the effective batch of {effective} "
                  f"records (global batch: {rows} x {accum}{f' x {processes}' if processes > 1 else ''} rows)")


def choose_batch(*, records: int, stats: LengthStats, max_length: int, packing: bool, method: str, info: ModelInfo,
                 gpu_mem_gib: float | None, processes: int = 1) -> tuple[Choice, Choice, Choice, Choice]:
    """Effective batch 16-32 (documents) reached by gradient accumulation over micro-batches that fit in memory,
    on every process: each takes its own micro-batches, so more processes need less accumulation."""
    target = 16 if records < 1000 else 32
    effective = max(1, min(target, records))
    per_row = records_per_row(stats, max_length, packing)
    if gpu_mem_gib is None:
        budget_tokens, why, checkpointing = 4 * max_length, "CPU: 4 rows of max_length per micro-batch", False
    else:
        weights = info.params * WEIGHT_BYTES.get(method, 2.0)
        free = gpu_mem_gib * HEADROOM * GIB - weights
        per_token = ACTIVATION_BYTES * info.hidden_size * info.num_layers
        budget_tokens = int(max(free, 0) / per_token)
        checkpointing = budget_tokens < max_length
        if checkpointing:
            budget_tokens = int(max(free, 0) / (CHECKPOINTED_ACTIVATION_BYTES * info.hidden_size * info.num_layers))
        why = (f"{gpu_mem_gib:g} GiB x {HEADROOM} minus {weights / GIB:.1f} GiB of weights leaves room for about "
               f"{budget_tokens} tokens of activations{' with gradient checkpointing' if checkpointing else ''}")
    rows = max(1, min(budget_tokens // max_length, math.ceil(effective / (per_row * processes))))
    unit = f"rows of up to {max_length} tokens (about {per_row} records each)" if packing else f"records padded to at most {max_length}"
    gc = Choice(value=checkpointing, reason=("one row of max_length does not fit without it" if checkpointing else
                                             "activations fit without it (it costs about 30% speed)"))
    return (Choice(value=effective, reason=f"documents: 16-32 ({target} for {'<' if records < 1000 else '>='}1000 records"
                   f"{', capped by the record count' if effective < target else ''}), per optimizer step across all processes"),
            Choice(value=rows, reason=f"{rows} {unit} per micro-batch{' and process' if processes > 1 else ''}: {why}"),
            accumulation(effective, rows, per_row, processes),
            gc)


def choose_targets(info: ModelInfo, targets: str) -> Choice:
    if targets == "minimal":
        return Choice(value=minimal_targets(info.linear_modules), reason="--targets minimal: query and value projections only")
    return Choice(value=info.linear_modules, reason="all linear projections in the decoder layers, detected from the model "
                  "(the documents' default; --targets minimal for q/v only)")


def make_plan(*, data: str, info: ModelInfo, lengths: list[int], lines: list[int], template: Choice,
              gpu_mem_gib: float | None, skipped: list[tuple[int, str]] | None = None, method: str | None = None,
              learning_rate: float | None = None, epochs: float | None = None, max_length: int | None = None,
              effective_batch: int | None = None, micro_batch: int | None = None, packing: bool | None = None,
              gradient_checkpointing: bool | None = None, targets: str = "all", lora_r: int = 8, lora_dropout: float = 0.05,
              max_steps: int | None = None, processes: int = 1) -> TrainPlan:
    """The plan for tokenised records of known lengths (`plan` below reads and tokenises them first), for `processes`
    data-parallel processes (GPUs)."""
    if method is not None and method not in METHODS:
        raise ValueError(f"--method {method}: unknown; choose one of {', '.join(METHODS)}.")
    if not lengths:
        raise ValueError(f"{data}: no record has anything to train on (no valid record with an assistant answer).")
    stats = length_stats(lengths)
    records = len(lengths)
    warnings: list[str] = []
    if method:
        m = _given(method, "--method")
    else:
        m, warnings = choose_method(info.params, gpu_mem_gib, records)
    ml = _given(max_length, "--max-length") if max_length else choose_max_length(stats, info.max_positions)
    over = [(line, n) for line, n in zip(lines, lengths) if n > ml.value]
    fit = [n for n in lengths if n <= ml.value]
    pk = _given(packing, "--packing/--no-packing") if packing is not None else choose_packing(stats, ml.value, m.value)
    fit_stats = length_stats(fit or [1])
    eff, mb, ga, gc = choose_batch(records=len(fit) or 1, stats=fit_stats, max_length=ml.value, packing=pk.value,
                                   method=m.value, info=info, gpu_mem_gib=gpu_mem_gib, processes=processes)
    if effective_batch:
        eff = _given(effective_batch, "--effective-batch")
    if micro_batch:
        mb = _given(micro_batch, "--micro-batch")
    if effective_batch or micro_batch:
        ga = accumulation(eff.value, mb.value, records_per_row(fit_stats, ml.value, pk.value), processes)
    if gradient_checkpointing is not None:
        gc = _given(gradient_checkpointing, "--gradient-checkpointing")
    ep = _given(epochs, "--epochs") if epochs else choose_epochs(records)
    lr = _given(learning_rate, "--lr") if learning_rate else choose_learning_rate(info.billions, m.value)
    rows = _estimate_rows(fit, ml.value, pk.value)
    steps_per_epoch = max(1, math.ceil(rows / (mb.value * ga.value * processes)))
    total = max_steps or max(1, math.ceil(steps_per_epoch * ep.value))
    warm = Choice(value=0.1 if total < 100 else 0.05, reason=f"documents: warmup 5-10% of steps; "
                  f"{'10% for a short run' if total < 100 else '5%'} of {total} steps")
    if over:
        warnings.append(f"{len(over)} record(s) exceed max_length {ml.value} and are left out of training (not truncated): "
                        f"lines {', '.join(str(line) for line, _ in over[:10])}{' ...' if len(over) > 10 else ''}. "
                        f"Raise --max-length to {max(n for _, n in over)} to keep them.")
    if m.value == "qlora" and gpu_mem_gib is None:
        warnings.append("QLoRA without a GPU: bitsandbytes runs 4-bit on the CPU, slowly; use it for testing only.")
    cuda = gpu_mem_gib is not None
    return TrainPlan(
        data=data, model=info, records=records, device="cuda" if cuda else "cpu", gpu_mem_gib=gpu_mem_gib, processes=processes,
        token_lengths=stats, method=m, learning_rate=lr,
        scheduler=Choice(value="cosine", reason="documents: cosine decay after warmup"), warmup_ratio=warm, epochs=ep,
        effective_batch=eff, micro_batch=mb, grad_accum=ga, max_length=ml, packing=pk,
        precision=Choice(value="bf16" if cuda else "fp32", reason=_precision_reason(cuda, m.value)),
        gradient_checkpointing=gc,
        lora=Choice(value={"r": lora_r, "alpha": 2 * lora_r, "dropout": lora_dropout},
                    reason=f"documents: rank {lora_r}, alpha 2x rank, dropout 0.05"
                    + ("" if lora_dropout == 0.05 else f" (dropout {lora_dropout:g} set by --lora-dropout)")),
        target_modules=choose_targets(info, targets), template=template, steps_per_epoch=steps_per_epoch,
        total_steps=total, over_length=over, skipped=skipped or [], warnings=warnings,
    )


def _precision_reason(cuda: bool, method: str) -> str:
    if not cuda:
        return "fp32 on the CPU (bf16 matmuls there are slow and inexact)"
    if method in ("full", "freeze"):
        return "bf16 autocast on the GPU; the trained weights stay fp32 so Adam's small updates are not rounded away"
    return "bf16 on the GPU: frozen weights stored in bf16 (4-bit for QLoRA, computing in bf16), adapters in fp32"


def _estimate_rows(lengths: list[int], max_length: int, packing: bool) -> int:
    if not packing:
        return len(lengths)
    from trainkit.packing import pack_rows

    return len(pack_rows(lengths, max_length))


def detect_gpu_mem_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)


def plan(data: str | Path, model_dir: str | Path, gpu_mem_gib: float | None = None, method: str | None = None, *,
         template: str = "auto", label_field: str | None = None, trust_remote_code: bool = False,
         **overrides: Any) -> TrainPlan:
    """Read and tokenise DATA with the model's own tokenizer, then plan. `overrides` are `make_plan`'s settings
    (learning_rate, epochs, max_length, effective_batch, micro_batch, packing, targets, lora_r, lora_dropout, max_steps,
    processes). The model folder's own code runs only with `trust_remote_code` (see trainkit.trust)."""
    from trainkit.data import read_dataset
    from trainkit.model import load_tokenizer
    from trainkit.tokenize import tokenize_frame
    from trainkit.trust import ModelTrust

    trust = ModelTrust(remote_code=trust_remote_code)
    info = inspect_model(model_dir, trust)
    frame = read_dataset(data, label_field)
    tok = tokenize_frame(frame, load_tokenizer(model_dir, trust), template)
    mem = gpu_mem_gib if gpu_mem_gib is not None else detect_gpu_mem_gib()
    return make_plan(data=str(data), info=info, lengths=tok.lengths, lines=[e.line for e in tok.examples],
                     template=Choice(value=tok.template, reason=tok.template_reason), gpu_mem_gib=mem,
                     skipped=tok.skipped, method=method, **overrides)
