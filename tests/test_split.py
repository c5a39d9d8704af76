"""datakit split: train / eval (/ test) in the input's format, whole duplicate and near-duplicate groups per split,
stratified when asked, deterministic, and leakage-free by the audit's own --against check."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

import datakit
from datakit.io.read import read_raw
from datakit.measure import ensure
from datakit.measure.lsh import near_duplicate_clusters
from datakit.normalise import load
from schemas.config import AuditConfig
from tests.conftest import EXAMPLES, audit_json, run_cli

TOPICS = ["volcanoes", "glaciers", "coral reefs", "deserts", "rainforests", "tundra", "mangroves", "savannas",
          "wetlands", "canyons", "estuaries", "prairies"]


def records(path: Path) -> list:
    return [r.obj for r in read_raw(path).records]


def key(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def duplicate_heavy(tmp_path: Path) -> Path:
    """Real records plus near-duplicate rewordings, exact copies and same-prompt variants of some of them."""
    rows = [r for r in records(EXAMPLES / "alpaca_en_sample.json") if len(r["output"].split()) > 40][:40]
    for i in range(0, 12, 2):
        words = rows[i]["output"].split()
        near = dict(rows[i], output=" ".join(words[:-1] + ["indeed."]))
        rows += [near, dict(rows[i + 1]), dict(rows[i + 2], output="A different answer to the same question.")]
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def split_of(out: Path) -> dict[str, str]:
    return {key(r): s for s in ("train", "eval", "test") if (out / f"{s}.jsonl").exists()
            for r in records(out / f"{s}.jsonl")}


def test_split_writes_train_and_eval_in_the_input_format_and_keeps_every_record(tmp_path):
    result = datakit.split(EXAMPLES / "alpaca_en_sample.json", tmp_path / "out", eval_share=0.1, seed=1)
    train, evals = records(tmp_path / "out" / "train.json"), records(tmp_path / "out" / "eval.json")
    assert read_raw(tmp_path / "out" / "eval.json").container == "json"
    assert sorted(map(key, train + evals)) == sorted(map(key, records(EXAMPLES / "alpaca_en_sample.json")))
    assert result.counts == {"train": len(train), "eval": len(evals)} and 15 <= len(evals) <= 20


def test_duplicates_near_duplicates_and_shared_prompts_never_straddle_splits(tmp_path):
    path = duplicate_heavy(tmp_path)
    result = datakit.split(path, tmp_path / "out", eval_share=0.3, test_share=0.2, seed=0)
    where = split_of(tmp_path / "out")
    ds = load(path)
    ensure(ds, ["minhash", "norm_hash"], AuditConfig())
    found = near_duplicate_clusters(np.stack(ds.frame["minhash"].to_numpy()), 0.8)
    cluster = np.full(ds.frame.height, None, dtype=object)
    cluster[found.rows] = found.cluster
    frame = ds.frame.with_columns(pl.Series("near_dup_cluster", cluster.tolist(), dtype=pl.Int64))
    for column in ("near_dup_cluster", "record_hash", "prompt_hash"):
        for _, group in frame.filter(frame[column].is_not_null()).group_by(column):
            assert len({where[key(json.loads(raw))] for raw in group["raw"]}) == 1, column
    assert result.groups >= 6 and set(where.values()) == {"train", "eval", "test"}


def test_stratified_split_keeps_each_class_share(tmp_path):
    result = datakit.split(EXAMPLES / "belle_sample.jsonl", tmp_path / "out", eval_share=0.2, stratify="class", seed=2)
    before = Counter(r["class"] for r in records(EXAMPLES / "belle_sample.jsonl"))
    evals = Counter(r["class"] for r in records(tmp_path / "out" / "eval.jsonl"))
    for label, n in before.items():
        assert abs(evals[label] - 0.2 * n) <= max(2, 0.1 * n), label
    assert result.labels["eval"] == dict(sorted(evals.items()))


def test_auditing_train_against_eval_finds_no_leakage(tmp_path):
    path = duplicate_heavy(tmp_path)
    shared = ("the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden gate at dawn "
              "and counts his sheep")
    extra = [{"instruction": f"Story {i}: {shared}. What happens next in part {i}?", "output": f"Part {i} continues."}
             for i in range(8)]
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in extra)
    proc = run_cli("split", path, "--eval", "0.3", "--seed", "4", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    _, report = audit_json(tmp_path, tmp_path / "out" / "train.jsonl", "--only", "leakage", "--against",
                           tmp_path / "out" / "eval.jsonl", "--fail-on", "never")
    assert [f for f in report["findings"] if f["rule"].startswith("leakage.eval_")] == []
    assert len(records(tmp_path / "out" / "eval.jsonl")) > 0


def test_same_seed_gives_the_same_files_and_another_seed_other_files(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        datakit.split(EXAMPLES / "alpaca_zh_sample.json", tmp_path / name, eval_share=0.2, seed=seed)
    assert (tmp_path / "a" / "eval.json").read_bytes() == (tmp_path / "b" / "eval.json").read_bytes()
    assert (tmp_path / "a" / "eval.json").read_bytes() != (tmp_path / "c" / "eval.json").read_bytes()


def test_unreadable_records_go_to_a_rejected_file_beside_the_splits(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [json.dumps({"instruction": f"Question {t} about {t}?", "output": f"Answer about {t}."}) for t in TOPICS]
    path.write_text("\n".join(rows + ['{"instruction": "cut off'] ) + "\n")
    result = datakit.split(path, tmp_path / "out", eval_share=0.25)
    assert result.rejected == 1 and sum(result.counts.values()) == len(TOPICS)
    assert json.loads((tmp_path / "out" / "rejected.jsonl").read_text())["line"] == len(TOPICS) + 1


def test_shares_that_leave_nothing_for_train_are_refused(tmp_path):
    proc = run_cli("split", EXAMPLES / "identity.json", "--eval", "0.6", "--test", "0.5", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "leave records for train" in proc.stderr and not (tmp_path / "out").exists()
