"""The run's diagnoses: each documented symptom produces its advice once, and only when it shows."""
from __future__ import annotations

import io

from rich.console import Console
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainkit.monitor import Diagnosis


def _run(losses, eval_loss=None, max_steps=100):
    d = Diagnosis(Console(file=io.StringIO()))
    state = TrainerState(max_steps=max_steps)
    args = TrainingArguments(output_dir="/tmp/unused", report_to=[])
    for step, loss in enumerate(losses, 1):
        state.global_step = step
        d.on_log(args, state, TrainerControl(), logs={"loss": loss})
    if eval_loss is not None:
        d.on_evaluate(args, state, TrainerControl(), metrics={"eval_loss": eval_loss})
    return d.messages


def test_flat_loss_points_at_learning_rate_and_data():
    messages = _run([2.0] * 30)
    assert len(messages) == 1 and "learning rate" in messages[0] and "data" in messages[0]


def test_falling_loss_gets_no_diagnosis():
    assert _run([2.0 - 0.03 * i for i in range(30)], eval_loss=1.2) == []


def test_nan_loss_says_lower_the_learning_rate():
    messages = _run([2.0, float("nan")])
    assert len(messages) == 1 and "--lr" in messages[0]
