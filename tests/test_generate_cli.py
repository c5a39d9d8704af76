"""`trainkit generate` on a run trained by the real `trainkit train` command: every format datakit reads, source lines
kept, unreadable records named by file:line and skipped, the same bytes for the same seed."""
from __future__ import annotations

import json

import polars as pl
import pytest

from tests.conftest import EXAMPLES, run_cli
from tests.trainkit_helpers import identity_records, write_jsonl
from trainkit.predict import generate

SETTINGS = ("--max-new-tokens", "8", "--batch-size", "3")


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generate-cli")
    data = write_jsonl(tmp / "identity.jsonl", identity_records(24))
    proc = run_cli("train", data, "--model", tiny_model, "--output", tmp / "run", "--method", "lora", "--max-steps", "6",
                   "--lr", "0.02", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_generate_keeps_source_lines_and_names_unreadable_records(run_dir, tmp_path):
    records = [{**r, "category": f"c{i % 2}"} for i, r in enumerate(identity_records(6))]
    text = "".join(json.dumps(r) + "\n" for r in records[:3]) + '{"instruction": "broken\n' + '{"foo": 1}\n'
    text += "".join(json.dumps(r) + "\n" for r in records[3:])
    data = tmp_path / "prompts.jsonl"
    data.write_text(text, encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    proc = run_cli("generate", run_dir, "--data", data, "-o", out, *SETTINGS, "--label-field", "category", tool="trainkit")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{data}:4:" in proc.stderr and f"{data}:5:" in proc.stderr and "not valid JSON" in proc.stderr
    assert "6 prediction(s)" in proc.stdout and "2 record(s) skipped" in proc.stdout and "records/s" in proc.stdout
    preds = _lines(out)
    assert [p["line"] for p in preds] == [1, 2, 3, 6, 7, 8]
    for p, r in zip(preds, records):
        assert p["source"] == str(data) and p["reference"] == r["output"] and p["label"] == r["category"]
        assert p["prompt"][-1] == {"role": "user", "content": r["instruction"]}
        assert isinstance(p["prediction"], str)
        assert p["settings"]["temperature"] == 0.0 and p["settings"]["max_new_tokens"] == 8
        assert p["settings"]["model"].startswith("adapter ")
    assert data.read_text(encoding="utf-8") == text  # the input is never touched


def test_the_same_seed_gives_the_same_bytes(run_dir, tmp_path):
    data = write_jsonl(tmp_path / "prompts.jsonl", identity_records(5))
    sampled = ("--temperature", "1.2", "--top-p", "0.9", "--seed", "11")
    outs = [tmp_path / f"preds{i}.jsonl" for i in range(3)]
    for out, seed in zip(outs, ("11", "11", "12")):
        proc = run_cli("generate", run_dir, "--data", data, "-o", out, *SETTINGS, *sampled[:-1], seed, tool="trainkit")
        assert proc.returncode == 0, proc.stderr
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() != outs[2].read_bytes()


def _sharegpt(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text((EXAMPLES / "sharegpt_sample.json").read_text(encoding="utf-8"), encoding="utf-8")
    records = json.loads(path.read_text(encoding="utf-8"))
    return path, records, lambda r: [t["value"] for t in r["conversations"] if t["from"] == "gpt"][-1]


def _messages(tmp_path):
    path = tmp_path / "messages.jsonl"
    path.write_text((EXAMPLES / "messages_sample.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    records = _lines(path)
    return path, records, lambda r: [m for m in r["messages"] if m["role"] == "assistant"][-1]["content"][0]["value"]


def _alpaca_array(tmp_path):
    records = identity_records(5)
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path, records, lambda r: r["output"]


def _parquet(tmp_path):
    records = identity_records(5)
    path = tmp_path / "alpaca.parquet"
    pl.DataFrame(records).write_parquet(path)
    return path, records, lambda r: r["output"]


@pytest.mark.parametrize("make", [_sharegpt, _messages, _alpaca_array, _parquet], ids=["sharegpt", "openai", "json", "parquet"])
def test_every_format_datakit_reads_gives_one_prediction_per_record_in_order(make, run_dir, tmp_path):
    data, records, answer_of = make(tmp_path)
    records = records[:6]
    result = generate(run_dir, data, tmp_path / "preds.parquet", max_new_tokens=4, batch_size=4, progress=False)
    preds = pl.read_parquet(tmp_path / "preds.parquet").to_dicts()
    assert result.written == len(preds) and not result.skipped
    assert [p["line"] for p in preds][: len(records)] == list(range(1, len(records) + 1))
    assert [p["reference"] for p in preds][: len(records)] == [answer_of(r) for r in records]


def test_output_over_the_input_and_bad_settings_are_one_line_errors(run_dir, tmp_path):
    data = write_jsonl(tmp_path / "prompts.jsonl", identity_records(3))
    before = data.read_bytes()
    for args, expected in ((("-o", data), "never writes over its input"), (("-o", tmp_path / "p.jsonl", "--top-p", "0"), "--top-p"),
                           (("-o", tmp_path / "p.jsonl", "--batch-size", "0"), "--batch-size")):
        proc = run_cli("generate", run_dir, "--data", data, *args, tool="trainkit")
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert data.read_bytes() == before
    proc = run_cli("generate", tmp_path, "--data", data, "-o", tmp_path / "p.jsonl", tool="trainkit")
    assert proc.returncode == 2 and "not a trainkit run folder" in proc.stderr


def test_a_damaged_adapter_or_unfinished_run_is_one_line(run_dir, tmp_path):
    import shutil

    data = write_jsonl(tmp_path / "prompts.jsonl", identity_records(2))
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    weights = copy / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    proc = run_cli("generate", copy, "--data", data, "-o", tmp_path / "p.jsonl", tool="trainkit")
    assert proc.returncode == 2 and "cannot load the adapter" in proc.stderr, proc.stderr
    shutil.rmtree(copy / "adapter")
    proc = run_cli("chat", copy, tool="trainkit")
    assert proc.returncode == 2 and "has not finished" in proc.stderr and "--resume" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.jsonl").exists()


def test_usage_mistakes_are_usage_errors_not_internal_errors(tmp_path):
    proc = run_cli("generate", tool="trainkit")
    assert proc.returncode == 2 and "Missing argument" in proc.stderr and "internal error" not in proc.stderr
    proc = run_cli("chat", tmp_path, "--temprature", "1", tool="trainkit")
    assert proc.returncode == 2 and "No such option" in proc.stderr and "internal error" not in proc.stderr


def test_a_record_of_questions_is_answered_turn_by_turn_as_mt_bench_asks(run_dir, tmp_path):
    from trainkit.generate import generate_answers, load_for_inference

    data = tmp_path / "mt.jsonl"
    lines = (EXAMPLES / "mt_bench_questions.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    generate(run_dir, data, tmp_path / "preds.jsonl", max_new_tokens=5, batch_size=2, progress=False)
    preds = _lines(tmp_path / "preds.jsonl")
    inf = load_for_inference(run_dir)
    for line, pred in zip(lines, preds):
        first, second = json.loads(line)["turns"]
        a1 = generate_answers(inf, [[{"role": "user", "content": first}]], max_new_tokens=5, progress=False)[0]
        a2 = generate_answers(inf, [[{"role": "user", "content": first}, {"role": "assistant", "content": a1},
                                     {"role": "user", "content": second}]], max_new_tokens=5, progress=False)[0]
        assert pred["answers"] == [a1, a2] and pred["prediction"] == a2 and pred["reference"] is None
