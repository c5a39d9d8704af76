"""The `trainkit` command line: `plan`, `train` and `merge`, each a thin wrapper over the Python function of the same name.

User errors end with one line on stderr and exit status 2; data refused by the audit gate exits 3 with
the audit summary and the `datakit fix` command; a run stopped by Ctrl-C saves a checkpoint and exits 130.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Plan, train and merge LoRA/QLoRA adapters from data that datakit audits.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)
TRUST_REMOTE_CODE_HELP = ("Run Python code shipped in the model folder (its auto_map); off by default: read that code "
                          "first, it runs with your permissions.")
PICKLE_HELP = ("Load weights from pickle files (pytorch_model.bin) when the folder has no safetensors, through torch's "
               "weights_only unpickler; off by default.")


def _plan_table(p) -> Table:
    table = Table(show_header=True, header_style="bold", expand=True)
    for col in ("setting", "value", "why"):
        table.add_column(col, overflow="fold")
    for name in ("method", "learning_rate", "scheduler", "warmup_ratio", "epochs", "effective_batch", "micro_batch",
                 "grad_accum", "max_length", "packing", "precision", "gradient_checkpointing", "lora", "target_modules",
                 "template"):
        choice = getattr(p, name)
        value = choice.value
        shown = f"{value:.3g}" if isinstance(value, float) else (json.dumps(value) if isinstance(value, (list, dict)) else str(value))
        table.add_row(name, shown, choice.reason)
    return table


@app.command()
def plan(
    data: Annotated[Path, typer.Argument(help="Dataset: anything `datakit audit` reads.")],
    model: Annotated[Path, typer.Option("--model", help="Local model folder (config.json + tokenizer).")],
    gpu_mem: Annotated[float | None, typer.Option("--gpu-mem", help="GPU memory to plan for, GiB (default: this machine's).")] = None,
    method: Annotated[str | None, typer.Option(help="Fix the method instead of choosing it.")] = None,
    template: Annotated[str, typer.Option(help="auto | chat | alpaca_en | alpaca_zh")] = "auto",
    targets: Annotated[str, typer.Option(help="LoRA targets: all (every linear projection) | minimal (q/v).")] = "all",
    label_field: Annotated[str | None, typer.Option(help="Record field holding the class label.")] = None,
    processes: Annotated[int, typer.Option(min=1, help="GPUs the run will be launched on (accelerate launch / torchrun "
                                                       "processes); each takes its own micro-batches.")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the plan as JSON here.")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)] = False,
) -> None:
    """Print the training plan for DATA on MODEL: every hyper-parameter with the rule it came from."""
    from datakit.io.atomic import write_text
    from trainkit.plan import plan as make

    p = make(data, model, gpu_mem, method, template=template, label_field=label_field, targets=targets, processes=processes,
             trust_remote_code=trust_remote_code)
    out.print(f"[bold]{p.data}[/]: {p.records} records to train on, token lengths p50 {p.token_lengths.p50} / p99 "
              f"{p.token_lengths.p99} / max {p.token_lengths.max}; model {p.model.model_type}, {p.model.size} parameters; "
              f"device {p.device}{f' ({p.gpu_mem_gib:g} GiB)' if p.gpu_mem_gib else ''}", highlight=False)
    out.print(_plan_table(p))
    on = f" x {p.processes} processes" if p.processes > 1 else ""
    out.print(f"{p.total_steps} optimizer steps ({p.steps_per_epoch} per epoch) of {p.micro_batch.value} row(s) x "
              f"{p.grad_accum.value} accumulation{on}", highlight=False)
    for line, why in p.skipped[:10]:
        out.print(f"[yellow]skipped[/] line {line}: {why}", highlight=False)
    for w in p.warnings:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)
    if json_out:
        write_text(json_out, p.model_dump_json(indent=2) + "\n")


@app.command()
def train(
    data: Annotated[Path | None, typer.Argument(help="Training data: anything `datakit audit` reads.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Local model folder.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder: checkpoints, adapter, reports.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML (or JSON, TOML) file with any of these options (flags win).")] = None,
    method: Annotated[str | None, typer.Option(help="lora | qlora | dora | loha | lokr | ia3 | prefix | prompt | full | freeze")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval", help="Eval file (e.g. from `datakit split`); default: 10% held out.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (default: from the dataset size).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default: from model size and method).")] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per record (default: p99 of the data).")] = None,
    effective_batch: Annotated[int | None, typer.Option(help="Records per optimizer step (default 16-32).")] = None,
    micro_batch: Annotated[int | None, typer.Option(help="Rows per forward pass (default: what fits).")] = None,
    packing: Annotated[bool | None, typer.Option("--packing/--no-packing", help="Pack short records into full rows.")] = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    targets: Annotated[str | None, typer.Option(help="LoRA targets: all | minimal (q/v).")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank (alpha is twice it).")] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="LoRA dropout (default 0.05; 0 makes runs with the same global "
                                                             "batch match however they are split over processes).")] = None,
    template: Annotated[str | None, typer.Option(help="auto | chat | alpaca_en | alpaca_zh")] = None,
    trainable_layers: Annotated[int | None, typer.Option(help="--method freeze: train the last N decoder layers.")] = None,
    layer_lr_decay: Annotated[float | None, typer.Option(help="--method freeze: lr x this per layer further down.")] = None,
    label_field: Annotated[str | None, typer.Option(help="Record field holding the class label.")] = None,
    class_weights: Annotated[Path | None, typer.Option(help="JSON label -> loss weight (from `datakit balance --weights`).")] = None,
    audit_config: Annotated[Path | None, typer.Option(help="Config file of the audit gate, TOML, YAML or JSON (as `datakit audit --config`).")] = None,
    allow_findings: Annotated[bool, typer.Option("--allow-findings", help="Train even when the audit finds errors.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last checkpoint.")] = False,
    save_steps: Annotated[int | None, typer.Option(help="Checkpoint every N steps (default 100).")] = None,
    keep_checkpoints: Annotated[int | None, typer.Option(help="Keep the last K checkpoints (default 3).")] = None,
    attention: Annotated[str | None, typer.Option(help="sdpa (default) | eager | flex_attention")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the split, data order and init (default 42).")] = None,
    gpu_mem: Annotated[float | None, typer.Option("--gpu-mem", help="GPU memory to plan for, GiB.")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)] = False,
    allow_pickle_weights: Annotated[bool, typer.Option("--allow-pickle-weights", help=PICKLE_HELP)] = False,
    compare_base: Annotated[int | None, typer.Option(help="At the end, answer N eval prompts with the base model and the "
                                                          "trained one, side by side in the report.")] = None,
) -> None:
    """Audit DATA, plan, and train an adapter into the run folder (--output)."""
    from trainkit.config import merged_options
    from trainkit.distributed import process_state
    from trainkit.train import train as run

    flags = {"data": data, "model": model, "output": output, "method": method, "eval_data": eval_data, "max_steps": max_steps,
             "epochs": epochs, "learning_rate": lr, "max_length": max_length, "effective_batch": effective_batch,
             "micro_batch": micro_batch, "packing": packing, "gradient_checkpointing": gradient_checkpointing,
             "targets": targets, "lora_r": lora_r, "lora_dropout": lora_dropout, "template": template,
             "trainable_layers": trainable_layers, "layer_lr_decay": layer_lr_decay, "label_field": label_field, "class_weights": class_weights,
             "audit_config": audit_config, "allow_findings": allow_findings, "resume": resume, "save_steps": save_steps,
             "keep_checkpoints": keep_checkpoints, "attention": attention, "seed": seed, "gpu_mem_gib": gpu_mem,
             "trust_remote_code": trust_remote_code, "allow_pickle_weights": allow_pickle_weights, "compare_base": compare_base}
    options = merged_options(config, flags, run)
    result = run(**options, console=err)
    state = process_state()
    if not state.is_main_process:  # under a launcher the main process tells the user
        raise typer.Exit(130 if result.interrupted else 0)
    if result.interrupted:
        again = f"trainkit train {options['data']} --model {options['model']} --output {result.run_dir} --resume"
        how = f"`{again}`" if state.num_processes == 1 else f"the same launch command ({state.num_processes} processes) and `{again}`"
        err.print(f"[yellow]interrupted[/] at step {result.steps}: checkpoint saved in {result.run_dir}/checkpoints; continue with "
                  f"{how}", highlight=False)
        raise typer.Exit(130)
    out.print(f"trained {result.steps} steps; train loss {result.train_loss:.4f}"
              + (f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""), highlight=False)
    for advice in result.advice:
        out.print(f"[bold]advice:[/] {escape(advice)}", highlight=False, soft_wrap=True)
    out.print(f"output: {result.output_dir}\nreport: {result.report}", highlight=False)


@app.command()
def merge(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `trainkit train`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the merged full model.")],
    base: Annotated[Path | None, typer.Option(help="Base model folder, if it moved since training.")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)] = False,
    allow_pickle_weights: Annotated[bool, typer.Option("--allow-pickle-weights", help=PICKLE_HELP)] = False,
) -> None:
    """Merge the run's adapter into its base model and write a full model folder."""
    from trainkit.merge import merge as run
    from trainkit.trust import ModelTrust

    path = run(run_dir, output, base, ModelTrust(remote_code=trust_remote_code, pickle_weights=allow_pickle_weights))
    out.print(f"merged model written to {path}", highlight=False)


RUN_DIR_HELP = "Run folder written by `trainkit train`."
MERGED_HELP = "Answer with this merged model folder (`trainkit merge`) instead of base + adapter."
BASE_HELP = "Answer with the base model alone (no adapter), to compare."


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help=RUN_DIR_HELP)],
    data: Annotated[Path, typer.Option("--data", help="Prompts: any file `datakit audit` reads; each record's last answer is the reference.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions file (.jsonl, .json or .parquet, optionally .gz).")],
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy (the default); above 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling share when --temperature > 0.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling: the same seed gives the same answers.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together.")] = 8,
    merged: Annotated[Path | None, typer.Option(help=MERGED_HELP)] = None,
    base: Annotated[bool, typer.Option("--base", help=BASE_HELP)] = False,
    label_field: Annotated[str | None, typer.Option(help="Record field holding the class label, copied to each prediction.")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)] = False,
    allow_pickle_weights: Annotated[bool, typer.Option("--allow-pickle-weights", help=PICKLE_HELP)] = False,
) -> None:
    """Answer every prompt of --data with the run's model; write source line, reference and prediction per record."""
    from trainkit.predict import generate as run

    r = run(run_dir, data, output, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
            batch_size=batch_size, merged=merged, base=base, label_field=label_field, trust_remote_code=trust_remote_code,
            allow_pickle_weights=allow_pickle_weights, progress=True)
    for note in r.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    for s in r.skipped[:20]:
        err.print(f"[yellow]skipped[/] {escape(str(s))}", highlight=False, soft_wrap=True)
    if len(r.skipped) > 20:
        err.print(f"[yellow]skipped[/] ... and {len(r.skipped) - 20} more", highlight=False)
    if r.over_length:
        err.print(f"[yellow]note:[/] {r.over_length} prompt(s) are longer than the run's max_length ({r.max_length} tokens): "
                  "the adapter never trained on such lengths, so expect weaker answers there.", highlight=False)
    out.print(f"{r.written} prediction(s) from the {escape(r.answers_with)} in {r.seconds:.1f}s ({r.records_per_s:.2f} records/s); "
              f"{len(r.skipped)} record(s) skipped\noutput: {escape(str(r.output))}", highlight=False)


@app.command()
def chat(
    run_dir: Annotated[Path, typer.Argument(help=RUN_DIR_HELP)],
    merged: Annotated[Path | None, typer.Option(help=MERGED_HELP)] = None,
    base: Annotated[bool, typer.Option("--base", help=BASE_HELP)] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy (the default); above 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling share when --temperature > 0.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)] = False,
    allow_pickle_weights: Annotated[bool, typer.Option("--allow-pickle-weights", help=PICKLE_HELP)] = False,
) -> None:
    """Chat in the terminal with the run's model (its template and system prompt; /help for commands, Ctrl-D quits)."""
    from trainkit.chat import chat as run
    from trainkit.generate import Sampling, load_for_inference

    sampling = Sampling(max_new_tokens, temperature, top_p)
    sampling.check()
    with err.status("loading the model ..."):
        inf = load_for_inference(run_dir, merged=merged, base=base, trust_remote_code=trust_remote_code,
                                 allow_pickle_weights=allow_pickle_weights)
        inf.system  # read from the training data now, not after the first message  # noqa: B018
    run(inf, sampling, seed=seed)


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help=RUN_DIR_HELP)],
    data: Annotated[Path | None, typer.Option("--data", help="Records to evaluate on (default: the run's eval records).")] = None,
    compare_base: Annotated[int, typer.Option(help="Answer this many eval prompts with the base model and the trained one.")] = 0,
    worst: Annotated[int, typer.Option(help="Records with the highest loss shown with the model's answer.")] = 5,
    merged: Annotated[Path | None, typer.Option(help=MERGED_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Seed for generation.")] = 0,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)] = False,
    allow_pickle_weights: Annotated[bool, typer.Option("--allow-pickle-weights", help=PICKLE_HELP)] = False,
) -> None:
    """Eval loss per label, source and prompt length, the worst records with the model's answers, and which data to
    add; writes eval_report.json and eval_report.html in RUN_DIR."""
    from trainkit.evaluate import eval_run

    page, e = eval_run(run_dir, str(data) if data else None, compare_base=compare_base, worst=worst, merged=merged, seed=seed,
                       trust_remote_code=trust_remote_code, allow_pickle_weights=allow_pickle_weights)
    if e["loss"] is None:
        out.print(f"no record of {escape(e['data'])} could be scored", highlight=False)
    else:
        out.print(f"eval loss {e['loss']:.4f} (perplexity {e['perplexity']:.2f}) on {e['records']} record(s) of "
                  f"{escape(e['data'])}", highlight=False)
    for g in e["by_label"]:
        out.print(f"  {escape(g['name'])}: loss {g['loss']:.4f} on {g['records']} record(s)", highlight=False)
    for a in e.get("advice", []):
        out.print(f"[bold]advice:[/] {escape(a['text'])}", highlight=False, soft_wrap=True)
    out.print(f"report: {page}", highlight=False)


@app.command()
def version() -> None:
    """Print the trainkit version."""
    from trainkit import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point: user errors become one line and exit status 2, never a traceback (as `datakit`)."""
    from datakit.config import ConfigError
    from datakit.io.read import InputError
    from datakit.measure.tokens import TokenizerError
    from trainkit.gate import AuditRefused

    try:
        app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except AuditRefused as e:
        err.print(str(e), highlight=False, markup=False, soft_wrap=True)
        sys.exit(AuditRefused.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("[red]aborted[/]")
        sys.exit(130)
    except (InputError, ConfigError, TokenizerError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        err.print("[red]error:[/]", escape(str(e)), highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:  # click usage errors and anything unforeseen: one line, never a traceback
        import click

        # typer >= 0.29 bundles its own click: its usage errors are not click's classes but show() the same way.
        if isinstance(e, (click.exceptions.ClickException, typer.exceptions.TyperException)) and hasattr(e, "show"):
            e.show()
            sys.exit(2)
        if os.environ.get("TRAINKIT_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {escape(str(e))}. Re-run with TRAINKIT_DEBUG=1 for the "
                  "traceback and report it.", highlight=False, soft_wrap=True)
        sys.exit(2)
