"""The training run, in order: audit gate (which reads the data) -> split -> tokenise -> plan -> load -> wrap -> train -> save -> report.

transformers' Trainer owns the loop, the cosine schedule, gradient accumulation, checkpoints (every N
steps, last K kept), exact resumption (optimizer, scheduler, RNG and data position) and distributed
launch through accelerate/torchrun (each process gets its own share of every global batch); this module
owns what it does not do: the loss on assistant tokens with per-class weights, packed rows with their
masks, the plan, the diagnoses, and, under a launcher, that only the main process writes the run folder.
"""
from __future__ import annotations

import inspect
import json
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from rich.console import Console
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from datakit.io.atomic import write_text
from schemas.dataset import BASE_SCHEMA
from trainkit.checkpoints import drop_incomplete, partial_folder, put_in_place, resume_point
from trainkit.data import holdout, normalised_weights, read_class_weights, read_dataset
from trainkit.distributed import fsdp_problem, fsdp_requested, gather, process_state, weights_sha256
from trainkit.gate import audit_gate, audit_summary
from trainkit.loss import loss_sum
from trainkit.model import layerwise_param_groups, load_model, load_tokenizer, quiet_transformers, virtual_tokens, wrap
from trainkit.model_info import inspect_model
from trainkit.monitor import Diagnosis, InterruptToCheckpoint, RichProgress, Throughput, oom_advice
from trainkit.packing import RowCollator, fill_to_multiple, pack_rows
from trainkit.plan import PROMPT_LEARNING, Choice, TrainPlan, detect_gpu_mem_gib, make_plan
from trainkit.report import write_data_order, write_run_report
from trainkit.tokenize import IGNORE, Example, tokenize_frame
from trainkit.trust import ModelTrust, refuse_pickle_weights

RUN_FILE = "run.json"
EARLY_STOPPING_PATIENCE = 3


class RunError(ValueError):
    """The run cannot start or go on as asked (output folder in use, nothing to resume, data changed); one line says why."""


class OutOfMemory(RunError):
    """The GPU ran out of memory; the message is the concrete plan change to try."""


@dataclass
class RunResult:
    run_dir: Path
    output_dir: Path  # the adapter (peft format) or, for full / freeze, the whole model
    steps: int
    train_loss: float | None
    eval_loss: float | None
    interrupted: bool
    report: Path
    diagnoses: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # which data to add (trainkit.advice), from the eval per label / length
    model: Any = field(default=None, repr=False)  # the trained model in memory (PeftModel, or the model for full / freeze)


class RowsDataset(torch.utils.data.Dataset):
    """Rows of examples (a packed row, or one example when not packing); `RowCollator` batches them."""

    def __init__(self, rows: list[list[Example]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[Example]:
        return self.rows[i]


class SFTTrainer(Trainer):
    """Trainer whose loss is `trainkit.loss.loss_sum` over the target tokens of the whole accumulated batch.

    The Trainer counts those tokens across the accumulation steps (`num_items_in_batch`, from `shift_labels`),
    so every token weighs the same however the records fall into micro-batches.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args, loss_options: dict, throughput: Throughput, param_groups: list[dict] | None = None, **kwargs):
        self.loss_options, self.throughput, self.param_groups = loss_options, throughput, param_groups
        self.data_order: list[tuple[int, list[int]]] = []  # (optimizer step, source lines of the records this process trained on)
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # makes the Trainer count target tokens for `num_items_in_batch`

    def create_optimizer(self, model=None):
        if self.param_groups is None or self.optimizer is not None:
            return super().create_optimizer(model) if model is not None else super().create_optimizer()
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
        self.optimizer = cls(self.param_groups, **kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.throughput.tokens += int(inputs["attention_mask"].sum())
            self.throughput.padded += inputs["attention_mask"].numel()
            self.data_order.append((self.state.global_step + 1, [line for row in inputs["record_lines"] for line in row]))
        total = loss_sum(model, inputs, **self.loss_options)
        count = num_items_in_batch if num_items_in_batch is not None else (inputs["shift_labels"] != IGNORE).sum()
        loss = total / torch.clamp(torch.as_tensor(count, device=total.device), min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count was global
        return (loss, {}) if return_outputs else loss


# ---- the story, step by step ------------------------------------------------------------------------------


def prepare_run_dir(output: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None for a fresh run, or a resumed one stopped before its first checkpoint:
    it starts again with its saved settings); refuses to write a fresh run over an existing one. Checkpoints a killed
    run left half-written are removed, never resumed from."""
    checkpoints = output / "checkpoints"
    if resume:
        if not (output / RUN_FILE).is_file():
            raise RunError(f"--resume: {output} holds no run to continue (none was started there, or it stopped before "
                           "its plan was saved); start a fresh run without --resume.")
        drop_incomplete(checkpoints)
        return resume_point(checkpoints)
    if (output / RUN_FILE).is_file() or (checkpoints.is_dir() and any(checkpoints.iterdir())):
        raise RunError(f"--output {output}: already holds a run; pass --resume to continue it, or choose another folder.")
    output.mkdir(parents=True, exist_ok=True)
    return None


def split_data(train_frame: pl.DataFrame, eval_data: Path | None, label_field: str | None, seed: int, groups):
    if eval_data is not None:
        return train_frame, read_dataset(eval_data, label_field), f"eval records from --eval {eval_data}"
    return holdout(train_frame, seed, groups)


def fitting(examples: list[Example], max_length: int) -> list[Example]:
    """Records within max_length; the plan has already listed the others (they are left out, never truncated)."""
    return [e for e in examples if len(e) <= max_length]


def check_fsdp(method: str, cuda: bool, console: Console) -> None:
    """Refuse an FSDP launch that cannot train this method; say that on CPUs accelerate trains without it."""
    if not fsdp_requested():
        return
    if not cuda:
        console.print("[yellow]note:[/] FSDP asked for, but accelerate shards only on GPUs: on this CPU machine every "
                      "process holds the whole model (plain data parallelism).", highlight=False)
        return
    problem = fsdp_problem(method)
    if problem:
        raise RunError(problem)


def build_rows(examples: list[Example], max_length: int, packing: bool) -> list[list[Example]]:
    if not packing:
        return [[e] for e in examples]
    return [[examples[i] for i in row] for row in pack_rows([len(e) for e in examples], max_length)]


def weights_precision(method: str, precision: str) -> str:
    """Trained full weights stay fp32 (bf16 autocast computes): Adam updates on bf16 weights round away. Frozen
    weights are stored at the plan's precision."""
    return "fp32" if method in ("full", "freeze") else precision


def choose_attention(requested: str | None, cuda: bool) -> str:
    """sdpa unless asked: it honours the 4D block-diagonal mask on every device (flex_attention is opt-in on CUDA)."""
    if requested is None:
        return "sdpa"
    if requested not in ("sdpa", "eager", "flex_attention"):
        raise RunError(f"--attention {requested}: choose sdpa, eager or flex_attention.")
    return requested


def direct_head_ok(model, method: str, info_softcap: bool) -> bool:
    """Whether the chunked loss may apply the output layer itself (the model takes `logits_to_keep`, does nothing
    to logits after it, and its output layer is a plain linear one whose weights the loss can use)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (method not in PROMPT_LEARNING and not info_softcap and isinstance(base.get_output_embeddings(), torch.nn.Linear)
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


def eval_interval(save_steps: int, total_steps: int) -> int:
    """About ten evaluations a run, at a step count that divides save_steps (so the best checkpoint exists)."""
    target = max(1, total_steps // 10)
    return max(d for d in range(1, save_steps + 1) if save_steps % d == 0 and d <= target)


def training_arguments(plan: TrainPlan, run_dir: Path, *, has_eval: bool, save_steps: int, keep_checkpoints: int,
                       seed: int, max_steps: int | None) -> TrainingArguments:
    total = plan.total_steps
    cuda = plan.device == "cuda"
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"), seed=seed, data_seed=seed,
        per_device_train_batch_size=plan.micro_batch.value, per_device_eval_batch_size=plan.micro_batch.value,
        gradient_accumulation_steps=plan.grad_accum.value, learning_rate=plan.learning_rate.value,
        lr_scheduler_type=plan.scheduler.value, warmup_steps=plan.warmup_ratio.value, num_train_epochs=plan.epochs.value,
        max_steps=max_steps or -1, weight_decay=0.0, max_grad_norm=1.0,
        bf16=plan.precision.value == "bf16", use_cpu=not cuda,
        activation_checkpointing=plan.gradient_checkpointing.value, activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=max(1, total // 200), logging_first_step=True,
        save_strategy="steps", save_steps=save_steps, save_total_limit=keep_checkpoints,
        eval_strategy="steps" if has_eval else "no", eval_steps=eval_interval(save_steps, total) if has_eval else None,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss" if has_eval else None, greater_is_better=False,
        prediction_loss_only=True, remove_unused_columns=False, report_to=[], disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable weight gets a gradient each step (loss.py sees to it even
                                           # for filler rows); searching for unused ones costs a graph walk per step
    )


def save_output(trainer: Trainer, tokenizer, run_dir: Path, method: str) -> Path:
    """peft adapter (adapter_model.safetensors + adapter_config.json) or, for full / freeze, the whole model. Every
    process calls it (sharded weights are gathered first); the main process writes, into a partial folder renamed
    into place once complete."""
    final = run_dir / ("model" if method in ("full", "freeze") else "adapter")
    out = partial_folder(final, trainer.args.should_save)
    trainer.save_model(str(out))
    if trainer.args.should_save:
        tokenizer.save_pretrained(str(out))
        # the Trainer's pickle of its arguments: whoever loads it runs a full unpickle; run.json has the settings
        (out / "training_args.bin").unlink(missing_ok=True)
    return put_in_place(out, final, trainer.args.should_save)


def train(data: str | Path, model: str | Path, output: str | Path, *, method: str | None = None,
          eval_data: str | Path | None = None, max_steps: int | None = None, epochs: float | None = None,
          learning_rate: float | None = None, max_length: int | None = None, effective_batch: int | None = None,
          micro_batch: int | None = None, packing: bool | None = None, gradient_checkpointing: bool | None = None,
          targets: str = "all", lora_r: int = 8, template: str = "auto", trainable_layers: int = 2,
          layer_lr_decay: float | None = None, lora_dropout: float = 0.05, label_field: str | None = None,
          class_weights: str | Path | None = None,
          audit_config: str | Path | None = None, allow_findings: bool = False, resume: bool = False,
          save_steps: int = 100, keep_checkpoints: int = 3, attention: str | None = None, seed: int = 42,
          gpu_mem_gib: float | None = None, trust_remote_code: bool = False, allow_pickle_weights: bool = False,
          compare_base: int = 0, progress: bool = True, console: Console | None = None,
          callbacks: list[TrainerCallback] | None = None) -> RunResult:
    """Train an adapter on DATA. Settings left as None come from the plan (`trainkit plan` prints it).

    Under `accelerate launch` / `torchrun` every process runs this; only the main one writes files and prints."""
    quiet_transformers()
    state = process_state()
    main = state.is_main_process
    console = (console or Console(stderr=True)) if main else Console(stderr=True, quiet=True)
    run_dir = Path(output)
    data, model_dir = Path(data), Path(model)
    trust = ModelTrust(remote_code=trust_remote_code, pickle_weights=allow_pickle_weights)  # given on every run, never saved
    refuse_pickle_weights(model_dir, trust)  # before the audit and the run folder, not minutes later
    checkpoint = prepare_run_dir(run_dir, resume)
    state.wait_for_everyone()  # every process has checked the folder before the main one writes into it
    saved = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8")) if resume else None
    if saved:  # a resumed run continues with the settings it started with
        s = saved["settings"]
        method, eval_data, label_field, class_weights, template, seed = (s["method"], s["eval_data"], s["label_field"],
                                                                         s["class_weights"], s["template"], s["seed"])
        trainable_layers, layer_lr_decay, attention, max_steps = (s["trainable_layers"], s["layer_lr_decay"], s["attention"],
                                                                  s["max_steps"])
        save_steps, keep_checkpoints = s["save_steps"], s["keep_checkpoints"]

    weights_file, weights_field = read_class_weights(class_weights) if class_weights else (None, None)
    label_field = label_field or weights_field
    if weights_file and not label_field:
        raise RunError("--class-weights needs the label field: pass --label-field (the field `datakit balance --by` used).")

    # 1. audit gate (with the label field training weights by)
    audited = audit_gate(data, run_dir, audit_config=audit_config, label_field=label_field, eval_data=eval_data,
                         allow_findings=allow_findings, keep_report=main)
    report = audited.report
    if saved and saved["data_checksum"] != report.checksum:
        raise RunError(f"--resume: {data} changed since the run started (checksum {report.checksum} != "
                       f"{saved['data_checksum']}); resuming would not continue the same run. Start a new run.")

    # 2. split the audited records (not a second read of the file), 3. tokenise
    train_frame, groups = audited.dataset.valid.select(list(BASE_SCHEMA)), audited.leak_groups
    del audited  # its measurement columns (MinHash signatures, ...) are not needed while training
    train_frame, eval_frame, eval_reason = split_data(train_frame, Path(eval_data) if eval_data else None, label_field, seed,
                                                      groups)
    tokenizer = load_tokenizer(model_dir, trust)
    tok = tokenize_frame(train_frame, tokenizer, template)
    tok_eval = tokenize_frame(eval_frame, tokenizer, tok.template) if eval_frame is not None and eval_frame.height else None

    # 4. plan
    cuda = torch.cuda.is_available()
    if saved:
        the_plan = TrainPlan.model_validate(saved["plan"])
        if the_plan.processes != state.num_processes:
            raise RunError(f"--resume: the run started on {the_plan.processes} process(es) and this launch has "
                           f"{state.num_processes}; the global batch and the data order would change. Launch it with "
                           f"{the_plan.processes} process(es) again.")
    else:
        mem = (gpu_mem_gib or detect_gpu_mem_gib()) if cuda else None
        if gpu_mem_gib and not cuda:
            console.print("[yellow]note:[/] --gpu-mem ignored: no CUDA device here; planning for the CPU.")
        the_plan = make_plan(data=str(data), info=inspect_model(model_dir, trust), lengths=tok.lengths,
                             lines=[e.line for e in tok.examples], template=Choice(value=tok.template, reason=tok.template_reason),
                             gpu_mem_gib=mem, skipped=tok.skipped, method=method, learning_rate=learning_rate, epochs=epochs,
                             max_length=max_length, effective_batch=effective_batch, micro_batch=micro_batch, packing=packing,
                             gradient_checkpointing=gradient_checkpointing, targets=targets, lora_r=lora_r,
                             lora_dropout=lora_dropout, max_steps=max_steps, processes=state.num_processes)
    for warning in the_plan.warnings:
        console.print(f"[yellow]plan:[/] {warning}", highlight=False)
    ml, method = the_plan.max_length.value, the_plan.method.value
    check_fsdp(method, cuda, console)
    examples = fitting(tok.examples, ml)
    eval_examples = fitting(tok_eval.examples, ml) if tok_eval else []
    weight_of, unweighted = (normalised_weights(weights_file, [e.label for e in examples], [len(e) for e in examples])
                             if weights_file else (None, []))
    if unweighted:
        console.print(f"[yellow]class weights:[/] no weight for label(s) {', '.join(unweighted)}; they keep weight 1.")
    attn = choose_attention(attention, cuda)
    rows = build_rows(examples, ml, the_plan.packing.value)
    eval_rows = build_rows(eval_examples, ml, the_plan.packing.value)
    if main and not saved:
        settings = {"method": method, "eval_data": str(eval_data) if eval_data else None, "label_field": label_field,
                    "class_weights": str(class_weights) if class_weights else None, "template": template, "seed": seed,
                    "trainable_layers": trainable_layers, "layer_lr_decay": layer_lr_decay, "attention": attention,
                    "max_steps": max_steps, "save_steps": save_steps, "keep_checkpoints": keep_checkpoints}
        write_text(run_dir / RUN_FILE, json.dumps({"data": str(data), "data_checksum": report.checksum, "model": str(model_dir),
                                                   "settings": settings, "plan": the_plan.model_dump(mode="json")},
                                                  indent=2, ensure_ascii=False) + "\n")

    # 5. load, 6. wrap (seeded: adapter weights start the same for the same seed)
    set_seed(seed)
    base = load_model(model_dir, method=method, precision=weights_precision(method, the_plan.precision.value),
                      attn_implementation=attn, trust=trust)
    wrapped = wrap(base, method, lora=the_plan.lora.value, target_modules=the_plan.target_modules.value,
                   linear_modules=the_plan.model.linear_modules, trainable_layers=trainable_layers)
    groups = (layerwise_param_groups(wrapped, the_plan.learning_rate.value, layer_lr_decay, trainable_layers)
              if method == "freeze" and layer_lr_decay else None)
    direct = direct_head_ok(wrapped, method, the_plan.model.final_logit_softcapping)
    if the_plan.packing.value and not direct:
        raise RunError(f"--packing: {method} on {the_plan.model.model_type} needs the model's own forward, which cannot "
                       "isolate packed records; pass --no-packing.")

    # 7. train
    throughput = Throughput()
    diagnosis = Diagnosis(console)
    has_eval = bool(eval_rows)
    args = training_arguments(the_plan, run_dir, has_eval=has_eval, save_steps=save_steps, keep_checkpoints=keep_checkpoints,
                              seed=seed, max_steps=max_steps)
    interrupt = InterruptToCheckpoint(console)
    extra: list[TrainerCallback] = [RichProgress(throughput, console, enabled=progress and main), diagnosis, interrupt]
    if has_eval:
        extra.append(EarlyStoppingCallback(early_stopping_patience=EARLY_STOPPING_PATIENCE))
    trainer = SFTTrainer(
        model=wrapped, args=args, train_dataset=RowsDataset(fill_to_multiple(rows, the_plan.micro_batch.value * the_plan.processes, tokenizer.pad_token_id)),
        eval_dataset=RowsDataset(eval_rows) if has_eval else None,
        data_collator=RowCollator(pad_id=tokenizer.pad_token_id, weight_of=weight_of,
                                  pad_to_multiple_of=ml if attn == "flex_attention" else 8),
        callbacks=extra + list(callbacks or []), param_groups=groups, throughput=throughput,
        loss_options={"attn_implementation": attn, "direct_head": direct, "virtual_tokens": virtual_tokens(method)})
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except torch.OutOfMemoryError:
        raise OutOfMemory(oom_advice(micro_batch=the_plan.micro_batch.value, grad_accum=the_plan.grad_accum.value,
                                     max_length=ml, gradient_checkpointing=the_plan.gradient_checkpointing.value,
                                     method=method, p90_length=the_plan.token_lengths.p90)) from None
    except pickle.UnpicklingError:  # the Trainer loads checkpoints through torch's weights_only unpickler
        raise RunError(f"--resume: {checkpoint} holds pickled objects beyond tensors, which torch's weights_only unpickler "
                       "refused (loading them fully could run code), so nothing from it was used. trainkit wrote no "
                       "such file: delete that checkpoint to resume from an earlier one, or start a new run.") from None
    elapsed = time.perf_counter() - started
    interrupted = interrupt.requested
    eval_loss = trainer.evaluate()["eval_loss"] if has_eval and not interrupted else None
    if eval_loss is not None:
        diagnosis.on_evaluate(args, trainer.state, trainer.control, metrics={"eval_loss": eval_loss})

    # 8. save, 9. report (every process takes part in gathering; the main one writes)
    out = save_output(trainer, tokenizer, run_dir, method) if not interrupted else run_dir / "checkpoints"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    facts = gather(own_facts(trainer, throughput, cuda))
    processes = processes_summary(facts, the_plan)
    if processes["weights_diverged"]:
        diagnosis.say("diverged", "the processes ended with different trained weights (run_report.json, processes."
                      "weights_sha256); the saved output is the main process's. Launch every process with the same "
                      "trainkit, torch and transformers versions.")
    report_path = run_dir / "report.html"
    evaluation = None
    if main:
        # one process only: a sharded (FSDP) model cannot answer on the main process alone; `trainkit eval` does it after
        if has_eval and not interrupted and state.num_processes == 1:
            from trainkit.evaluate import evaluate_trained

            evaluation = evaluate_trained(
                trainer.model, tokenizer, template=tok.template, max_length=ml, method=method, output=str(out),
                base_model=str(model_dir), eval_frame=eval_frame, trained_labels=[e.label for e in examples],
                audited=train_frame if eval_data else pl.concat([train_frame, eval_frame]), audit_report=report,
                label_field=label_field, seed=seed, progress=progress, compare_base=compare_base, run_dir=run_dir, trust=trust)
        elif has_eval and not interrupted:
            console.print(f"note: the eval loss per label, source and length of a multi-process run: `trainkit eval {run_dir}`",
                          highlight=False)
        write_data_order(run_dir, [f["data_order"] for f in facts], resumed=checkpoint is not None)
        report_path = write_run_report(
            run_dir, plan=the_plan, audit=audit_summary(report), log_history=trainer.state.log_history,
            throughput=throughput_summary(facts, elapsed), peak_memory_gib=largest_peak_memory(facts),
            eval_split=eval_reason if has_eval else "no eval split", diagnoses=diagnosis.messages, output_dir=out,
            interrupted=interrupted, attention=attn, steps=trainer.state.global_step, processes=processes,
            records={"train": len(examples), "eval": len(eval_examples), "rows": len(rows), "skipped": len(tok.skipped)},
            evaluation=evaluation, eval_lines=None if eval_data or eval_frame is None else eval_frame["line"].to_list())
    state.wait_for_everyone()  # no process returns before the run folder is complete
    return RunResult(run_dir=run_dir, output_dir=out, steps=trainer.state.global_step, train_loss=losses[-1] if losses else None,
                     eval_loss=eval_loss, interrupted=interrupted, report=report_path, diagnoses=diagnosis.messages,
                     advice=[a["text"] for a in (evaluation or {}).get("advice", [])], model=trainer.model)


def own_facts(trainer: SFTTrainer, throughput: Throughput, cuda: bool) -> dict[str, Any]:
    """What this process alone knows: its tokens, memory, records trained on, and the hash of its copy of the
    weights when there are copies to compare (several processes, not FSDP, where each holds a shard)."""
    copies = trainer.args.world_size > 1 and not trainer.is_fsdp_enabled
    return {"real_tokens": throughput.tokens, "padded_tokens": throughput.padded, "peak_memory": peak_memory_gib(cuda),
            "data_order": trainer.data_order, "weights_sha256": weights_sha256(trainer.model) if copies else None}


def processes_summary(facts: list[dict], plan: TrainPlan) -> dict[str, Any]:
    """How the run was spread: the global batch it stepped with and whether the processes' weights stayed identical."""
    hashes = [f["weights_sha256"] for f in facts]
    return {"count": len(facts), "global_batch_rows": plan.global_batch_rows,
            "weights_sha256": hashes, "weights_diverged": len(set(hashes)) > 1}


def throughput_summary(facts: list[dict], elapsed: float) -> dict[str, Any]:
    tokens, padded = sum(f["real_tokens"] for f in facts), sum(f["padded_tokens"] for f in facts)
    return {"real_tokens": tokens, "padded_tokens": padded, "seconds": round(elapsed, 2),
            "real_tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
            "padding_share": round(1 - tokens / padded, 3) if padded else None}


def largest_peak_memory(facts: list[dict]) -> dict[str, Any]:
    """The peak of the process that used the most memory (the one that limits the plan)."""
    return max((f["peak_memory"] for f in facts), key=lambda peak: max(v for v in peak.values() if isinstance(v, float)))


def peak_memory_gib(cuda: bool) -> dict[str, Any]:
    if cuda:
        return {"device": torch.cuda.get_device_name(), "gpu_peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    import resource

    return {"device": "cpu", "process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
