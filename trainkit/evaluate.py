"""Where the trained model is weak: the eval loss of every eval record (its answer tokens only, through trainkit's own
tokenisation and loss, so the numbers are the training's eval loss taken apart), grouped per label, per source file
of a mixed dataset and per prompt-length bucket; the records with the highest loss with the model's answer beside the
reference; and, when asked, eval prompts answered by the base model and by the trained one side by side.

Records are scored one by one (a row of one record, no padding): a record's loss never depends on what it was batched
with, and the groups add up exactly to the whole eval loss.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from trainkit.advice import NO_LABEL
from trainkit.generate import Inference, generate_answers, prompt_of
from trainkit.loss import loss_sum
from trainkit.packing import RowCollator
from trainkit.tokenize import IGNORE, Example, tokenize_frame

LENGTH_EDGES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)  # prompt-token buckets: <64, 64-127, ..., 8192+
WORST = 5  # records with the highest loss shown with the model's answer
MAX_NEW_TOKENS = 512  # an answer is cut here however long the reference is
PPL_CAP = 50.0  # exp of a loss above this overflows into meaningless numbers


@dataclass
class Scored:
    """One eval record: its datakit row, tokens, and the sum of its answer tokens' cross-entropy."""

    row: dict
    example: Example
    loss_sum: float
    targets: int

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.targets, 1)

    @property
    def prompt_tokens(self) -> int:
        """Tokens the model reads without being trained on them: template, system, question, earlier turns."""
        return len(self.example) - self.targets


def perplexity(loss: float) -> float:
    return math.exp(min(loss, PPL_CAP))


def source_of(row: dict) -> str:
    """The input a record came from: `_source` of a `datakit mix` output, else the file (or shard) it was read from."""
    try:
        raw = json.loads(row.get("raw") or "{}")
    except ValueError:
        raw = {}
    named = raw.get("_source") if isinstance(raw, dict) else None
    return named if isinstance(named, str) and named else row["source"]


def length_bucket(tokens: int) -> tuple[int, str]:
    """(order, name) of the prompt-length bucket a token count falls in."""
    for i, edge in enumerate(LENGTH_EDGES):
        if tokens < edge:
            return i, f"<{edge}" if i == 0 else f"{LENGTH_EDGES[i - 1]}-{edge - 1}"
    return len(LENGTH_EDGES), f"{LENGTH_EDGES[-1]}+"


def tokenized_rows(frame: pl.DataFrame, inf: Inference) -> tuple[list[tuple[dict, Example]], list[dict]]:
    """Each renderable row with its tokens (through `tokenize_frame`, the training's tokenisation), and the rows it
    left out with the reason. Rows are numbered for the call, so a directory of shards (lines repeat) pairs exactly."""
    rows = frame.to_dicts()
    tok = tokenize_frame(frame.with_columns(pl.int_range(0, frame.height, dtype=pl.Int64).alias("line")), inf.tokenizer,
                         inf.template)
    pairs = [(rows[ex.line], Example(ex.input_ids, ex.labels, rows[ex.line]["line"], ex.label)) for ex in tok.examples]
    left_out = [{"source": rows[i]["source"], "line": rows[i]["line"], "why": why} for i, why in tok.skipped]
    return pairs, left_out


def _direct_head(model, method: str) -> bool:
    from trainkit.train import direct_head_ok  # the training module: imported when called (it loads the Trainer)

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return direct_head_ok(model, method, bool(getattr(base.config, "final_logit_softcapping", None)))


@torch.no_grad()
def record_losses(model, examples: list[Example], *, method: str, pad_id: int, progress: bool = False) -> list[tuple[float, int]]:
    """(sum of cross-entropy over the answer tokens, number of answer tokens) per example, through `loss.loss_sum`."""
    from datakit.progress import Stages
    from trainkit.model import virtual_tokens

    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    collate = RowCollator(pad_id=pad_id, pad_to_multiple_of=1)
    options = {"attn_implementation": "sdpa", "direct_head": _direct_head(model, method),
               "virtual_tokens": virtual_tokens(method)}
    out = []
    try:
        with Stages(enabled=progress) as stages:
            advance = stages.records("eval loss per record", len(examples))
            for i, example in enumerate(examples, 1):
                batch = collate([[example]])
                targets = int((batch["shift_labels"] != IGNORE).sum())
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                out.append((float(loss_sum(model, batch, **options)), targets))
                advance(i, i)
    finally:
        model.train(was_training)
    return out


def grouped(scored: list[Scored], key, order=None) -> list[dict[str, Any]]:
    """Records, answer tokens, loss (token-weighted, as the eval loss is) and perplexity per value of `key`; highest loss
    first unless `order` (value -> sort key) is given."""
    sums: dict[str, list[float]] = {}
    for s in scored:
        acc = sums.setdefault(key(s), [0, 0, 0.0])
        acc[0] += 1
        acc[1] += s.targets
        acc[2] += s.loss_sum
    rows = [{"name": name, "records": n, "tokens": t, "loss": total / max(t, 1), "perplexity": perplexity(total / max(t, 1))}
            for name, (n, t, total) in sums.items()]
    return sorted(rows, key=(lambda r: order[r["name"]]) if order else (lambda r: (-r["loss"], r["name"])))


def answer_budget(examples: list[Example]) -> int:
    """New tokens to allow: twice the longest reference answer among them (at least 64), at most MAX_NEW_TOKENS."""
    longest = max((sum(1 for t in e.labels if t != IGNORE) for e in examples), default=0)
    return max(64, min(MAX_NEW_TOKENS, 2 * longest))


def base_answers(inf: Inference, base: Inference | None, prompts: list, **options) -> tuple[list[str], str]:
    """The base model's answers: `base` when loaded apart, else the adapter switched off (no second copy in memory)."""
    if base is not None:
        return generate_answers(base, prompts, **options), base.answers_with
    if not hasattr(inf.model, "disable_adapter"):
        raise ValueError("--compare-base needs the base model: this run trained the whole model, so it holds no "
                         "adapter to switch off.")
    with inf.model.disable_adapter():
        answers = generate_answers(inf, prompts, **options)
    return answers, f"base model {inf.run.get('model', '')}".strip()


def _shown(row: dict, loss: float | None = None) -> dict[str, Any]:
    prompt, reference = prompt_of(row)
    out = {"source": source_of(row), "line": row["line"], "label": row.get("label"), "prompt": prompt.messages,
           "reference": reference}
    return out | ({"loss": loss} if loss is not None else {})


def evaluate(inf: Inference, frame: pl.DataFrame, *, method: str, label_field: str | None = None, worst: int = WORST,
             compare_base: int = 0, base: Inference | None = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The eval section of a run report for the records of `frame` (a datakit frame of valid records).

    Records longer than the run's max_length are left out (training left them out too) and counted."""
    pairs, left_out = tokenized_rows(frame, inf)
    fits = [(row, ex) for row, ex in pairs if len(ex) <= inf.max_length]
    losses = record_losses(inf.model, [ex for _, ex in fits], method=method, pad_id=inf.tokenizer.pad_token_id,
                           progress=progress)
    scored = [Scored(row, ex, total, n) for (row, ex), (total, n) in zip(fits, losses) if n]
    tokens = sum(s.targets for s in scored)
    loss = sum(s.loss_sum for s in scored) / tokens if tokens else None
    buckets = {length_bucket(s.prompt_tokens)[1]: length_bucket(s.prompt_tokens)[0] for s in scored}
    report: dict[str, Any] = {
        "records": len(scored), "tokens": tokens, "loss": loss, "perplexity": perplexity(loss) if loss is not None else None,
        "label_field": label_field, "max_length": inf.max_length, "answers_with": inf.answers_with,
        "over_length": [row["line"] for row, ex in pairs if len(ex) > inf.max_length],
        "not_rendered": left_out,
        "by_label": grouped(scored, lambda s: s.row.get("label") or NO_LABEL) if label_field else [],
        "by_source": grouped(scored, lambda s: source_of(s.row)),
        "by_length": grouped(scored, lambda s: length_bucket(s.prompt_tokens)[1], buckets),
        "worst": [], "compare_base": [],
    }
    options = {"seed": seed, "progress": progress}
    top = sorted(scored, key=lambda s: (-s.loss, s.row["line"]))[:worst]
    if top:
        answers = generate_answers(inf, [prompt_of(s.row)[0] for s in top],
                                   max_new_tokens=answer_budget([s.example for s in top]), **options)
        report["worst"] = [_shown(s.row, s.loss) | {"answer": a} for s, a in zip(top, answers)]
    if compare_base and scored:
        chosen = sorted(scored, key=lambda s: s.row["line"])[:compare_base]
        prompts = [prompt_of(s.row)[0] for s in chosen]
        budget = answer_budget([s.example for s in chosen])
        trained = generate_answers(inf, prompts, max_new_tokens=budget, **options)
        untrained, base_name = base_answers(inf, base, prompts, max_new_tokens=budget, **options)
        report["compare_base"] = [_shown(s.row) | {"base": b, "adapter": a} for s, b, a in zip(chosen, untrained, trained)]
        report["base_answers_with"] = base_name
    return report


def with_advice(evaluation: dict[str, Any], *, trained_labels: list[str | None], audited: pl.DataFrame, audit_report
                ) -> dict[str, Any]:
    """The eval section with its advice (`trainkit.advice`): the classes as trained on, the audited records' lines
    per class (findings name records by line), and the gate's audit report."""
    from collections import Counter

    from trainkit.advice import AuditFacts, advise, lines_by_label

    counts = dict(Counter(label for label in trained_labels if label is not None))
    lines = lines_by_label(audited["label"].to_list(), audited["line"].to_list())
    return evaluation | {"advice": advise(evaluation, train_counts=counts, lines_of=lines, audit=AuditFacts.of(audit_report))}


def evaluate_trained(model, tokenizer, *, template: str, max_length: int, method: str, output: str, base_model: str,
                     eval_frame: pl.DataFrame, trained_labels: list[str | None], audited: pl.DataFrame, audit_report,
                     label_field: str | None, seed: int, progress: bool, compare_base: int = 0, run_dir=None,
                     trust=None) -> dict[str, Any]:
    """The end-of-training evaluation, on the model in memory (the best checkpoint when early stopping kept one).
    `compare_base`: eval prompts also answered by the base model (the adapter switched off, or, for a run that trained
    the whole model, the base loaded from `run_dir`'s run.json with the run's `trust`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.use_cache = True  # training turned the cache off for gradient checkpointing; generation wants it
    model.eval()  # no dropout: the answers are the model's, deterministic
    device = next(p.device for p in model.parameters()).type
    kind = "model" if method in ("full", "freeze") else "adapter"
    inf = Inference(model=model, tokenizer=tokenizer, template=template, max_length=max_length, device=device,
                    answers_with=f"trained {kind} {output}", run={"model": base_model})
    base_inf = None
    if compare_base and not hasattr(model, "disable_adapter"):
        from trainkit.generate import load_for_inference

        base_inf = load_for_inference(run_dir, base=True, trust_remote_code=trust.remote_code,
                                      allow_pickle_weights=trust.pickle_weights)
    evaluation = evaluate(inf, eval_frame, method=method, label_field=label_field, seed=seed, progress=progress,
                          compare_base=compare_base, base=base_inf)
    return with_advice(evaluation, trained_labels=trained_labels, audited=audited, audit_report=audit_report)


def run_eval_frames(run_dir, run: dict, data: str | None) -> tuple[pl.DataFrame, pl.DataFrame | None, str, list[str | None]]:
    """(eval records, the records the audit saw or None, where the eval records come from, labels trained on) of a run
    folder: `data` when given, else the run's --eval file, else the records it held out (by source line, from the
    unchanged training data)."""
    from pathlib import Path

    from datakit.normalise import load
    from trainkit.data import read_dataset

    settings, label_field = run["settings"], run["settings"].get("label_field")
    trained_on = Path(run["data"])
    report_file = Path(run_dir) / "run_report.json"
    held = json.loads(report_file.read_text(encoding="utf-8")).get("eval_lines") if report_file.is_file() else None
    loaded = load(trained_on, label_field) if trained_on.exists() else None
    training = loaded.valid if loaded is not None else None
    training_kept = training.filter(~pl.col("line").is_in(held)) if training is not None and held else training
    labels = training_kept["label"].to_list() if training_kept is not None else []
    if data is not None:
        return read_dataset(data, label_field), training, f"--data {data}", labels
    if settings.get("eval_data"):
        return read_dataset(settings["eval_data"], label_field), training, f"the run's --eval {settings['eval_data']}", labels
    if not held:
        raise ValueError(f"{run_dir}: the run held out no eval records (too few records, or it has not finished); pass "
                         "--data FILE with records to evaluate on.")
    if loaded is None:
        raise ValueError(f"{run_dir}: its training data {trained_on} is gone, so its held-out records cannot be read "
                         "again; put it back, or pass --data FILE.")
    if trained_on.is_file() and loaded.checksum != run["data_checksum"]:
        raise ValueError(f"{trained_on} changed since the run (checksum {loaded.checksum} != {run['data_checksum']}): its "
                         "held-out lines no longer name the same records; pass --data FILE.")
    return training.filter(pl.col("line").is_in(held)), training, f"the {len(held)} records the run held out", labels


def eval_run(run_dir, data: str | None = None, *, compare_base: int = 0, worst: int = WORST, merged=None, seed: int = 0,
             trust_remote_code: bool = False, allow_pickle_weights: bool = False, progress: bool = True) -> tuple[Any, dict]:
    """`trainkit eval`: the run's model evaluated on its eval records (or `data`), advice included when the run's
    audit is there; writes eval_report.json and eval_report.html in the run folder. Returns (page path, eval section)."""
    from pathlib import Path

    from reports.json_report import read_json
    from trainkit.gate import AUDIT_FILE, audit_summary
    from trainkit.generate import load_for_inference, read_run
    from trainkit.report import write_eval_report

    run_dir = Path(run_dir)
    if compare_base < 0 or worst < 0:
        raise ValueError(f"--compare-base {compare_base} --worst {worst}: counts of records, 0 or more.")
    run = read_run(run_dir)
    frame, audited, source, labels = run_eval_frames(run_dir, run, data)
    if frame.height == 0:
        raise ValueError(f"{source}: no readable record to evaluate on.")
    inf = load_for_inference(run_dir, merged=Path(merged) if merged else None, trust_remote_code=trust_remote_code,
                             allow_pickle_weights=allow_pickle_weights)
    method = run["plan"]["method"]["value"]
    base = None
    if compare_base and not hasattr(inf.model, "disable_adapter"):
        base = load_for_inference(run_dir, base=True, trust_remote_code=trust_remote_code,
                                  allow_pickle_weights=allow_pickle_weights)
    evaluation = evaluate(inf, frame, method=method if merged is None else "full", label_field=run["settings"].get("label_field"),
                          worst=worst, compare_base=compare_base, base=base, seed=seed, progress=progress)
    evaluation["data"] = source
    audit_file = run_dir / AUDIT_FILE
    audit = read_json(audit_file) if audit_file.is_file() else None
    if audit is not None and audited is not None:
        evaluation = with_advice(evaluation, trained_labels=labels, audited=audited, audit_report=audit)
    page = write_eval_report(run_dir, evaluation=evaluation, audit=audit_summary(audit) if audit else None, data=source)
    return page, evaluation
