"""datakit mix: blends inputs at the asked ratio, tags every record with its source, is deterministic, and refuses
to mix formats unless told which one to convert to."""
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

EN, ZH, SHAREGPT = EXAMPLES / "alpaca_en_sample.json", EXAMPLES / "alpaca_zh_sample.json", EXAMPLES / "sharegpt_sample.json"
mix_module = importlib.import_module("datakit.mix")  # not datakit.mix: that is the function


def records(path: Path) -> list:
    return [r.obj for r in read_raw(path).records]


def test_mix_takes_each_source_at_its_ratio_and_tags_it(tmp_path):
    result = datakit.mix([EN, ZH], tmp_path / "mix.jsonl", ratio=[0.8, 0.2], seed=1)
    mixed = records(tmp_path / "mix.jsonl")
    assert Counter(r["_source"] for r in mixed) == {str(EN): 200, str(ZH): 50}
    assert result.total == 250  # the largest mix that repeats nothing: all 200 English at 80%
    originals = {json.dumps(r, sort_keys=True) for r in records(EN) + records(ZH)}
    assert all(json.dumps({k: v for k, v in r.items() if k != "_source"}, sort_keys=True) in originals for r in mixed)
    assert [r["_source"] for r in mixed[:20]] != sorted(r["_source"] for r in mixed[:20])  # interleaved, not stacked


def test_mix_is_deterministic_for_a_seed(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        datakit.mix([EN, ZH], tmp_path / f"{name}.jsonl", ratio=[0.5, 0.5], seed=seed)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_a_total_beyond_a_source_repeats_its_records_marked(tmp_path):
    result = datakit.mix([EN, ZH], tmp_path / "mix.jsonl", ratio=[0.5, 0.5], total=400)
    mixed = records(tmp_path / "mix.jsonl")
    counts = Counter(r["_source"] for r in mixed)
    assert counts == {str(EN): 200, str(ZH): 200}
    repeats = [r for r in mixed if UPSAMPLED in r]
    assert len(repeats) == 50 == sum(s.repeated for s in result.sources)
    assert all(r["_source"] == str(ZH) for r in repeats)


def test_mixing_formats_is_refused_unless_converted(tmp_path):
    proc = run_cli("mix", EN, SHAREGPT, "--ratio", "0.8,0.2", "-o", tmp_path / "mix.jsonl")
    assert proc.returncode == 2 and "different record formats" in proc.stderr and "--to" in proc.stderr
    assert not (tmp_path / "mix.jsonl").exists()
    proc = run_cli("mix", EN, SHAREGPT, "--ratio", "0.8,0.2", "--to", "sharegpt", "-o", tmp_path / "mix.json", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    mixed = records(tmp_path / "mix.json")
    assert all("conversations" in r for r in mixed) and read_raw(tmp_path / "mix.json").container == "json"
    assert Counter(r["_source"] for r in mixed) == {str(EN): 200, str(SHAREGPT): 50}
    assert "_source" in proc.stdout or "source" in proc.stdout


def test_ratio_must_match_the_inputs(tmp_path):
    proc = run_cli("mix", EN, ZH, "--ratio", "0.8", "-o", tmp_path / "mix.jsonl")
    assert proc.returncode == 2 and "one per input" in proc.stderr and "Traceback" not in proc.stderr


def test_an_input_that_changes_between_the_two_passes_is_refused_and_nothing_written(tmp_path, monkeypatch):
    path = tmp_path / "en.json"
    shutil.copy(EN, path)
    first_pass = mix_module._pool

    def then_change(source, to):
        pool = first_pass(source, to)
        if source == path:
            path.write_text(path.read_text(encoding="utf-8").replace('"output"', '"answer"', 1), encoding="utf-8")
        return pool

    monkeypatch.setattr(mix_module, "_pool", then_change)
    with pytest.raises(InputError, match="changed while it was being mixed"):
        datakit.mix([path, ZH], tmp_path / "mix.jsonl", ratio=[0.5, 0.5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["en.json"]
