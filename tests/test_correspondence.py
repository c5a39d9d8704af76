"""correspondence.*: answers that belong to another instruction, on real English and Chinese records: shifted and
shuffled output columns are caught record by record and as a whole, clean sets stay almost silent, batching is
irrelevant."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from datakit.audit import Audit
from datakit.config import build_config
from datakit.normalise import load
from tests.conftest import EXAMPLES, SHARED_DATA, audit_json, run_rule
from validators.correspondence import CorrespondenceRules


def alpaca(name: str) -> list[dict]:
    return [{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
            for r in json.loads((EXAMPLES / name).read_text(encoding="utf-8"))]


def write(tmp_path: Path, records: list[dict], name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def shifted(records: list[dict]) -> list[dict]:
    """The output column moved up by one: each instruction gets the next record's answer."""
    return [dict(r, output=records[(i + 1) % len(records)]["output"]) for i, r in enumerate(records)]


def check(path: Path) -> tuple[list[dict], dict]:
    found, summary = run_rule(CorrespondenceRules(), load(path))
    return found.to_dicts(), summary


def unrelated(found: list[dict]) -> list[dict]:
    return [f for f in found if f["rule"] == "correspondence.unrelated_answer"]


@pytest.mark.parametrize("name", ["alpaca_en_sample.json", "alpaca_zh_sample.json"])
def test_an_output_column_shifted_by_one_flags_nearly_every_record(tmp_path, name):
    records = alpaca(name)
    found, summary = check(write(tmp_path, shifted(records)))
    flagged = unrelated(found)
    assert len(flagged) >= 0.85 * summary["answers_compared"]
    assert [f["rule"] for f in found if f["line"] is None] == ["correspondence.columns_shifted"]
    by_line = {f["line"]: f for f in flagged}
    hits = [f for line, f in by_line.items() if f["related_line"] == line + 1]  # the answer's true prompt is next
    assert len(hits) >= 0.8 * len(flagged)
    assert by_line[hits[0]["line"]]["severity"] == "warning" and "fits the prompt on line" in hits[0]["message"]


def test_a_shuffled_output_column_is_found(tmp_path):
    records = alpaca("alpaca_en_sample.json")
    answers = [r["output"] for r in records]
    random.Random(0).shuffle(answers)
    found, summary = check(write(tmp_path, [dict(r, output=a) for r, a in zip(records, answers)]))
    assert len(unrelated(found)) >= 0.85 * summary["answers_compared"]
    assert any(f["rule"] == "correspondence.columns_shifted" for f in found)


def test_an_answer_swapped_into_another_record_points_at_its_true_prompt(tmp_path):
    """Record 121 gets record 21's story about a talking mouse, which names its prompt's words; record 21 gets a to-do
    list, which shares too few words with any prompt to be judged either way (a lone swap is caught from the side whose
    answer speaks of its prompt)."""
    records = alpaca("alpaca_en_sample.json")
    clean = {f["line"] for f in unrelated(check(write(tmp_path, records, "clean.jsonl"))[0])}
    records[20]["output"], records[120]["output"] = records[120]["output"], records[20]["output"]
    found, _ = check(write(tmp_path, records))
    new = [f for f in unrelated(found) if f["line"] not in clean]
    assert [(f["line"], f["related_line"]) for f in new] == [(121, 21)]
    assert not any(f["line"] is None for f in found)


@pytest.mark.parametrize("name, pairs", [
    ("alpaca_en_sample.json", [(17, 196), (31, 66), (35, 146), (127, 195)]),  # 116 <-> 121 share too few words
    ("alpaca_zh_sample.json", [(54, 98), (116, 121)]),  # and 35 -> 146 alone; 17/66, 31/127 too few shared words
])
def test_two_answers_exchanged_are_flagged_on_both_sides_pointing_at_each_other(tmp_path, name, pairs):
    """Five pairs of records exchange their answers: where each answer fits the other's prompt at least twice as well as
    its own (among that answer's best few prompts), both records are flagged, each naming the other, though neither
    side alone reaches the coverage an unrelated answer needs; nothing else is flagged."""
    records = alpaca(name)
    clean = {f["line"] for f in unrelated(check(write(tmp_path, records, "clean.jsonl"))[0])}
    idx = random.Random(1).sample(range(len(records)), 10)
    for a, b in zip(idx[::2], idx[1::2]):
        records[a]["output"], records[b]["output"] = records[b]["output"], records[a]["output"]
    found, _ = check(write(tmp_path, records))
    new = {(f["line"], f["related_line"]) for f in unrelated(found) if f["line"] not in clean}
    assert {(a, b) for a, b in pairs} | {(b, a) for a, b in pairs} <= new
    assert {line for line, _ in new} <= {i + 1 for i in idx}


CLEAN_SETS = [EXAMPLES / "alpaca_en_sample.json", EXAMPLES / "alpaca_zh_sample.json", EXAMPLES / "belle_sample.jsonl",
              EXAMPLES / "alpaca_eval_sample.json", SHARED_DATA / "llamafactory" / "alpaca_en_demo.json",
              SHARED_DATA / "llamafactory" / "alpaca_zh_demo.json", SHARED_DATA / "belle" / "eval_set.json",
              SHARED_DATA / "alpaca_eval" / "alpaca_eval_outputs.json", SHARED_DATA / "self_instruct" / "seed_tasks.jsonl"]


@pytest.mark.parametrize("path", CLEAN_SETS, ids=lambda p: p.name)
def test_clean_real_sets_flag_at_most_three_percent_and_look_aligned(path):
    if not path.exists():
        pytest.skip(f"{path} is absent")
    found, summary = check(path)
    assert len(unrelated(found)) <= 0.03 * summary["answers_compared"]
    assert not any(f["rule"] == "correspondence.columns_shifted" for f in found)
    assert summary["mean_own_relevance"] > 5 * summary["mean_other_relevance"]


def test_too_few_answers_are_not_judged(tmp_path):
    found, summary = check(write(tmp_path, shifted(alpaca("alpaca_en_sample.json")[:5])))
    assert found == [] and summary["answers_compared"] == 5


def test_cli_reports_the_score_distribution(tmp_path):
    proc, report = audit_json(tmp_path, str(write(tmp_path, shifted(alpaca("alpaca_zh_sample.json")))),
                              "--only", "correspondence", "--no-html")
    assert proc.returncode == 0, proc.stderr
    summary = next(f["summary"] for f in report["families"] if f["family"] == "correspondence")
    assert sum(summary["own_relevance_histogram"].values()) == summary["answers_compared"]
    assert summary["unrelated_share"] > 0.85
    assert any(f["rule"] == "correspondence.columns_shifted" for f in report["findings"])


def test_batches_and_chunks_do_not_change_the_findings(tmp_path, monkeypatch):
    records = alpaca("alpaca_en_sample.json")
    records[20]["output"], records[120]["output"] = records[120]["output"], records[20]["output"]
    records[150:170] = shifted(records[150:170])
    path = write(tmp_path, records)

    def rows(batch_records: int) -> tuple[list, dict]:
        with Audit(path, build_config(only=["correspondence"]), batch_records=batch_records) as run:
            return (sorted(map(str, run.findings_frame().to_dicts())),
                    next(f.summary for f in run.report.families if f.family == "correspondence"))

    whole = rows(10_000)
    assert rows(13) == whole
    monkeypatch.setattr("validators.correspondence.CHUNK", 7)  # answers compared 7 at a time at the end
    assert rows(10_000) == whole


def test_score_model_gives_each_answer_perplexity_and_ifd(tmp_path, tiny_model):
    """IFD = loss(answer | instruction) / loss(answer), checked against transformers' own loss on the same tokens."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainkit.tokenize import tokenize_frame

    records = alpaca("alpaca_en_sample.json")[:12]
    path = write(tmp_path, records)
    proc, report = audit_json(tmp_path, str(path), "--only", "correspondence", "--score-model", str(tiny_model))
    assert proc.returncode == 0, proc.stderr
    summary = next(f["summary"] for f in report["families"] if f["family"] == "correspondence")
    scores = report["record_scores"]  # per-record columns of the report
    assert scores["line"] == list(range(1, 13)) and scores["source"] == [str(path)] * 12
    assert scores["model"] == str(tiny_model) and summary["scored_answers"] == 12
    high = [line for line, ifd in zip(scores["line"], scores["ifd"]) if ifd >= 1]
    assert sorted(f["line"] for f in report["findings"] if f["rule"] == "correspondence.high_ifd") == high
    assert summary["high_ifd_answers"] == len(high) and summary["median_ifd"] == pytest.approx(
        sorted(scores["ifd"])[5:7][0] / 2 + sorted(scores["ifd"])[5:7][1] / 2, abs=1e-4)
    page = next(tmp_path.glob("report-*.html")).read_text(encoding="utf-8")  # both histograms drawn from the columns
    assert 'aria-label="Instruction-following difficulty (IFD)"' in page and 'aria-label="Answer perplexity"' in page
    assert "median IFD" in " ".join(proc.stdout.split())
    import jsonschema

    from tests.conftest import run_cli

    schema = json.loads(run_cli("schema").stdout)  # `datakit schema` documents the columns; the report matches it
    jsonschema.validate(report, schema)
    columns = schema["$defs"]["RecordScores"]["properties"]
    assert {"model", "source", "line", "perplexity", "ifd"} <= set(columns) and "Li et al." in columns["ifd"]["description"]

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    example = tokenize_frame(load(path).frame.head(1), tokenizer).examples[0]
    alone = tokenizer(records[0]["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        given = model(input_ids=torch.tensor([example.input_ids]), labels=torch.tensor([example.labels])).loss.item()
        plain = model(input_ids=torch.tensor([alone]), labels=torch.tensor([alone])).loss.item()
    assert scores["ifd"][0] == pytest.approx(given / plain, abs=1e-3)
    assert scores["perplexity"][0] == pytest.approx(math.exp(given), rel=1e-3)


def test_score_model_must_be_a_model_folder(tmp_path):
    proc, _ = audit_json(tmp_path, str(EXAMPLES / "alpaca_en_sample.json"), "--score-model", str(tmp_path / "nothing"))
    assert proc.returncode == 2
    assert "is not a model folder" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_fix_keep_top_ifd_keeps_the_most_instructive_share_and_rejects_the_rest(tmp_path, tiny_model):
    from tests.conftest import run_cli

    records = alpaca("alpaca_en_sample.json")[:20]
    path = write(tmp_path, records)
    proc, report = audit_json(tmp_path, str(path), "--only", "correspondence", "--score-model", str(tiny_model), "--no-html")
    scores = report["record_scores"]
    under = sorted((-ifd, line) for line, ifd in zip(scores["line"], scores["ifd"]) if ifd < 1)
    kept = {line for _, line in under[:math.ceil(0.5 * len(under))]}
    out = tmp_path / "clean.jsonl"
    proc = run_cli("fix", str(path), "-o", str(out), "--only", "correspondence", "--score-model", str(tiny_model),
                   "--keep-top-ifd", "0.5")
    assert proc.returncode == 0, proc.stderr
    clean = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    rejected = [json.loads(x) for x in (tmp_path / "clean.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(clean) + len(rejected) == len(records)
    assert [r["instruction"] for r in clean] == [records[line - 1]["instruction"] for line in sorted(kept)]
    assert all({reason["rule"] for reason in r["reasons"]} & {"correspondence.below_top_ifd", "correspondence.high_ifd"}
               for r in rejected)


def test_keep_top_ifd_without_a_model_is_a_config_error(tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("fix", str(EXAMPLES / "alpaca_en_sample.json"), "-o", str(tmp_path / "c.jsonl"), "--keep-top-ifd", "0.5")
    assert proc.returncode == 2 and "needs a model" in proc.stderr + proc.stdout
