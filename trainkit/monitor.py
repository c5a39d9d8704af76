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
        eval_loss = (metrics or {}).get("eval_loss")
        if eval_loss is None or not self.train_losses:
            return
        recent = self.train_losses[-3:]
        train_loss = sum(recent) / len(recent)
        if eval_loss > train_loss * (1 + OVERFIT_GAP):
            self.say("overfit", f"eval loss {eval_loss:.3f} is {100 * (eval_loss / train_loss - 1):.0f}% above train loss "
                     f"{train_loss:.3f} at step {state.global_step}: the model is memorising; fewer epochs, more data, "
                     "a lower learning rate or a smaller LoRA rank help (early stopping keeps the best checkpoint).")


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
