"""`trainkit train` under torchrun: 2 CPU processes (gloo) on the tiny model and a real sample, through the real CLI.

The two processes must train on disjoint shares of the packed rows that together cover every row, end with
identical weights, and match one process with the same global batch (2 processes x micro-batch 1 against
1 process x micro-batch 2) and seed. LoRA dropout is 0: with it, the runs differ by their random masks.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_cli
from tests.trainkit_helpers import alpaca_sample, write_jsonl

TRAIN_OPTIONS = ("--lr", "1e-2", "--epochs", "1", "--effective-batch", "8", "--max-length", "1024", "--lora-dropout", "0",
                 "--seed", "7")


def torchrun(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """2 processes on this machine; --standalone picks a free port, so concurrent runs do not collide."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=cwd, timeout=600)


def data_order(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "data_order.jsonl").read_text().splitlines()]


def adapter_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


class Runs(NamedTuple):
    single: Path
    two: Path
    single_output: subprocess.CompletedProcess
    two_output: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> Runs:
    """The same data, seed and global batch: one process x micro-batch 2, and 2 processes x micro-batch 1."""
    tmp = tmp_path_factory.mktemp("distributed")
    data = write_jsonl(tmp / "alpaca_en.jsonl", alpaca_sample(40))
    single = run_cli("train", data, "--model", tiny_model, "--output", tmp / "single", "--micro-batch", "2", *TRAIN_OPTIONS,
                     tool="trainkit")
    assert single.returncode == 0, single.stderr
    rows = json.loads((tmp / "single" / "run_report.json").read_text())["records"]["rows"]
    assert rows % 2 == 1, f"{rows} rows: the sample must pack into an odd number, so the last micro-step needs a filler row"
    trainkit = Path(sys.executable).parent / "trainkit"
    launched = torchrun(str(trainkit), "train", str(data), "--model", str(tiny_model), "--output", str(tmp / "two"),
                        "--micro-batch", "1", *TRAIN_OPTIONS)
    assert launched.returncode == 0, launched.stderr[-3000:]
    return Runs(tmp / "single", tmp / "two", single, launched)


@pytest.mark.slow  # shares the two launches of `runs`: about 25 s on 2 cores
def test_the_plan_and_report_count_the_global_batch_over_processes(runs):
    single, two = runs.single, runs.two
    one_plan, two_plan = (json.loads((run / "run.json").read_text())["plan"] for run in (single, two))
    assert (one_plan["processes"], two_plan["processes"]) == (1, 2)
    assert (one_plan["micro_batch"]["value"], two_plan["micro_batch"]["value"]) == (2, 1)
    assert one_plan["grad_accum"]["value"] == two_plan["grad_accum"]["value"]
    assert one_plan["total_steps"] == two_plan["total_steps"]
    assert "on each of 2 processes" in two_plan["grad_accum"]["reason"]
    reported = [json.loads((run / "run_report.json").read_text())["processes"] for run in (single, two)]
    assert reported[0]["global_batch_rows"] == reported[1]["global_batch_rows"] == 2 * one_plan["grad_accum"]["value"]
    assert reported[1]["count"] == 2


@pytest.mark.slow  # shares the two launches of `runs`: about 25 s on 2 cores
def test_each_process_trains_on_its_own_rows_and_together_they_cover_every_row(runs):
    single, two = runs.single, runs.two
    alone, split = data_order(single), data_order(two)
    assert [s["step"] for s in split] == [s["step"] for s in alone]
    first, second = ([line for s in split for line in s["records"][rank]] for rank in (0, 1))
    assert first and second and not set(first) & set(second)
    assert len(first) + len(second) == len(set(first) | set(second))  # no record twice, within a process either
    trained = json.loads((single / "run_report.json").read_text())["records"]["train"]
    assert len(set(first) | set(second)) == trained  # one epoch: every record of every row
    for one, both in zip(alone, split):  # and each step's global batch is the single process's batch
        assert sorted(both["records"][0] + both["records"][1]) == sorted(one["records"][0])


@pytest.mark.slow  # shares the two launches of `runs`: about 25 s on 2 cores
def test_the_processes_end_with_identical_weights_and_only_the_main_one_prints(runs):
    processes = json.loads((runs.two / "run_report.json").read_text())["processes"]
    first, second = processes["weights_sha256"]
    assert first == second and not processes["weights_diverged"]
    said = runs.two_output.stdout.splitlines()
    assert [line.split()[0] for line in said] == ["trained", "output:", "report:"]  # once, by the main process
    assert runs.two_output.stderr.count("plan:") == runs.single_output.stderr.count("plan:")


@pytest.mark.slow  # shares the two launches of `runs`: about 25 s on 2 cores
def test_two_processes_train_the_adapter_one_process_trains_with_the_same_global_batch(runs):
    alone, split = adapter_weights(runs.single), adapter_weights(runs.two)
    assert alone.keys() == split.keys()
    moved = max(t.abs().max().item() for name, t in alone.items() if "lora_B" in name)  # lora_B starts at zero
    assert moved > 1e-2
    for name, tensor in alone.items():
        torch.testing.assert_close(split[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_the_chunked_loss_gives_unsharded_gradients_under_accelerates_fsdp2(tiny_model):
    launched = torchrun("-m", "tests.trainkit_helpers", str(tiny_model))
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("FSDP2 gradients match") == 2


@pytest.mark.parametrize("env,method,expected", [
    ({}, "lora", "launch lora without --use_fsdp"),
    ({"FSDP_VERSION": "1"}, "full", "--fsdp_version 2"),
    ({"FSDP_VERSION": "2"}, "full", "--fsdp_state_dict_type FULL_STATE_DICT"),
    ({"FSDP_VERSION": "2", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"}, "full", None),
])
def test_an_fsdp_launch_trainkit_cannot_train_is_refused_with_the_flag_to_change(monkeypatch, env, method, expected):
    from trainkit.distributed import fsdp_problem

    monkeypatch.delenv("FSDP_VERSION", raising=False)
    monkeypatch.delenv("FSDP_STATE_DICT_TYPE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    problem = fsdp_problem(method)
    assert problem is None if expected is None else expected in problem


def test_a_resumed_run_keeps_the_data_order_of_the_steps_before_its_checkpoint(tmp_path):
    from trainkit.report import write_data_order

    write_data_order(tmp_path, [[(1, [3, 4]), (2, [5]), (3, [6])], [(1, [7]), (2, [8]), (3, [9])]], resumed=False)
    write_data_order(tmp_path, [[(3, [16]), (4, [17])], [(3, [19]), (4, [20])]], resumed=True)  # resumed from step 2
    steps = data_order(tmp_path)
    assert steps == [{"step": 1, "records": [[3, 4], [7]]}, {"step": 2, "records": [[5], [8]]},
                     {"step": 3, "records": [[16], [19]]}, {"step": 4, "records": [[17], [20]]}]
