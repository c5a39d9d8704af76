"""Training runs end to end on a tiny random-init model: loss falls, outputs reload exactly, resume is exact."""
from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from tests.conftest import run_cli
from tests.trainkit_helpers import identity_records, write_jsonl
from trainkit import merge, train
from trainkit.model import load_tokenizer
from trainkit.monitor import oom_advice
from trainkit.train import OutOfMemory, RunError


def _losses(run_dir):
    history = json.loads((run_dir / "run_report.json").read_text())["log_history"]
    return [(h["step"], h["loss"], h["learning_rate"]) for h in history if "loss" in h]


def _probe(tiny_model):
    tok = load_tokenizer(tiny_model)
    return torch.tensor([tok("<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")["input_ids"]])


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora-run")
    data = write_jsonl(tmp / "identity.jsonl", identity_records(40))
    return train(data, tiny_model, tmp / "run", method="lora", max_steps=16, learning_rate=1e-2, progress=False)


def test_lora_training_lowers_the_loss(lora_run):
    losses = [loss for _, loss, _ in _losses(lora_run.run_dir)]
    assert losses[-1] < losses[0] - 0.2, losses
    assert lora_run.eval_loss is not None  # 4 of 40 records were held out and evaluated


def test_adapter_is_peft_safetensors_and_reloads_with_the_same_logits(lora_run, tiny_model):
    from peft import PeftModel

    adapter = lora_run.output_dir
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    trained = lora_run.model.eval()
    ids = _probe(tiny_model)
    with torch.no_grad():
        a, b = trained(input_ids=ids).logits, reloaded(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model)(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, base, atol=1e-3)  # the adapter changed something


def test_merged_model_gives_the_logits_of_base_plus_adapter(lora_run, tiny_model, tmp_path):
    out = merge(lora_run.run_dir, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = _probe(tiny_model)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, lora_run.model.eval()(input_ids=ids).logits, atol=1e-4)
    assert not list(out.glob("adapter_*"))  # a plain model folder, no adapter left


def test_run_folder_keeps_audit_report_checksum_and_html_report(lora_run):
    run = lora_run.run_dir
    audit = json.loads((run / "audit_report.json").read_text())
    data = run.parent / "identity.jsonl"
    assert audit["checksum"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    report = json.loads((run / "run_report.json").read_text())
    assert report["audit"]["checksum"] == audit["checksum"]
    assert report["throughput"]["real_tokens_per_s"] > 0 and report["peak_memory"]["process_peak_rss_gib"] > 0
    html = (run / "report.html").read_text()
    assert "<svg" in html and "learning_rate" in html
    assert "<script" not in html and "<link" not in html and 'src="http' not in html  # opens offline


def test_qlora_trains_4bit_weights_and_lowers_the_loss(tiny_model, tmp_path):
    import bitsandbytes as bnb

    data = write_jsonl(tmp_path / "identity.jsonl", identity_records(16))
    result = train(data, tiny_model, tmp_path / "run", method="qlora", max_steps=10, learning_rate=1e-2, progress=False)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in result.model.modules())
    losses = [loss for _, loss, _ in _losses(result.run_dir)]
    assert losses[-1] < losses[0] - 0.1, losses
    assert (result.output_dir / "adapter_model.safetensors").is_file()


class _CtrlCAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_the_same_schedule_and_data(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "identity.jsonl", identity_records(16))
    options = {"method": "lora", "max_steps": 8, "learning_rate": 1e-2, "effective_batch": 4, "micro_batch": 2,
               "packing": False, "progress": False}
    whole = train(data, tiny_model, tmp_path / "whole", **options)
    cut = train(data, tiny_model, tmp_path / "cut", callbacks=[_CtrlCAt(3)], **options)
    assert cut.interrupted and 3 <= cut.steps < 8
    assert (tmp_path / "cut" / "checkpoints" / f"checkpoint-{cut.steps}").is_dir()
    resumed = train(data, tiny_model, tmp_path / "cut", resume=True, progress=False)
    assert resumed.steps == 8 and not resumed.interrupted
    expected, got = _losses(whole.run_dir), _losses(resumed.run_dir)
    assert [s for s, _, _ in got] == [s for s, _, _ in expected]
    for (step, loss_a, lr_a), (_, loss_b, lr_b) in zip(expected, got):
        assert lr_b == pytest.approx(lr_a, rel=1e-9), step  # the same cosine schedule
        assert loss_b == pytest.approx(loss_a, rel=1e-4), step  # the same batches, in the same order


def test_an_out_of_memory_error_is_answered_with_a_plan_change(tiny_model, tmp_path):
    class _Oom(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory")

    data = write_jsonl(tmp_path / "identity.jsonl", identity_records(16))
    with pytest.raises(OutOfMemory, match="--micro-batch 2"):
        train(data, tiny_model, tmp_path / "run", max_steps=2, micro_batch=4, effective_batch=16, progress=False,
              callbacks=[_Oom()])


def test_oom_advice_follows_the_documents_order():
    common = {"grad_accum": 4, "max_length": 2048, "method": "lora", "p90_length": 700}
    assert "--micro-batch 2" in oom_advice(micro_batch=4, gradient_checkpointing=False, **common)
    assert "--gradient-checkpointing" in oom_advice(micro_batch=1, gradient_checkpointing=False, **common)
    assert "--max-length 704" in oom_advice(micro_batch=1, gradient_checkpointing=True, **common)
    assert "--method qlora" in oom_advice(micro_batch=1, gradient_checkpointing=True, **{**common, "p90_length": 2048})


def test_a_second_run_into_the_same_folder_is_refused_without_resume(lora_run, tiny_model):
    with pytest.raises(RunError, match="--resume"):
        train(lora_run.run_dir.parent / "identity.jsonl", tiny_model, lora_run.run_dir, progress=False)


def test_audit_gate_refuses_data_with_errors_and_names_the_fix_command(tiny_model, tmp_path):
    data = tmp_path / "bad.jsonl"
    good = "".join(json.dumps(r) + "\n" for r in identity_records(12))
    data.write_text(good + '{"instruction": "broken\n' + '{"instruction": "no output here"}\n')
    proc = run_cli("train", data, "--model", tiny_model, "--output", tmp_path / "run", "--max-steps", "2", tool="trainkit")
    assert proc.returncode == 3, proc.stderr
    assert "training refused" in proc.stderr and "format.invalid_json" in proc.stderr
    assert f"datakit fix {data}" in proc.stderr and "--allow-findings" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "audit_report.json").is_file() and not (tmp_path / "run" / "adapter").exists()


def test_train_command_takes_options_from_yaml_and_trains_despite_findings_when_allowed(tiny_model, tmp_path):
    records = [{**r, "category": "greeting" if i % 3 else "identity"} for i, r in enumerate(identity_records(12))]
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"by": "category", "weights": {"greeting": 0.5, "identity": 2.0}}))
    config = tmp_path / "train.yaml"
    config.write_text(f"method: lora\nmax-steps: 50\nlearning_rate: 0.01\nclass_weights: {weights}\nallow_findings: true\n")
    proc = run_cli("train", data, "--model", tiny_model, "--output", tmp_path / "run", "--config", config, "--max-steps", "2",
                   tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["settings"]["max_steps"] == 2  # the flag won over the YAML
    assert run["settings"]["label_field"] == "category"  # named by the weights file
    assert run["plan"]["learning_rate"]["value"] == 0.01 and "set by" in run["plan"]["learning_rate"]["reason"]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert "report: " in proc.stdout


def test_unknown_yaml_option_is_one_line_and_exit_2(tiny_model, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("lerning_rate: 0.1\n")
    proc = run_cli("train", tmp_path / "d.jsonl", "--model", tiny_model, "--output", tmp_path / "run", "--config", config,
                   tool="trainkit")
    assert proc.returncode == 2
    assert "lerning_rate" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("method,peft_type", [("dora", "LORA"), ("loha", "LOHA"), ("lokr", "LOKR"), ("ia3", "IA3"),
                                              ("prefix", "PREFIX_TUNING"), ("prompt", "PROMPT_TUNING")])
def test_every_peft_method_trains_and_saves_a_peft_adapter(method, peft_type, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "identity.jsonl", identity_records(8))
    result = train(data, tiny_model, tmp_path / "run", method=method, max_steps=2, progress=False)
    config = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type
    assert config.get("use_dora", False) == (method == "dora")
    assert (result.output_dir / "adapter_model.safetensors").is_file()


def test_freeze_trains_only_the_last_layers(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "identity.jsonl", identity_records(8))
    result = train(data, tiny_model, tmp_path / "run", method="freeze", trainable_layers=1, layer_lr_decay=0.8,
                   max_steps=3, progress=False)
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(result.output_dir).state_dict()
    changed = {name for name, w in trained.items() if not torch.equal(w, base[name])}
    assert changed and all(name.startswith("model.layers.1.") for name in changed)
