"""convert, balance and mix stream their inputs in small batches: on a generated file of 60,000 records they never read
a whole file into memory (`read_raw` refuses), every input record is accounted for, and the output is deterministic."""
from __future__ import annotations

import importlib
import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest

import datakit
import datakit.io.read as read_module
from datakit.balance import UPSAMPLED
from datakit.io.read import RawStream

RECORDS = 60_000
BATCH = 1_000
BROKEN_EVERY = 997  # a line that is not JSON
QUESTION_EVERY = 1_009  # an eval-set question without an answer: convert refuses it


def generated_line(i: int) -> str:
    if i % BROKEN_EVERY == 0:
        return '{"instruction": "cut off'
    if i % QUESTION_EVERY == 0:
        return json.dumps({"question_id": i, "turns": [f"question {i}?"]})
    return json.dumps({"instruction": f"q{i}", "input": "x" if i % 2 else "", "output": f"a{i}", "c": "abc"[i % 7 % 3]})


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("generated") / "data.jsonl"
    path.write_text("\n".join(generated_line(i) for i in range(1, RECORDS + 1)) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def streamed(monkeypatch):
    """Batches of at most BATCH records, and no whole-file read: returns the sizes of the batches read."""
    def refuse(path, *args, **kwargs):
        raise AssertionError(f"read the whole of {path} into memory")

    monkeypatch.setattr(read_module, "read_raw", refuse)
    for name in ("datakit.convert", "datakit.balance", "datakit.mix"):
        module = importlib.import_module(name)  # not datakit.convert: that is the function
        monkeypatch.setattr(module, "read_raw", refuse, raising=False)
        monkeypatch.setattr(module, "BATCH_RECORDS", BATCH)
    sizes: list[int] = []
    real = RawStream.batches

    def counted(self, *args, **kwargs):
        for batch in real(self, *args, **kwargs):
            sizes.append(len(batch))
            yield batch

    monkeypatch.setattr(RawStream, "batches", counted)
    return sizes


def jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_convert_streams_and_accounts_for_every_record(generated, tmp_path, streamed):
    result = datakit.convert(generated, "sharegpt", tmp_path / "a.jsonl")
    datakit.convert(generated, "sharegpt", tmp_path / "b.jsonl")
    assert streamed and max(streamed) <= BATCH
    rejected = jsonl(tmp_path / "a.rejected.jsonl")
    lines = [r["line"] for r in rejected]
    assert lines == sorted(lines) and len(lines) == result.refused == RECORDS // BROKEN_EVERY + RECORDS // QUESTION_EVERY
    assert len(jsonl(tmp_path / "a.jsonl")) == result.converted == RECORDS - result.refused
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.rejected.jsonl").read_bytes() == (tmp_path / "b.rejected.jsonl").read_bytes()


def test_balance_streams_twice_and_accounts_for_every_record(generated, tmp_path, streamed):
    classes = Counter(json.loads(line).get("c") for line in map(generated_line, range(1, RECORDS + 1))
                      if not line.endswith("cut off"))
    result = datakit.balance(generated, "c", tmp_path / "a.jsonl", strategy="shares", shares={"a": 0.2, "b": 0.3, "c": 0.5},
                             seed=4)
    datakit.balance(generated, "c", tmp_path / "b.jsonl", strategy="shares", shares={"a": 0.2, "b": 0.3, "c": 0.5}, seed=4)
    assert streamed and max(streamed) <= BATCH
    out = jsonl(tmp_path / "a.jsonl")
    rejected = jsonl(tmp_path / "a.rejected.jsonl")
    assert result.capped and result.upsampled and result.unreadable == RECORDS // BROKEN_EVERY
    assert len(out) - result.upsampled + len(rejected) == RECORDS
    assert Counter(r.get("c") for r in out) == {None: classes[None]} | result.after
    lines = [r["line"] for r in rejected]
    assert lines == sorted(lines)
    original = None
    for r in out:  # every copy right after its original (or another copy of it)
        if UPSAMPLED not in r:
            original = r
            continue
        assert original == {k: v for k, v in r.items() if k != UPSAMPLED} and original["instruction"] == f"q{r[UPSAMPLED]}"
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.rejected.jsonl").read_bytes() == (tmp_path / "b.rejected.jsonl").read_bytes()


def test_mix_streams_spills_to_buckets_and_takes_each_record_at_most_once_before_repeats(generated, tmp_path, streamed,
                                                                                         monkeypatch):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"instruction": f"s{i}", "input": "", "output": "b"}) + "\n" for i in range(500)))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    mix_module = importlib.import_module("datakit.mix")
    buckets: set[int] = set()
    spill = mix_module._Buckets.add

    def add(self, position, record):
        buckets.add(position // self.size)
        spill(self, position, record)

    monkeypatch.setattr(mix_module._Buckets, "add", add)
    usable = RECORDS - RECORDS // BROKEN_EVERY - RECORDS // QUESTION_EVERY
    result = datakit.mix([generated, small], tmp_path / "a.jsonl", ratio=[0.9, 0.1], total=10_000, seed=5)
    datakit.mix([generated, small], tmp_path / "b.jsonl", ratio=[0.9, 0.1], total=10_000, seed=5)
    datakit.mix([generated, small], tmp_path / "c.jsonl", ratio=[0.9, 0.1], total=10_000, seed=6)
    assert streamed and max(streamed) <= BATCH
    assert len(buckets) == 10_000 // BATCH and list(tmp_path.joinpath("spill").iterdir()) == []  # spilled, then removed
    out = jsonl(tmp_path / "a.jsonl")
    assert Counter(r["_source"] for r in out) == {str(generated): 9_000, str(small): 1_000}
    assert [(s.available, s.taken, s.repeated, s.left_out) for s in result.sources] == [
        (usable, 9_000, 0, RECORDS - usable), (500, 1_000, 500, 0)]
    firsts = [r["instruction"] for r in out if UPSAMPLED not in r]
    assert len(firsts) == len(set(firsts)) == 9_500  # every record once before any repeat
    assert Counter(r["instruction"] for r in out if UPSAMPLED in r) == {f"s{i}": 1 for i in range(500)}
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
