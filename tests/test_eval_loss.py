"""Per-label, per-source and per-length eval loss: each equals a hand computation (the model's forward and torch's
cross-entropy over the answer tokens, token-weighted per group), and the groups add up to the whole eval loss."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from datakit.normalise import load
from tests.trainkit_helpers import alpaca_sample, identity_records, write_jsonl
from trainkit.evaluate import evaluate, length_bucket
from trainkit.generate import Inference
from trainkit.model import load_tokenizer
from trainkit.tokenize import IGNORE, prepare_tokenizer


@pytest.fixture(scope="module")
def constructed(tiny_model, tmp_path_factory):
    """Identity records labelled 'who', Alpaca records labelled 'task' or 'long', one record from another mix source."""
    records = [r | {"kind": "who"} for r in identity_records(6)]
    records += [r | {"kind": "task"} for r in alpaca_sample(8)[:5]]
    context = " ".join(r["output"] for r in alpaca_sample(20)[10:13])  # a long input: prompts of several hundred tokens
    records += [r | {"kind": "long", "input": context} for r in alpaca_sample(8)[5:]]
    records[2]["_source"] = "general.jsonl"
    path = write_jsonl(tmp_path_factory.mktemp("eval") / "constructed.jsonl", records)
    frame = load(path, "kind").valid
    tokenizer = load_tokenizer(tiny_model)
    prepare_tokenizer(tokenizer, "chat")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model)).eval()
    inf = Inference(model=model, tokenizer=tokenizer, template="chat", max_length=8192, device="cpu",
                    answers_with=f"model {tiny_model}", run={})
    return frame, inf


def hand(frame, inf):
    """Per record (label, source, answer-token CE sum, answer tokens, prompt tokens), computed without trainkit's loss."""
    out = []
    for row in frame.to_dicts():
        messages = row["messages"]
        prompt = inf.tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        whole = inf.tokenizer.apply_chat_template(messages, tokenize=False)
        p_ids = inf.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = inf.tokenizer(whole[len(prompt):], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + a_ids])
        labels = torch.tensor([[IGNORE] * len(p_ids) + a_ids])
        with torch.no_grad():
            logits = inf.model(input_ids=ids).logits[0, :-1].float()
        ce = F.cross_entropy(logits, labels[0, 1:], ignore_index=IGNORE, reduction="sum")
        source = json.loads(row["raw"]).get("_source", row["source"])
        out.append((row["label"], source, float(ce), len(a_ids), len(p_ids)))
    return out


def by(records, key):
    groups = {}
    for r in records:
        total, n = groups.get(key(r), (0.0, 0))
        groups[key(r)] = (total + r[2], n + r[3])
    return {k: total / n for k, (total, n) in groups.items()}


def test_per_label_eval_loss_equals_a_hand_computation(constructed):
    frame, inf = constructed
    report = evaluate(inf, frame, method="full", label_field="kind", worst=0, progress=False)
    expected = hand(frame, inf)
    labels = by(expected, lambda r: r[0])
    assert {g["name"] for g in report["by_label"]} == {"who", "task", "long"}
    for g in report["by_label"]:
        assert g["loss"] == pytest.approx(labels[g["name"]], rel=1e-4)
        assert g["perplexity"] == pytest.approx(math.exp(labels[g["name"]]), rel=1e-3)
    assert sum(g["records"] for g in report["by_label"]) == 14
    overall = sum(r[2] for r in expected) / sum(r[3] for r in expected)
    assert report["loss"] == pytest.approx(overall, rel=1e-4)
    assert report["tokens"] == sum(r[3] for r in expected)
    losses = [g["loss"] for g in report["by_label"]]
    assert losses == sorted(losses, reverse=True)  # the weakest class first


def test_per_source_and_per_length_groups_equal_the_hand_computation(constructed):
    frame, inf = constructed
    report = evaluate(inf, frame, method="full", label_field="kind", worst=0, progress=False)
    expected = hand(frame, inf)
    sources = by(expected, lambda r: r[1])
    assert {g["name"] for g in report["by_source"]} == set(sources) and "general.jsonl" in sources
    for g in report["by_source"]:
        assert g["loss"] == pytest.approx(sources[g["name"]], rel=1e-4)
    lengths = by(expected, lambda r: length_bucket(r[4])[1])
    assert {g["name"] for g in report["by_length"]} == set(lengths) and len(lengths) >= 2
    for g in report["by_length"]:
        assert g["loss"] == pytest.approx(lengths[g["name"]], rel=1e-4)


def test_worst_records_come_with_the_model_answer_beside_the_reference(constructed):
    frame, inf = constructed
    report = evaluate(inf, frame, method="full", label_field="kind", worst=3, progress=False)
    worst = report["worst"]
    assert len(worst) == 3 and [w["loss"] for w in worst] == sorted((w["loss"] for w in worst), reverse=True)
    assert worst[0]["loss"] == pytest.approx(max(r[2] / r[3] for r in hand(frame, inf)), rel=1e-4)
    for w in worst:
        assert isinstance(w["answer"], str) and w["reference"] and w["prompt"][-1]["role"] == "user"


def test_records_over_the_runs_max_length_are_counted_not_scored(constructed):
    frame, inf = constructed
    short = Inference(**{**inf.__dict__, "max_length": 60})
    report = evaluate(short, frame, method="full", label_field="kind", worst=0, progress=False)
    assert report["over_length"] and report["records"] + len(report["over_length"]) == 14
