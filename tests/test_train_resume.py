"""Training killed outright (kill -9) at random moments and resumed ends with the adapter of an uninterrupted run.

Runs are forks of one process that imported trainkit once (tests/forked_cli.py), each calling `trainkit`'s own
`main()`: a kill costs the time to the kill, not the imports again.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.forked_cli import ForkedCli
from tests.trainkit_helpers import identity_records, write_jsonl
from trainkit.checkpoints import drop_incomplete, is_complete, last_complete, resume_point
from trainkit.train import RUN_FILE

KILLS = 10
OPTIONS = ("--method", "lora", "--max-steps", "24", "--save-steps", "3", "--lr", "1e-2", "--effective-batch", "4",
           "--micro-batch", "2", "--no-packing", "--seed", "7")


@pytest.fixture(scope="module")
def trainkit_runs(tmp_path_factory):
    runs = ForkedCli("trainkit.cli", "trainkit", tmp_path_factory.mktemp("logs") / "trainkit.log",
                     preload=("torch", "transformers", "peft", "accelerate", "matplotlib.pyplot"))
    yield runs
    runs.close()


def _checkpoint(folder, step, state=None):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_resume_skips_and_removes_checkpoints_a_kill_left_half_written(tmp_path):
    done = _checkpoint(tmp_path, 4, json.dumps({"global_step": 4}))
    no_state = _checkpoint(tmp_path, 6)
    cut_short = _checkpoint(tmp_path, 8, json.dumps({"global_step": 8})[:-5])
    assert is_complete(done) and not is_complete(no_state) and not is_complete(cut_short)
    assert last_complete(tmp_path) == done
    assert sorted(p.name for p in drop_incomplete(tmp_path)) == ["checkpoint-6", "checkpoint-8"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-4"]


def test_a_run_stopped_after_its_last_step_trains_that_step_again_rather_than_one_more(tmp_path):
    _checkpoint(tmp_path, 9, json.dumps({"global_step": 9, "max_steps": 12}))
    last = _checkpoint(tmp_path, 12, json.dumps({"global_step": 12, "max_steps": 12}))
    assert resume_point(tmp_path) == tmp_path / "checkpoint-9"
    shutil.rmtree(tmp_path / "checkpoint-9")
    assert resume_point(tmp_path) is None  # from the start: the same seed gives the same steps
    (last / "trainer_state.json").write_text(json.dumps({"global_step": 12, "max_steps": 20}))
    assert resume_point(tmp_path) == last


def _adapter(run_dir):
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def _past_the_gate(run_dir, since: float) -> None:
    """Wait until this run's audit gate has written its report: what follows is loading, training and saving."""
    report = run_dir / "audit_report.json"
    deadline = time.monotonic() + 300
    while not (report.is_file() and report.stat().st_mtime >= since) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_training_killed_at_random_moments_and_resumed_ends_with_the_uninterrupted_adapter(tiny_model, tmp_path,
                                                                                            trainkit_runs):
    data = write_jsonl(tmp_path / "identity.jsonl", identity_records(24))
    before = data.read_bytes()
    started = time.time()
    whole = trainkit_runs.start("train", data, "--model", tiny_model, "-o", tmp_path / "whole", *OPTIONS)
    _past_the_gate(tmp_path / "whole", started)
    gated = time.time()
    assert trainkit_runs.wait(whole) == 0, trainkit_runs.log.read_text()[-3000:]
    window = time.time() - gated  # loading, training, checkpoints, the adapter and the reports

    run_dir = tmp_path / "killed"
    rng = random.Random(12)
    steps_at_kill = []
    for _ in range(KILLS):
        resume = ("--resume",) if (run_dir / RUN_FILE).is_file() else OPTIONS
        started = time.time()
        pid = trainkit_runs.start("train", data, "--model", tiny_model, "-o", run_dir, *resume)
        _past_the_gate(run_dir, started)
        time.sleep(rng.uniform(0, window))
        os.kill(pid, signal.SIGKILL)
        assert trainkit_runs.wait(pid) in (-signal.SIGKILL, 0)
        assert data.read_bytes() == before
        last = last_complete(run_dir / "checkpoints")
        steps_at_kill.append(int(last.name.split("-")[1]) if last else 0)
        if (run_dir / "adapter").exists():  # put in place only once complete
            assert (run_dir / "adapter" / "adapter_config.json").is_file()
            assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    resume = ("--resume",) if (run_dir / RUN_FILE).is_file() else OPTIONS
    pid = trainkit_runs.start("train", data, "--model", tiny_model, "-o", run_dir, *resume)
    assert trainkit_runs.wait(pid) == 0, trainkit_runs.log.read_text()[-3000:]
    print(f"\nlast complete checkpoint after each of {KILLS} kills: {steps_at_kill}")
    assert 0 < max(steps_at_kill), "no kill came after a checkpoint: resuming from one was not tried"

    steps = sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").iterdir())
    assert steps[-1] == 24, steps  # no step past the one asked for
    expected, got = _adapter(tmp_path / "whole"), _adapter(run_dir)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.allclose(expected[name], got[name], atol=1e-6), name
    assert not (run_dir / ".adapter.partial").exists()
    assert all(is_complete(p) for p in (run_dir / "checkpoints").iterdir())
    assert data.read_bytes() == before
