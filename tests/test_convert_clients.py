"""convert's output read by the tools it is for: Hugging Face `datasets` loads every file, each LLaMA-Factory
dataset_info entry reads its file the way LLaMA-Factory's converters do, and TRL's SFTTrainer trains on the OpenAI
messages. Local files only, offline."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before `datasets` is imported: it reads them once
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets

import datakit
from datakit.convert import ConvertResult
from tests.conftest import EXAMPLES

SAMPLES = ["alpaca_en_sample.json", "alpaca_zh_sample.json", "identity.json", "alpaca_eval_sample.json",
           "belle_sample.jsonl", "sharegpt_sample.json", "glaive_toolcall_en_sample.json", "messages_sample.jsonl"]
TARGETS = ["alpaca", "sharegpt", "openai"]
SHAREGPT_DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                         "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
LOADERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}  # LLaMA-Factory's FILEEXT2TYPE, for our outputs


def load(folder: Path, entry: dict, cache: Path) -> datasets.Dataset:
    """The file an entry names, loaded as LLaMA-Factory loads it: `datasets.load_dataset` picked by extension."""
    path = folder / entry["file_name"]
    return datasets.load_dataset(LOADERS[path.suffix], data_files=str(path), split="train", cache_dir=str(cache))


def aligned(entry: dict, row: dict) -> tuple[str, list[dict], dict] | None:
    """(system, prompt turns, response) as LLaMA-Factory's converter for the entry's formatting aligns one row
    (src/llamafactory/data/converter.py), or None where it would skip the row as broken."""
    columns = entry.get("columns", {})
    if entry.get("formatting", "alpaca") == "alpaca":
        prompt = [{"role": role, "content": text} for pair in (row[columns["history"]] if "history" in columns and
                                                              isinstance(row[columns["history"]], list) else [])
                  for role, text in zip(("user", "assistant"), pair)]
        query = "\n".join(row[columns[c]] for c in ("prompt", "query") if row[columns[c]])
        response = row[columns["response"]]
        system = row[columns["system"]] if "system" in columns else ""
        return (system or "", [*prompt, {"role": "user", "content": query}],
                {"role": "assistant", "content": response}) if isinstance(response, str) else None
    tags = SHAREGPT_DEFAULT_TAGS | entry.get("tags", {})
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["observation_tag"]: "observation",
             tags["function_tag"]: "function", tags["system_tag"]: "system"}
    messages = row[columns.get("messages", "conversations")]
    system = row[columns["system"]] if "system" in columns else ""
    if messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        system, messages = messages[0][tags["content_tag"]], messages[1:]
    turns = []
    for m in messages:
        role, content = m[tags["role_tag"]], m[tags["content_tag"]]
        if entry["formatting"] == "openai" and role == tags["assistant_tag"] and m.get("tool_calls"):
            role, content = tags["function_tag"], json.dumps([c["function"] for c in m["tool_calls"]], ensure_ascii=False)
        if entry["formatting"] == "openai" and role == tags["observation_tag"] and turns and turns[-1]["role"] == "observation":
            turns[-1]["content"] += "\n</tool_response>\n<tool_response>\n" + content  # results of one call step
            continue
        turns.append({"role": roles.get(role, role), "content": content})
    accepted = (("user", "observation"), ("assistant", "function"))
    if len(turns) % 2 or any(t["role"] not in accepted[i % 2] for i, t in enumerate(turns)):
        return None
    return system or "", turns[:-1], turns[-1]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, str, ConvertResult]]:
    """Every bundled sample converted to every target, registered under `<sample>_<target>` in one dataset_info.json."""
    folder = tmp_path_factory.mktemp("llamafactory-data")
    out = {}
    for sample in SAMPLES:
        for to in TARGETS:
            name = f"{sample.split('.')[0]}_{to}"
            result = datakit.convert(EXAMPLES / sample, to, folder / f"{name}.json", dataset_info=name)
            out[sample, to] = (folder, name, result)
    return out


@pytest.mark.parametrize("to", TARGETS)
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_entry_reads_every_record_of_its_file_as_llamafactory_does(converted, tmp_path, sample, to):
    folder, name, result = converted[sample, to]
    entry = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))[name]
    ds = load(folder, entry, tmp_path)
    assert ds.num_rows == result.converted + result.unchanged > 0
    assert set(entry.get("columns", {}).values()) <= set(ds.column_names)
    for row in ds:
        read = aligned(entry, row)
        assert read is not None, f"{name}: LLaMA-Factory would skip {row}"
        system, prompt, response = read
        assert isinstance(system, str) and all(isinstance(t["content"], str) for t in [*prompt, response])
        assert prompt[-1]["role"] in ("user", "observation") and prompt[-1]["content"].strip()
        assert response["role"] in ("assistant", "function")


@pytest.mark.parametrize("sample", [s for s in SAMPLES if not s.startswith("glaive")])
def test_the_three_formats_of_one_sample_read_as_the_same_conversations(converted, tmp_path, sample):
    readings = {}
    for to in TARGETS:
        folder, name, result = converted[sample, to]
        assert result.refused == 0  # every record of these samples fits every format, so rows pair up by position
        entry = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))[name]
        readings[to] = [aligned(entry, row) for row in load(folder, entry, tmp_path / to)]
    assert readings["alpaca"] == readings["sharegpt"] == readings["openai"]


def test_trl_sft_trainer_trains_two_steps_on_the_openai_output(tmp_path, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    datakit.convert(EXAMPLES / "alpaca_en_sample.json", "openai", tmp_path / "train.jsonl")
    train = datasets.load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train",
                                  cache_dir=str(tmp_path / "cache"))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), local_files_only=True)
    before = [p.detach().clone() for p in model.parameters()]
    args = SFTConfig(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, max_length=256,
                     learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train,
                         processing_class=AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True))
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert trainer.state.global_step == 2 and len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
