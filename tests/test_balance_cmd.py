"""datakit balance: caps, floors and target shares resample deterministically and lose nothing; --weights writes
inverse-frequency loss weights instead."""
from __future__ import annotations

import importlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

import datakit
from datakit.balance import UPSAMPLED
from datakit.io.read import InputError, read_raw
from tests.conftest import EXAMPLES, run_cli

BELLE = EXAMPLES / "belle_sample.jsonl"
balance_module = importlib.import_module("datakit.balance")  # not datakit.balance: that is the function


def labels(path: Path, field: str = "class") -> Counter:
    return Counter(r.obj.get(field) for r in read_raw(path).records)


def rejected(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_cap_downsamples_big_classes_and_keeps_the_rest_in_the_rejected_file(tmp_path):
    result = datakit.balance(BELLE, "class", tmp_path / "out.jsonl", strategy="cap", max_per_class=20, seed=3)
    after = labels(tmp_path / "out.jsonl")
    before = labels(BELLE)
    assert after == Counter({k: min(n, 20) for k, n in before.items()})
    capped = rejected(tmp_path / "out.rejected.jsonl")
    assert len(capped) == result.capped == sum(before.values()) - sum(after.values())
    assert {r["reasons"][0]["rule"] for r in capped} == {"balance.capped"}
    kept = [json.dumps(r.obj, sort_keys=True) for r in read_raw(tmp_path / "out.jsonl").records]
    dropped = [json.dumps(r["record"], sort_keys=True) for r in capped]
    assert sorted(kept + dropped) == sorted(json.dumps(r.obj, sort_keys=True) for r in read_raw(BELLE).records)


def test_default_cap_meets_the_balance_rules_ratio(tmp_path):
    datakit.balance(BELLE, "class", tmp_path / "out.jsonl")
    after = labels(tmp_path / "out.jsonl")
    assert max(after.values()) / min(after.values()) <= 3.0


def test_floor_upsamples_small_classes_with_marked_duplicates(tmp_path):
    result = datakit.balance(BELLE, "class", tmp_path / "out.jsonl", strategy="floor", min_per_class=30)
    records = [r.obj for r in read_raw(tmp_path / "out.jsonl").records]
    after = Counter(r["class"] for r in records)
    assert all(n >= 30 for n in after.values())
    copies = [r for r in records if UPSAMPLED in r]
    assert len(copies) == result.upsampled == sum(after.values()) - 250
    originals = {r.line: r.obj for r in read_raw(BELLE).records}
    assert all({k: v for k, v in c.items() if k != UPSAMPLED} == originals[c[UPSAMPLED]] for c in copies)
    assert (tmp_path / "out.rejected.jsonl").read_text() == ""


def test_shares_resample_every_class_to_its_target(tmp_path):
    classes = sorted(labels(BELLE))
    shares = {k: (0.5 if k == "open qa" else 0.5 / (len(classes) - 1)) for k in classes}
    datakit.balance(BELLE, "class", tmp_path / "out.jsonl", strategy="shares", shares=shares)
    after = labels(tmp_path / "out.jsonl")
    assert sum(after.values()) == 250 and after["open qa"] == 125
    datakit.balance(BELLE, "class", tmp_path / "uniform.jsonl", strategy="shares")
    assert set(labels(tmp_path / "uniform.jsonl").values()) == {25}


def test_weights_are_inverse_frequency_with_mean_one_and_nothing_is_resampled(tmp_path):
    result = datakit.balance(EXAMPLES / "alpaca_eval_sample.json", "dataset", weights=tmp_path / "w.json")
    weights = json.loads((tmp_path / "w.json").read_text())
    counts = labels(EXAMPLES / "alpaca_eval_sample.json", "dataset")
    assert set(weights) == set(counts) and sum(weights.values()) / len(weights) == pytest.approx(1.0, abs=1e-5)
    assert weights["vicuna"] > weights["selfinstruct"]  # 27 records vs 84
    assert weights["vicuna"] * counts["vicuna"] == pytest.approx(weights["selfinstruct"] * counts["selfinstruct"], rel=1e-4)
    assert result.output is None and [p.name for p in tmp_path.iterdir()] == ["w.json"]


def test_same_seed_gives_the_same_file_and_another_seed_another_sample(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        datakit.balance(BELLE, "class", tmp_path / f"{name}.jsonl", max_per_class=10, seed=seed)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_records_without_the_label_are_kept_and_unreadable_ones_rejected(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [json.dumps({"instruction": f"q{i}", "output": "an answer", "c": "a" if i < 6 else "b"}) for i in range(8)]
    rows += [json.dumps({"instruction": "no label", "output": "kept as is"}), "{not json"]
    path.write_text("\n".join(rows) + "\n")
    result = datakit.balance(path, "c", tmp_path / "out.jsonl", max_per_class=2)
    out = [r.obj for r in read_raw(tmp_path / "out.jsonl").records]
    assert Counter(r.get("c") for r in out) == Counter({"a": 2, "b": 2, None: 1})
    assert result.unreadable == 1
    assert len(out) + len(rejected(tmp_path / "out.rejected.jsonl")) == 10


def test_cli_prints_before_and_after_and_refuses_bad_shares(tmp_path):
    proc = run_cli("balance", BELLE, "--by", "class", "-o", tmp_path / "out.jsonl", "--max-per-class", "20")
    assert proc.returncode == 0, proc.stderr
    assert "before" in proc.stdout and "after" in proc.stdout and "open qa" in proc.stdout
    bad = run_cli("balance", BELLE, "--by", "class", "-o", tmp_path / "x.jsonl", "--strategy", "shares", "--shares", "math=1")
    assert bad.returncode == 2 and "give every class a share" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("balance", BELLE, "--by", "nope", "-o", tmp_path / "y.jsonl")
    assert missing.returncode == 2 and "no record has the field 'nope'" in missing.stderr


@pytest.mark.parametrize("change", ["append a record", "edit a record"])
def test_a_file_that_changes_between_the_two_passes_is_refused_and_nothing_written(tmp_path, monkeypatch, change):
    path = tmp_path / "data.jsonl"
    shutil.copy(BELLE, path)
    first_pass = balance_module._census

    def then_change(*args, **kwargs):
        census = first_pass(*args, **kwargs)
        if change == "append a record":
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"instruction": "late", "output": "arrival", "class": "open qa"}) + "\n")
        else:
            path.write_text(path.read_text(encoding="utf-8").replace('"open qa"', '"closed qa"', 1), encoding="utf-8")
        return census

    monkeypatch.setattr(balance_module, "_census", then_change)
    with pytest.raises(InputError, match="changed while it was being balanced"):
        datakit.balance(path, "class", tmp_path / "out.jsonl", max_per_class=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]
