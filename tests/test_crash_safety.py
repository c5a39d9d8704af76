"""Commands killed outright (kill -9) at random moments, and two runs writing one output at once.

After every kill the input is byte for byte what it was, and every output is either the complete file that was
there before (a previous run's) or the complete new one, never part of one; the next run removes what the killed
ones left (temporary files beside the outputs, working folders in TMPDIR) and never a live writer's. A second run
on an output in use stops with one line naming the lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datakit.io.lock import lock_path, output_lock
from tests.conftest import EXAMPLES, run_cli

DATAKIT = str(Path(sys.executable).parent / "datakit")
KILLS = 12
UNREADABLE = ['{"instruction": "cut off", "output": ', "not json at all"]


def records(n: int, seed: int) -> list[str]:
    """n JSON lines made from the bundled Alpaca samples (words, or Chinese characters, shuffled so that records are
    not all near-duplicates of 350), each with a category, plus two unreadable lines for the rejected files."""
    base = [*json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8")),
            *json.loads((EXAMPLES / "alpaca_zh_sample.json").read_text(encoding="utf-8"))]
    rng = random.Random(seed)

    def shuffled(text: str) -> str:
        parts = text.split(" ") if " " in text else list(text)
        rng.shuffle(parts)
        return (" " if " " in text else "").join(parts)

    lines = [json.dumps({**base[i % len(base)], "instruction": f"{shuffled(base[i % len(base)]['instruction'])} ({i})",
                         "output": shuffled(base[i % len(base)]["output"]), "category": "abcd"[i % 7 % 4]},
                        ensure_ascii=False) for i in range(n)]
    lines[n // 3], lines[2 * n // 3] = UNREADABLE
    return lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# command -> (arguments given the input, a second input and the output folder; the outputs, relative to that folder)
COMMANDS = {
    "fix": (lambda data, other, out: ["fix", data, "-o", out / "clean.jsonl", "-q", "--only", "format,empty,hygiene,duplicate"],
            ["clean.jsonl", "clean.rejected.jsonl"], 6000),
    "split": (lambda data, other, out: ["split", data, "-o", out / "sp", "--seed", "3"],
              ["sp/train.jsonl", "sp/eval.jsonl", "sp/rejected.jsonl"], 1500),
    "balance": (lambda data, other, out: ["balance", data, "--by", "category", "-o", out / "bal.jsonl"],
                ["bal.jsonl", "bal.rejected.jsonl"], 20000),
    "convert": (lambda data, other, out: ["convert", data, "--to", "sharegpt", "-o", out / "conv.jsonl"],
                ["conv.jsonl", "conv.rejected.jsonl"], 20000),
    "mix": (lambda data, other, out: ["mix", data, other, "-o", out / "mix.jsonl", "--ratio", "0.7,0.3", "--total", "15000"],
            ["mix.jsonl"], 20000),
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(out: Path, names: list[str]) -> dict[str, bytes | None]:
    return {name: (out / name).read_bytes() if (out / name).is_file() else None for name in names}


def leftovers(out: Path, names: list[str], tmp: Path) -> list[str]:
    """Whatever is there besides the outputs: temporary files and folders beside them, working folders in TMPDIR."""
    kept = {*names, *(str(Path(n).parent) for n in names)}
    return [str(p.relative_to(out)) for p in out.rglob("*") if str(p.relative_to(out)) not in kept] + [p.name for p in tmp.iterdir()]


def start(args: list, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(tmp), COLUMNS="500")  # messages on one line
    return subprocess.Popen([DATAKIT, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode()


def succeeds(args: list, tmp: Path) -> bool:
    code, err = finish(start(args, tmp))
    assert code == 0, err
    return True


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_killed_at_random_moments_leaves_whole_files_and_the_next_run_cleans_up(command, tmp_path):
    make_args, names, size = COMMANDS[command]
    lines = records(size, seed=1)
    data, other = write_lines(tmp_path / "data.jsonl", lines), write_lines(tmp_path / "other.jsonl", records(size // 2, seed=2))
    inputs = {p: digest(p) for p in (data, other)}
    tmp, ref, out = tmp_path / "tmp", tmp_path / "ref", tmp_path / "out"
    tmp.mkdir()

    started = time.monotonic()  # the complete outputs, and how long a whole run takes
    assert succeeds(make_args(data, other, ref), tmp)
    duration = time.monotonic() - started
    final = snapshot(ref, names)
    previous_input = write_lines(tmp_path / "previous.jsonl", lines[:300][::-1])  # a previous run's complete outputs
    assert succeeds(make_args(previous_input, other, out), tmp)
    previous = snapshot(out, names)
    assert all(previous[n] != final[n] for n in names if final[n] is not None)

    rng = random.Random(f"{command} kills")
    outcomes = {"killed": 0, "finished first": 0, "left temporary files": 0}
    for _ in range(KILLS):
        proc = start(make_args(data, other, out), tmp)
        time.sleep(rng.uniform(0.05, duration))
        proc.send_signal(signal.SIGKILL)
        code, err = finish(proc)
        outcomes["killed" if code == -signal.SIGKILL else "finished first"] += 1
        assert code in (0, -signal.SIGKILL), err
        assert {p: digest(p) for p in inputs} == inputs
        now = snapshot(out, names)
        for name in names:
            assert now[name] in (previous[name], final[name]), f"{name}: neither the previous file nor the new one"
        outcomes["left temporary files"] += bool(leftovers(out, names, tmp))

    assert succeeds(make_args(data, other, out), tmp)
    assert snapshot(out, names) == final
    assert leftovers(out, names, tmp) == []  # the last run removed what every killed one left
    assert {p: digest(p) for p in inputs} == inputs
    print(f"\n{command}: {KILLS} kills at random moments up to {duration:.1f} s: {outcomes}")


def test_the_next_run_removes_temporary_files_of_dead_writers_and_keeps_a_live_one(tmp_path):
    data = write_lines(tmp_path / "data.jsonl", records(200, seed=1))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more
    live = os.getpid()  # this test's process: alive while the command runs
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    stale = [out / f".clean.jsonl.pid{gone.pid}.k2j4x9.tmp", out / f".clean.jsonl.pid{gone.pid}.pending",
             out / f"..clean.jsonl.pid{gone.pid}.pending.pid{gone.pid}.a8_3.tmp", tmp / f"datakit-pid{gone.pid}-u7w1"]
    kept = [out / f".clean.jsonl.pid{live}.zz81.tmp", tmp / f"datakit-pid{live}-q0q0",
            out / f".other.jsonl.pid{gone.pid}.k2j4x9.tmp"]  # another output's: its own next run clears it
    for path in stale + kept:
        path.mkdir() if path.parent == tmp else path.write_text("partial")
    assert succeeds(["fix", data, "-o", out / "clean.jsonl", "-q", "--only", "format,empty"], tmp)
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


def test_a_second_fix_writing_the_same_output_stops_with_a_message_naming_the_lock(tmp_path):
    data = write_lines(tmp_path / "data.jsonl", records(4000, seed=1))
    tmp, ref, out = tmp_path / "tmp", tmp_path / "ref", tmp_path / "out"
    tmp.mkdir()
    assert succeeds(["fix", data, "-o", ref / "clean.jsonl", "-q"], tmp)
    first = start(["fix", data, "-o", out / "clean.jsonl", "-q"], tmp)
    deadline = time.monotonic() + 120
    while not lock_path(out / "clean.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = start(["fix", data, "-o", out / "clean.jsonl", "-q"], tmp)
    code, err = finish(second)
    assert code == 2 and "Traceback" not in err, err
    assert "another run is writing this file" in err and ".clean.jsonl.lock" in err and f"pid {first.pid}" in err, err
    assert finish(first)[0] == 0
    assert snapshot(out, ["clean.jsonl", "clean.rejected.jsonl"]) == snapshot(ref, ["clean.jsonl", "clean.rejected.jsonl"])
    assert sorted(p.name for p in out.iterdir()) == ["clean.jsonl", "clean.rejected.jsonl"]  # the lock is gone too


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_writing_command_refuses_an_output_another_run_holds(command, tmp_path):
    make_args, names, _ = COMMANDS[command]
    data, other = write_lines(tmp_path / "data.jsonl", records(300, seed=1)), write_lines(tmp_path / "o.jsonl", records(100, 2))
    out = tmp_path / "out"
    with output_lock("a test", [out / names[0]]):
        proc = run_cli(*make_args(data, other, out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"pid {os.getpid()} (a test) holds the lock" in " ".join(proc.stderr.split()), proc.stderr
    assert not any((out / name).exists() for name in names)
