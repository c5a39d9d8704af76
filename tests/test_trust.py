"""What trainkit trusts: a model folder's own Python code runs only with --trust-remote-code, pickle weights load only
with --allow-pickle-weights (and then as tensors only), and no name from a dataset or a --dataset-info option becomes
a path that is written to.

The model folders are the tiny local model (tests/trainkit_helpers.py) with their code or weights swapped for ones
that, if ever run, leave a marker file; every check drives the real CLI.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from datakit.convert import convert
from tests.conftest import EXAMPLES, run_cli
from tests.trainkit_helpers import identity_records, write_jsonl

MODEL_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("the model folder's code ran")
from transformers import Qwen2Config, Qwen2ForCausalLM


class CustomConfig(Qwen2Config):
    model_type = "custom_qwen"


class CustomModel(Qwen2ForCausalLM):
    config_class = CustomConfig
"""


class RunsCode:
    """Unpickling this runs a shell command that leaves a marker: what a malicious pytorch_model.bin does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def model_with_code(tiny_model: Path, folder: Path, marker: Path, model_type: str) -> Path:
    """The tiny model whose config.json names a Python file in the folder (auto_map) that leaves `marker` when run."""
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": model_type, "auto_map": {"AutoConfig": "custom.CustomConfig",
                                                      "AutoModelForCausalLM": "custom.CustomModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(MODEL_CODE.format(marker=str(marker)))
    return folder


def pickle_only_model(tiny_model: Path, folder: Path) -> Path:
    """The tiny model with its weights in pytorch_model.bin (a torch pickle of tensors) instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(tiny_model, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "identity.jsonl", identity_records(12))


@pytest.fixture
def modules_cache(tmp_path, monkeypatch) -> Path:
    """transformers copies a trusted folder's code here before importing it (never into the user's home)."""
    cache = tmp_path / "hf-modules"
    monkeypatch.setenv("HF_MODULES_CACHE", str(cache))
    return cache


def test_model_code_never_runs_without_the_option_even_when_stdin_says_yes(tiny_model, data, tmp_path, modules_cache):
    marker = tmp_path / "CODE_RAN"
    model = model_with_code(tiny_model, tmp_path / "custom-model", marker, "custom_qwen")
    # left unset, transformers would ask "Do you wish to run the custom code? [y/N]" on stdin: a piped "y" ran it
    proc = run_cli("plan", data, "--model", model, tool="trainkit", stdin="y\n")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--trust-remote-code" in proc.stderr and "auto_map" in proc.stderr
    assert "Traceback" not in proc.stderr and "[y/N]" not in proc.stdout + proc.stderr
    assert not marker.exists()


def test_model_code_runs_when_the_user_trusts_it(tiny_model, data, tmp_path, modules_cache):
    marker = tmp_path / "CODE_RAN"
    model = model_with_code(tiny_model, tmp_path / "custom-model", marker, "custom_qwen")
    proc = run_cli("plan", data, "--model", model, "--trust-remote-code", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists() and "custom_qwen" in proc.stdout


def test_auto_map_beside_a_known_architecture_uses_transformers_own_class(tiny_model, data, tmp_path, modules_cache):
    marker = tmp_path / "CODE_RAN"
    model = model_with_code(tiny_model, tmp_path / "qwen2-with-code", marker, "qwen2")
    proc = run_cli("train", data, "--model", model, "--output", tmp_path / "run", "--max-steps", "1", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()


def test_datakit_never_runs_a_tokenizer_folders_code(tiny_model, tmp_path, modules_cache):
    marker = tmp_path / "TOKENIZER_CODE_RAN"
    folder = tmp_path / "custom-tokenizer"
    folder.mkdir()
    shutil.copy(tiny_model / "tokenizer.json", folder)
    config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    config |= {"tokenizer_class": "CustomTokenizer", "auto_map": {"AutoTokenizer": ["custom.CustomTokenizer", None]}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                      "from transformers import PreTrainedTokenizerFast\n\n\n"
                                      "class CustomTokenizer(PreTrainedTokenizerFast):\n    pass\n")
    data = write_jsonl(tmp_path / "d.jsonl", identity_records(3))
    proc = run_cli("audit", data, "--tokenizer", folder, "--only", "length", "--no-html", "-q", stdin="y\n")
    assert proc.returncode == 2, proc.stderr
    assert "auto_map" in proc.stderr and "never runs code" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_trust_options_are_refused_in_a_yaml_config(tiny_model, data, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("trust_remote_code: true\nallow-pickle-weights: true\n")
    proc = run_cli("train", data, "--model", tiny_model, "--output", tmp_path / "run", "--config", config, tool="trainkit")
    assert proc.returncode == 2, proc.stderr
    assert "--allow-pickle-weights, --trust-remote-code" in proc.stderr and "only on the command line" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_pickle_only_model_is_refused_before_anything_runs(tiny_model, data, tmp_path):
    model = pickle_only_model(tiny_model, tmp_path / "pickled")
    proc = run_cli("train", data, "--model", model, "--output", tmp_path / "run", "--max-steps", "1", tool="trainkit")
    assert proc.returncode == 2, proc.stderr
    assert "pytorch_model.bin" in proc.stderr and "--allow-pickle-weights" in proc.stderr and "safetensors" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before the audit and the run folder


@pytest.fixture(scope="module")
def pickle_run(tiny_model, tmp_path_factory):
    """One run on the pickle-only model, allowed explicitly: (its base model folder, its run folder)."""
    root = tmp_path_factory.mktemp("pickle-run")
    model = pickle_only_model(tiny_model, root / "pickled")
    data = write_jsonl(root / "identity.jsonl", identity_records(12))
    proc = run_cli("train", data, "--model", model, "--output", root / "run", "--max-steps", "1", "--allow-pickle-weights",
                   tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    return model, root / "run"


def test_allowed_pickle_weights_load_as_tensors_and_train(pickle_run):
    _, run = pickle_run
    adapter = run / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()  # what trainkit hands on is safetensors, no pickle
    assert not [p.name for p in adapter.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]


def test_merge_refuses_a_pickle_only_base_unless_allowed(pickle_run, tmp_path):
    _, run = pickle_run
    refused = run_cli("merge", run, "-o", tmp_path / "merged", tool="trainkit")
    assert refused.returncode == 2 and "--allow-pickle-weights" in refused.stderr, refused.stderr
    assert not (tmp_path / "merged").exists()
    allowed = run_cli("merge", run, "-o", tmp_path / "merged", "--allow-pickle-weights", tool="trainkit")
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_pickle_weights_that_carry_code_are_refused_even_when_allowed(tiny_model, data, tmp_path):
    marker = tmp_path / "PICKLE_RAN"
    model = pickle_only_model(tiny_model, tmp_path / "malicious")
    with open(model / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model.embed_tokens.weight": RunsCode(marker)}, f)
    proc = run_cli("train", data, "--model", model, "--output", tmp_path / "run", "--max-steps", "1", "--allow-pickle-weights",
                   tool="trainkit")
    assert proc.returncode == 2, proc.stderr
    assert "weights_only" in proc.stderr and "safetensors" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_whose_pickles_carry_code(tiny_model, data, tmp_path):
    """The Trainer's own checkpoint files (optimizer, scheduler, RNG state) are pickles; tampered ones never run."""
    run, marker = tmp_path / "run", tmp_path / "CHECKPOINT_RAN"
    proc = run_cli("train", data, "--model", tiny_model, "--output", run, "--max-steps", "2", "--save-steps", "1", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(run / "checkpoints" / "checkpoint-2")  # as if the run had been stopped after its first checkpoint
    shutil.rmtree(run / "adapter")
    first = run / "checkpoints" / "checkpoint-1"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with open(first / name, "wb") as f:
            pickle.dump({"state": RunsCode(marker)}, f)
    proc = run_cli("train", data, "--model", tiny_model, "--output", run, "--resume", tool="trainkit")
    assert proc.returncode == 2, proc.stderr
    assert f"--resume: {first}" in proc.stderr and "weights_only" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_train_report_page_runs_no_script(pickle_run):
    _, run = pickle_run
    page = (run / "report.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page and "<script" not in page


# --- names from data or options never become paths --------------------------------------------------------------

HOSTILE_NAMES = ["../../etc/x", "a/b", "/tmp/abs", "x\0y", "n" * 300, ".hidden", "a\\b", "\u202eexe.txt"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_dataset_info_name_that_could_act_as_a_path_is_refused_before_writing(tmp_path, name):
    out = tmp_path / "out" / "data.jsonl"
    with pytest.raises(ValueError, match="--dataset-info .*only letters, digits"):
        convert(EXAMPLES / "alpaca_en_sample.json", "sharegpt", out, dataset_info=name)
    assert not (tmp_path / "out").exists()


def test_dataset_info_names_in_any_script_are_kept(tmp_path):
    out = tmp_path / "data.jsonl"
    proc = run_cli("convert", EXAMPLES / "alpaca_zh_sample.json", "--to", "sharegpt", "-o", out, "--dataset-info", "中文_数据-v1.2")
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads((tmp_path / "dataset_info.json").read_text())) == ["中文_数据-v1.2"]


def test_dataset_info_option_is_one_clear_line(tmp_path):
    proc = run_cli("convert", EXAMPLES / "alpaca_en_sample.json", "--to", "sharegpt", "-o", tmp_path / "d.jsonl",
                   "--dataset-info", "../../etc/x")
    assert proc.returncode == 2 and "--dataset-info '../../etc/x'" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_source_tags_from_the_data_stay_data(tmp_path):
    """mix keeps a record's own `_source`; hostile ones are written as values and no file is named after them."""
    task = write_jsonl(tmp_path / "task.jsonl", [{**r, "_source": name} for r, name in
                                                 zip(identity_records(len(HOSTILE_NAMES)), HOSTILE_NAMES, strict=True)])
    general = write_jsonl(tmp_path / "general.jsonl", identity_records(16)[8:])
    proc = run_cli("mix", task, general, "-o", tmp_path / "mixed.jsonl", "--seed", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["general.jsonl", "mixed.jsonl", "task.jsonl"]
    assert not Path("/tmp/abs").exists() and not (tmp_path / "a").exists()
    tags = [json.loads(line)["_source"] for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    assert set(HOSTILE_NAMES) <= set(tags)
