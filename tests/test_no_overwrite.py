"""No command writes over what it reads: every output path (clean, rejected, weights, splits, mix) naming the input,
or two outputs naming one file, is a one-line error with exit status 2, and the input keeps its bytes."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import EXAMPLES, run_cli

SAMPLE = EXAMPLES / "belle_sample.jsonl"


@pytest.mark.parametrize(("args", "says"), [
    (["fix", "{in}", "-o", "{in}"], "is the input file"),
    (["fix", "{in}", "-o", "{dir}/clean.jsonl", "--rejected", "{in}"], "is the input file"),
    (["fix", "{in}", "-o", "{dir}/clean.jsonl", "--rejected", "{dir}/clean.jsonl"], "named for two outputs"),
    (["balance", "{in}", "--by", "class", "-o", "{in}"], "is the input file"),
    (["balance", "{in}", "--by", "class", "-o", "{dir}/b.jsonl", "--rejected", "{in}"], "is the input file"),
    (["balance", "{in}", "--by", "class", "--weights", "{in}"], "is the input file"),
    (["convert", "{in}", "--to", "sharegpt", "-o", "{in}"], "is the input file"),
    (["convert", "{in}", "--to", "sharegpt", "-o", "{dir}/c.jsonl", "--rejected", "{in}"], "is the input file"),
    (["split", "{dir}/train.jsonl", "-o", "{dir}"], "is the input file"),
    (["mix", "{in}", "{dir}/other.jsonl", "-o", "{in}"], "is the input file"),
])
def test_an_output_naming_an_input_is_refused_and_the_input_kept(tmp_path, args, says):
    data = tmp_path / "data.jsonl"
    for name in ("data.jsonl", "train.jsonl", "other.jsonl"):
        shutil.copy(SAMPLE, tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = run_cli(*(a.format(**{"in": data, "dir": tmp_path}) for a in args))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing changed


def test_a_hard_link_to_the_input_is_the_input(tmp_path):
    data = tmp_path / "data.jsonl"
    shutil.copy(SAMPLE, data)
    (tmp_path / "link.jsonl").hardlink_to(data)
    before = data.read_bytes()
    proc = run_cli("balance", data, "--by", "class", "-o", tmp_path / "link.jsonl")
    assert proc.returncode == 2 and "is the input file" in proc.stderr
    assert data.read_bytes() == before
