"""Every command that writes data writes the container its output's name says (.jsonl, .json, .parquet, each optionally
.gz), whatever the input's was; the input's container is mirrored only where the command names the file itself."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import datakit
from datakit.io.read import read_raw
from tests.conftest import EXAMPLES, run_cli

NAMES = {"out.jsonl": ("jsonl", False), "out.json": ("json", False), "out.parquet": ("parquet", False),
         "out.jsonl.gz": ("jsonl", True), "out.json.gz": ("json", True)}
COMMANDS = {  # each command's arguments after the input, before -o
    "convert": ["--to", "sharegpt"],
    "balance": ["--by", "dataset"],
    "mix": [],
    "fix": ["--only", "empty", "-q"],
}


@pytest.fixture
def array_input(tmp_path: Path) -> Path:
    """60 real records of the AlpacaEval sample as a JSON array: the container no output here asks for by default."""
    path = tmp_path / "input.json"
    path.write_text(json.dumps(json.loads((EXAMPLES / "alpaca_eval_sample.json").read_text())[:60], ensure_ascii=False,
                               indent=2), encoding="utf-8")
    return path


def _container(path: Path) -> tuple[str, bool]:
    read = read_raw(path)
    return read.container, read.gzip


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", list(NAMES))
def test_the_output_name_decides_the_container_for_every_command(tmp_path, array_input, command, name):
    out = tmp_path / name
    proc = run_cli(command, array_input, *COMMANDS[command], "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert _container(out) == NAMES[name]
    assert len(read_raw(out).records) > 0 and all(r.error is None for r in read_raw(out).records)
    assert "is written as JSON Lines" not in proc.stdout  # the name said the container: nothing to note


def test_a_jsonl_output_from_a_json_array_holds_one_record_per_line(tmp_path, array_input):
    proc = run_cli("convert", array_input, "--to", "openai", "-o", tmp_path / "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 60 and all("messages" in json.loads(line) for line in lines)
    assert "note" not in proc.stdout


def test_without_an_output_name_convert_mirrors_the_input_container(tmp_path):
    source = tmp_path / "chat.json.gz"
    source.write_bytes(gzip.compress((EXAMPLES / "sharegpt_sample.json").read_bytes()))
    result = datakit.convert(source, "openai")
    assert result.output == tmp_path / "chat.openai.json.gz"
    assert _container(result.output) == ("json", True)
    assert result.rejected_path == tmp_path / "chat.openai.rejected.jsonl"


def test_a_name_that_says_no_container_is_json_lines_and_the_command_says_so(tmp_path, array_input):
    proc = run_cli("convert", array_input, "--to", "sharegpt", "-o", tmp_path / "out.txt")
    assert proc.returncode == 0, proc.stderr
    assert _container(tmp_path / "out.txt") == ("jsonl", False)
    assert "out.txt is written as JSON Lines" in " ".join(proc.stdout.split())


def test_an_explicit_rejected_file_follows_its_name_too(tmp_path):
    result = datakit.convert(EXAMPLES / "glaive_toolcall_en_sample.json", "alpaca", tmp_path / "alpaca.jsonl",
                             rejected=tmp_path / "refused.json.gz")
    assert result.refused > 0 and _container(tmp_path / "refused.json.gz") == ("json", True)
    rows = json.loads(gzip.decompress((tmp_path / "refused.json.gz").read_bytes()))
    assert len(rows) == result.refused and all(r["reasons"][0]["rule"] == "convert.not_representable" for r in rows)


@pytest.mark.parametrize("command", ["convert", "balance", "fix"])
def test_a_parquet_rejected_file_is_refused_before_anything_is_written(tmp_path, array_input, command):
    proc = run_cli(command, array_input, *COMMANDS[command], "-o", tmp_path / "out.jsonl", "--rejected",
                   tmp_path / "rejected.parquet")
    assert proc.returncode == 2 and "rejected.parquet: a rejected file is written as JSON Lines or a JSON array" in \
        " ".join(proc.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.json"]
