"""Watching a run: the progress bar, the documents' diagnoses, and Ctrl-C turned into a saved checkpoint.

All three are transformers `TrainerCallback`s, so the Trainer keeps owning the loop.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

from trainkit.distributed import any_process

OVERFIT_GAP = 0.10  # eval loss more than 10% over train loss


@dataclass
class Throughput:
    """Real (non-padding) tokens trained on, counted by the trainer, read by the progress bar and the report."""

    tokens: int = 0
    padded: int = 0
    started: float = field(default_factory=time.perf_counter)

    def per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.started, 1e-9)


class RichProgress(TrainerCallback):
    """One bar: step of total, loss, learning rate, real tokens/s and time left."""

    def __init__(self, throughput: Throughput, console: Console, enabled: bool = True):
        self.throughput, self.console, self.enabled = throughput, console, enabled
        self.progress = None
        self.task = None
        self.loss: float | None = None
        self.lr: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.enabled:
            return
        self.progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[tps]} tok/s"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, loss="-", lr="-", tps="-")
        self.throughput.started = time.perf_counter()
        self.throughput.tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.loss = logs.get("loss", self.loss)
        self.lr = logs.get("learning_rate", self.lr)
        self.on_step_end(args, state, control)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, tps=f"{self.throughput.per_second():,.0f}",
                                 loss="-" if self.loss is None else f"{self.loss:.4f}", lr="-" if self.lr is None else f"{self.lr:.2e}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class Diagnosis(TrainerCallback):
    """Prints the documents' diagnosis once each when its symptom shows: loss not falling, loss NaN, overfitting."""

    def __init__(self, console: Console):
        self.console = console
        self.train_losses: list[float] = []
        self.said: set[str] = set()
        self.messages: list[str] = []

    def say(self, key: str, text: str) -> None:
        if key not in self.said:
            self.said.add(key)
            self.messages.append(text)
            self.console.print(f"[yellow]diagnosis:[/] {text}", highlight=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(loss):
            self.say("nan", f"loss is {loss} at step {state.global_step}: the learning rate is too high for this model "
                     "and precision, or the data holds empty/garbled records; lower --lr by 3-10x and check the audit report.")
            return
        self.train_losses.append(loss)
        n = len(self.train_losses)
        if n >= 10 and state.global_step >= 0.2 * state.max_steps:
            first, last = self.train_losses[: n // 4], self.train_losses[-(n // 4):]
            if sum(last) / len(last) >= 0.98 * sum(first) / len(first):
                self.say("flat", f"loss is not falling after {state.global_step} steps ({first[0]:.3f} -> {loss:.3f}): check the "
                         "learning rate (too low learns nothing, too high bounces) and the data (are the answers consistent, "
                         "is the loss mask on the answers? see the audit report).")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        found = overfitting(state.log_history)
        if found:
            self.say("overfit", found.advice())


@dataclass(frozen=True)
class Overfit:
    """Where overfitting began: eval loss lowest at `best_step`, rising from the next evaluation on while train loss
    fell, and at `seen_step` over OVERFIT_GAP above train loss."""

    epoch: int  # the epoch (1-based) of the first evaluation after the lowest eval loss
    step: int
    best_step: int
    best_epoch: int
    best_eval: float
    seen_step: int
    seen_eval: float
    train_at_best: float
    train_at_seen: float

    @property
    def gap(self) -> float:
        return self.seen_eval / self.train_at_seen - 1

    def advice(self) -> str:
        return (f"overfitting from epoch {self.epoch} (step {self.step}): eval loss rose from {self.best_eval:.3f} (step "
                f"{self.best_step}) to {self.seen_eval:.3f} (step {self.seen_step}) while train loss fell from "
                f"{self.train_at_best:.3f} to {self.train_at_seen:.3f}; eval is {100 * self.gap:.0f}% above train (over "
                f"{100 * OVERFIT_GAP:.0f}%). Remedies, in order: 1) fewer epochs: --epochs {self.best_epoch} (eval loss was "
                f"lowest in epoch {self.best_epoch}); 2) more data: the model is memorising these records; 3) more "
                "dropout: --lora-dropout 0.1 (default 0.05); 4) early stopping: on whenever there is an eval split, it "
                f"keeps the checkpoint of step {self.best_step}.")


def _epoch(value: float) -> int:
    """The 1-based epoch a fractional epoch count falls in (0.4 -> 1, 1.0 -> 1, 1.5 -> 2)."""
    return max(1, math.ceil(value - 1e-9))


def overfitting(log_history: list[dict]) -> Overfit | None:
    """The documents' overfitting check on a Trainer log history: at some evaluation, eval loss is above its lowest so
    far, the train loss (mean of the last 3 logged) is below what it was at that lowest point, and eval loss is more than
    OVERFIT_GAP above train loss. Returns the first such evaluation, with the epoch where the rise began."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and math.isfinite(h["loss"])]
    evals, seen_steps = [], set()
    for h in log_history:
        if "eval_loss" in h and h["step"] not in seen_steps:  # a final evaluation of the best checkpoint repeats a step
            seen_steps.add(h["step"])
            evals.append(h)

    def train_at(step: int) -> float | None:
        recent = [loss for s, loss in train if s <= step][-3:]
        return sum(recent) / len(recent) if recent else None

    for j in range(1, len(evals)):
        best = min(range(j), key=lambda i: (evals[i]["eval_loss"], i))
        now, low = evals[j], evals[best]
        train_now, train_low = train_at(now["step"]), train_at(low["step"])
        if train_now is None or train_low is None or train_now <= 0:
            continue
        if (now["eval_loss"] > low["eval_loss"] and train_now < train_low
                and now["eval_loss"] > train_now * (1 + OVERFIT_GAP)):
            start = evals[best + 1]
            return Overfit(epoch=_epoch(start.get("epoch", 0.0)), step=start["step"], best_step=low["step"],
                           best_epoch=_epoch(low.get("epoch", 0.0)), best_eval=low["eval_loss"], seen_step=now["step"],
                           seen_eval=now["eval_loss"], train_at_best=train_low, train_at_seen=train_now)
    return None


class InterruptToCheckpoint(TrainerCallback):
    """Ctrl-C finishes the current step, saves a checkpoint and stops; a second Ctrl-C aborts at once. Under a
    launcher, Ctrl-C on any process stops them all."""

    def __init__(self, console: Console):
        self.console = console
        self.requested = False
        self.previous = None

    def _handler(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("[yellow]interrupted:[/] saving a checkpoint after this step (Ctrl-C again to abort without one)")

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            self.previous = signal.signal(signal.SIGINT, self._handler)

    def on_step_end(self, args, state, control, **kwargs):
        if any_process(self.requested):  # all processes stop after the same step, or the others would wait for it forever
            self.requested = True
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def oom_advice(*, micro_batch: int, grad_accum: int, max_length: int, gradient_checkpointing: bool, method: str,
               p90_length: int) -> str:
    """The documents' answer to out-of-memory, as the one concrete plan change to try next, in that order:
    smaller micro-batch with more accumulation, gradient checkpointing, shorter max length, QLoRA."""
    head = f"out of GPU memory with {micro_batch} row(s) of up to {max_length} tokens per micro-batch ({method}). Re-run with "
    if micro_batch > 1:
        return head + (f"--micro-batch {micro_batch // 2} (gradient accumulation {grad_accum * 2} keeps the same effective batch).")
    if not gradient_checkpointing:
        return head + "--gradient-checkpointing (recomputes activations in the backward pass: ~30% slower, far less memory)."
    shorter = max(64, -(-p90_length // 64) * 64)
    if shorter < max_length:
        return head + (f"--max-length {shorter} (covers 90% of the records; the longer ones are listed before training, "
                       "never truncated).")
    if method != "qlora":
        return head + "--method qlora (4-bit weights: about a quarter of the memory of bf16 ones)."
    return head[:-len("Re-run with ")] + "Nothing smaller fits: use a smaller model."
