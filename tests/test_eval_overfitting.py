"""The overfitting check of the documents: eval loss rising while train loss falls, with a gap over 10%, names the epoch
where it began and the remedies in order; a run that is not overfitting gets no such diagnosis."""
from __future__ import annotations

import io

from rich.console import Console
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainkit.monitor import Diagnosis, overfitting

STEPS_PER_EPOCH = 10


def history(train: list[float], evals: list[float]) -> list[dict]:
    """A Trainer log history: one train loss per step, one evaluation at the end of each epoch (as `eval_steps` does)."""
    out = []
    for i, loss in enumerate(train, 1):
        out.append({"step": i, "epoch": i / STEPS_PER_EPOCH, "loss": loss, "learning_rate": 1e-4})
        if i % STEPS_PER_EPOCH == 0 and i // STEPS_PER_EPOCH <= len(evals):
            out.append({"step": i, "epoch": i / STEPS_PER_EPOCH, "eval_loss": evals[i // STEPS_PER_EPOCH - 1]})
    return out


FALLING = [2.0 * 0.97 ** i for i in range(50)]  # 2.0 -> 0.44 over five epochs


def test_eval_rising_from_epoch_3_while_train_falls_names_epoch_3_and_the_remedies_in_order():
    log = history(FALLING, [1.60, 1.20, 1.25, 1.40, 1.70])
    found = overfitting(log)
    assert found is not None
    assert (found.epoch, found.step, found.best_epoch, found.best_step) == (3, 30, 2, 20)
    text = found.advice()
    assert text.startswith("overfitting from epoch 3 (step 30)")
    order = [text.index(s) for s in ("fewer epochs: --epochs 2", "more data", "more dropout: --lora-dropout", "early stopping")]
    assert order == sorted(order)
    assert "keeps the checkpoint of step 20" in text


def test_eval_rising_but_within_ten_percent_of_train_is_not_overfitting():
    train = [1.0] * 20 + [0.99 - 0.001 * i for i in range(30)]
    assert overfitting(history(train, [1.02, 1.03, 1.04, 1.045, 1.05])) is None  # rising, but under 10% above train


def test_eval_rising_while_train_rises_too_is_not_overfitting():
    rising = [1.0 + 0.01 * i for i in range(50)]
    assert overfitting(history(rising, [1.0, 1.3, 1.5, 1.7, 1.9])) is None


def test_eval_over_train_but_still_falling_is_not_overfitting():
    assert overfitting(history(FALLING, [1.9, 1.7, 1.5, 1.3, 1.1])) is None


def test_the_final_evaluation_of_the_best_checkpoint_does_not_move_the_onset():
    log = history(FALLING, [1.60, 1.20, 1.25, 1.40, 1.70]) + [{"step": 50, "epoch": 5.0, "eval_loss": 1.20}]
    assert overfitting(log).epoch == 3


def test_the_callback_says_it_once_from_the_trainer_state():
    d = Diagnosis(Console(file=io.StringIO()))
    args = TrainingArguments(output_dir="/tmp/unused", report_to=[])
    state = TrainerState(max_steps=50)
    for entry in history(FALLING, [1.60, 1.20, 1.25, 1.40, 1.70]):
        state.log_history.append(entry)
        state.global_step = entry["step"]
        if "eval_loss" in entry:
            d.on_evaluate(args, state, TrainerControl(), metrics={"eval_loss": entry["eval_loss"]})
    assert len(d.messages) == 1 and "epoch 3" in d.messages[0]


def test_the_run_reports_loss_chart_marks_where_overfitting_began():
    from trainkit.report import curves_svg

    marked = curves_svg(history(FALLING, [1.60, 1.20, 1.25, 1.40, 1.70]))
    assert "overfitting from epoch 3 (step 30)" in marked
    assert "overfitting" not in curves_svg(history(FALLING, [1.9, 1.7, 1.5, 1.3, 1.1]))
