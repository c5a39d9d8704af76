"""The plan follows the documents' rules, says why for every choice, and never truncates a record silently."""
from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES, run_cli
from trainkit.model_info import ModelInfo, inspect_model
from trainkit.plan import Choice, choose_epochs, choose_learning_rate, choose_method, make_plan

QWEN2_1_5B = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
              "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}


def _info(params: float, hidden=4096, layers=32) -> ModelInfo:
    return ModelInfo(path="m", model_type="qwen2", params=int(params), hidden_size=hidden, num_layers=layers, vocab_size=32000,
                     max_positions=4096, linear_modules=["k_proj", "o_proj", "q_proj", "v_proj"], has_chat_template=True)


@pytest.mark.parametrize("billions,method,lr", [
    (7, "full", 1e-5), (7, "lora", 5e-5), (7, "qlora", 1e-4),
    (13, "full", 5e-6), (13, "lora", 3e-5), (13, "qlora", 5e-5),
    (70, "full", 1e-6), (70, "lora", 1e-5), (70, "qlora", 3e-5), (180, "lora", 1e-5),
])
def test_learning_rate_is_the_documents_table_at_its_sizes(billions, method, lr):
    assert choose_learning_rate(billions, method).value == pytest.approx(lr)


def test_small_model_learning_rate_is_scaled_up_and_says_so():
    choice = choose_learning_rate(1.5, "lora")
    assert 5e-5 < choice.value <= 1e-4
    assert "7B" in choice.reason and "smaller" in choice.reason


def test_learning_rate_between_sizes_is_interpolated():
    assert 3e-5 < choose_learning_rate(10, "lora").value < 5e-5


@pytest.mark.parametrize("gpu,records,method", [
    (80, 5000, "lora"), (24, 5000, "lora"), (16, 5000, "qlora"), (12, 5000, "qlora"), (24, 50, "lora"),
])
def test_method_follows_gpu_memory_tiers_for_a_7b_model(gpu, records, method):
    choice, warnings = choose_method(7_600_000_000, gpu, records)
    assert choice.value == method, choice.reason
    assert not warnings


def test_too_little_memory_for_the_model_recommends_a_smaller_one():
    _, warnings = choose_method(70_000_000_000, 16, 5000)
    assert warnings and "smaller model" in warnings[0]


def test_large_dataset_on_an_80gb_gpu_makes_full_fine_tuning_possible():
    assert choose_method(1_500_000_000, 80, 50_000)[0].value == "full"


def test_few_samples_mean_few_shot_lora():
    assert "few-shot" in choose_method(7_000_000_000, 24, 60)[0].reason


@pytest.mark.parametrize("records,low,high", [(30, 5, 10), (99, 5, 10), (100, 3, 5), (999, 3, 5), (5000, 2, 3), (50_000, 1, 2)])
def test_epochs_follow_dataset_size(records, low, high):
    assert low <= choose_epochs(records).value <= high


def _plan(lengths, **kw):
    return make_plan(data="d.jsonl", info=_info(7e9), lengths=lengths, lines=list(range(1, len(lengths) + 1)),
                     template=Choice(value="chat", reason="test"), gpu_mem_gib=80, **kw)


def test_max_length_covers_p99_rounded_up_and_longer_records_are_listed_not_truncated():
    lengths = [100 + i for i in range(199)] + [5000]
    p = _plan(lengths)
    assert p.max_length.value == 320  # p99 is 297 -> next multiple of 64
    assert p.over_length == [(200, 5000)]
    assert any("line" in w and "200" in w and "not truncated" in w for w in p.warnings)


def test_effective_batch_of_16_to_32_is_reached_through_accumulation():
    p = _plan([300] * 5000, packing=False)
    assert 16 <= p.effective_batch.value <= 32
    assert p.micro_batch.value * p.grad_accum.value >= p.effective_batch.value


def test_every_choice_carries_its_reason():
    p = _plan([120] * 400)
    for name, field in p:
        if isinstance(field, Choice):
            assert field.reason, name


def test_short_records_are_packed_and_the_reason_names_the_median():
    p = _plan([120] * 400 + [1000] * 5)
    assert p.packing.value is True and "median" in p.packing.reason


def test_model_size_and_targets_come_from_config_json_alone(tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(**QWEN2_1_5B).save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no weights anywhere
    info = inspect_model(tmp_path)
    assert 1.5e9 < info.params < 1.6e9
    assert set(info.linear_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_plan_command_on_the_real_alpaca_sample(tiny_model, tmp_path):
    out = tmp_path / "plan.json"
    proc = run_cli("plan", EXAMPLES / "alpaca_en_sample.json", "--model", tiny_model, "--gpu-mem", "24", "--json", out,
                   tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    for setting in ("method", "learning_rate", "epochs", "effective_batch", "max_length", "target_modules"):
        assert setting in proc.stdout
    plan = json.loads(out.read_text())
    assert plan["records"] == 200
    assert plan["epochs"]["value"] in (3, 4, 5)  # 100-1000 records
    assert plan["max_length"]["value"] >= plan["token_lengths"]["p99"]
    assert plan["lora"]["value"] == {"r": 8, "alpha": 16, "dropout": 0.05}


def test_plan_command_with_a_missing_model_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("plan", EXAMPLES / "alpaca_en_sample.json", "--model", tmp_path / "nope", tool="trainkit")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a directory" in proc.stderr
