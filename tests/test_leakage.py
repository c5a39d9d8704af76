"""leakage.*: eval items in the training data are found (exact, near, shared n-grams) and named by file and line;
answers copied from their prompt and answers citing internal material are flagged."""
from __future__ import annotations

import json

import polars as pl
import pytest

from datakit.measure.contamination import NgramIndex, token_lists
from datakit.measure.copying import answer_shares
from datakit.normalise import load
from schemas.config import AuditConfig
from tests.conftest import EXAMPLES, audit_json, lines_for, run_cli, run_rule
from validators.leakage import LeakageRules

ALPACA_EVAL = EXAMPLES / "alpaca_eval_sample.json"
BELLE = EXAMPLES / "belle_sample.jsonl"
MT_BENCH = EXAMPLES / "mt_bench_questions.jsonl"
CONTAMINATION = ("leakage.eval_exact", "leakage.eval_near", "leakage.eval_overlap")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def leakage(train, against=(), **sections):
    """Findings and summary of the leakage family on `train` against the eval files, as `datakit audit` runs it."""
    config = AuditConfig.model_validate({"leakage": {"against": [str(a) for a in against]}} | sections)
    return run_rule(LeakageRules(), load(train), config, [load(a) for a in against])


def eval_record(path, line):
    ds = load(path)
    return ds.frame.filter(pl.col("line") == line).row(0, named=True)


# --- tokens and n-grams ------------------------------------------------------------------------------

def tokens(text):
    return token_lists([text])[0].to_list()


def test_tokens_are_case_and_width_folded_words_and_single_cjk_characters():
    assert tokens("Ｈｅｌｌｏ, WORLD! 你好，世界 x2 naïve_café") == ["hello", "world", "你", "好", "世", "界", "x2", "naïve", "café"]
    assert token_lists(["", None]).to_list() == [[], []]


def test_a_shared_run_of_n_words_matches_and_n_minus_one_does_not():
    eval_text = " ".join(f"word{i}" for i in range(40))
    index = NgramIndex([(0, eval_text)], n_word=13, n_cjk=20)
    inside13 = "intro " + " ".join(f"word{i}" for i in range(10, 23)) + " outro"
    inside12 = "intro " + " ".join(f"word{i}" for i in range(10, 22)) + " outro"
    assert index.matches([inside13, inside12, ""]) == [[(1, 13, 0)], [], []]


def test_an_eval_text_shorter_than_n_counts_whole_down_to_half_of_n():
    index = NgramIndex([(0, "one two three four five six seven"), (1, "alpha beta gamma delta epsilon six")],
                       n_word=13, n_cjk=20)
    found = index.matches(["say one two three four five six seven now", "alpha beta gamma delta epsilon six"])
    assert found == [[(1, 7, 0)], []]  # 7 tokens >= ceil(13 / 2); 6 tokens is too short to mean anything


def test_chinese_eval_texts_are_compared_on_20_character_runs():
    eval_text = "世界上最早已知的写作可以追溯到古代的苏美尔文明大约在公元前"
    index = NgramIndex([(0, eval_text)], n_word=13, n_cjk=20)
    assert index.matches(["请看：" + eval_text[:20] + "。", "请看：" + eval_text[:19] + "。"]) == [[(2, 20, 0)], []]


def test_loop_boilerplate_is_not_evidence_but_specific_code_is():
    eval_code = ("def longest_common_subsequence_length(str1, str2):\n    m = len(str1)\n    n = len(str2)\n"
                 "    for i in range(1, m + 1):\n        for j in range(1, n + 1):\n            if str1[i - 1] == str2[j - 1]:")
    index = NgramIndex([(0, eval_code)], n_word=13, n_cjk=20)
    loops = "for i in range(1, m + 1):\n    for j in range(1, n + 1):\n        if grid[i][j]:"
    same_function = "def longest_common_subsequence_length(str1, str2):\n    m = len(str1)\n    n = len(str2)\n"
    assert [bool(f) for f in index.matches([loops, same_function])] == [False, True]


def test_code_in_a_chinese_sample_does_not_match_an_mt_bench_coding_question():
    found, _ = leakage(EXAMPLES / "alpaca_zh_sample.json", [MT_BENCH])  # line 13 shares a 15-token DP loop header
    assert not found.filter(pl.col("rule").is_in(CONTAMINATION)).height


def test_answer_share_counts_runs_not_scattered_words():
    prompt = "Rewrite in passive voice: The cat chased the mouse across the old wooden floor."
    frame = pl.DataFrame({"id": [0, 1, 2, 3, 4], "prompt": [prompt, prompt, prompt, "Say yes or no: yes", ""],
                          "response": ["The mouse was chased across the old wooden floor by the cat.",
                                       "the cat chased the mouse across the old wooden floor", "THE CAT, chased.",
                                       "Yes", "anything at all here"]})
    shares = dict(answer_shares(frame, run=5, min_tokens=3).select("id", "share").iter_rows())
    assert shares[0] == pytest.approx(5 / 12)  # "across the old wooden floor" only
    assert shares[1] == 1.0 and shares[2] == 1.0  # copied; a 3-token answer shorter than the run counts whole
    assert 3 not in shares and shares[4] == 0.0  # "Yes" is too short to judge


# --- crafted contamination ---------------------------------------------------------------------------

def crafted_train(tmp_path):
    """Each line plants one kind of leak of a known eval line (or none)."""
    a15, a3, a25, a10 = (eval_record(ALPACA_EVAL, n) for n in (15, 3, 25, 10))
    b4 = eval_record(BELLE, 4)["response"]
    start = b4.index("苏美尔人为了")
    cjk20 = b4[start:b4.index("等信息", start) + 3]
    assert len(tokens(cjk20)) == 20
    words10 = a10["instruction"].split()
    records = [
        {"instruction": "Name three primary colors.", "output": "Red, yellow and blue."},  # 1: clean
        {"instruction": a15["instruction"], "output": a15["response"]},  # 2: exact copy
        {"instruction": "  " + a3["instruction"].upper() + " ", "output": "Start with the short words."},  # 3: same question
        {"instruction": a25["instruction"].replace("a few options", "a few good options"), "output": a25["response"]},  # 4
        {"instruction": "Summarise this and answer in French: " + " ".join(words10[:15]) + " ...", "output": "Bien sûr."},  # 5
        {"instruction": "Summarise this and answer in French: " + " ".join(words10[:12]) + " ...", "output": "Bien sûr."},  # 6
        {"instruction": "请评价这段话：" + cjk20 + "。", "output": "这段话介绍了楔形文字的起源。"},  # 7: 20-char overlap
        {"instruction": "请评价这段话：" + cjk20[:-1] + "。", "output": "这段话介绍了楔形文字的起源。"},  # 8: 19 chars
    ]
    return write_jsonl(tmp_path / "train.jsonl", records)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Findings and summary for the crafted training file against AlpacaEval and BELLE samples (computed once)."""
    return leakage(crafted_train(tmp_path_factory.mktemp("planted")), [ALPACA_EVAL, BELLE])


def test_each_planted_leak_is_found_with_the_eval_file_and_line_it_copies(planted):
    found, summary = planted
    got = {(r["line"], r["rule"], r["field"], r["related_source"], r["related_line"])
           for r in found.filter(pl.col("rule").is_in(CONTAMINATION)).iter_rows(named=True)}
    a, b = str(ALPACA_EVAL), str(BELLE)
    assert got == {
        (2, "leakage.eval_exact", "prompt", a, 15),
        (3, "leakage.eval_exact", "prompt", a, 3),
        (4, "leakage.eval_near", "record", a, 25),
        (5, "leakage.eval_overlap", "prompt", a, 10),
        (7, "leakage.eval_overlap", "prompt", b, 4),
    }
    assert summary["against"][0] | {"by_rule": None} == {"file": a, "records": 269, "valid_records": 269,
                                                         "training_records_matched": 4, "eval_records_matched": 4,
                                                         "by_rule": None}
    assert summary["against"][1]["by_rule"] == {"leakage.eval_overlap": 1}


def test_findings_say_what_matched_and_show_the_shared_span(planted):
    found, _ = planted
    by_line = {r["line"]: r for r in found.iter_rows(named=True)}
    assert by_line[2]["detail"] == "prompt and response identical" and by_line[3]["detail"] == "prompt identical"
    assert by_line[4]["detail"].startswith("record estimated Jaccard 0.")
    words10 = eval_record(ALPACA_EVAL, 10)["instruction"].split()
    assert by_line[5]["excerpt"] == " ".join(words10[:15]).rstrip("?.")
    assert by_line[5]["detail"] == "15 tokens in a row shared with the eval prompt, 15 in all"
    assert by_line[7]["excerpt"].startswith("苏美尔人为了") and "belle_sample.jsonl line 4" in by_line[7]["message"]
    assert all(r["severity"] == "error" for r in by_line.values() if r["rule"] in CONTAMINATION)


def test_without_eval_sets_there_is_no_contamination_finding(tmp_path):
    found, summary = leakage(crafted_train(tmp_path))
    assert not found.filter(pl.col("rule").is_in(CONTAMINATION)).height
    assert summary["against"] == []


def test_bad_records_in_train_and_eval_are_skipped_not_raised(tmp_path):
    a15 = eval_record(ALPACA_EVAL, 15)
    good = json.dumps({"instruction": a15["instruction"], "output": "x"})
    train = tmp_path / "train.jsonl"
    train.write_text(f'not json\n{{"instruction": 5}}\n[1]\n{good}\n{{"instruction": "", "output": ""}}\n', encoding="utf-8")
    evals = tmp_path / "eval.jsonl"
    evals.write_text(f'{{"instruction": ""}}\n{{broken\n{good}\n', encoding="utf-8")
    found, summary = leakage(train, [evals])
    assert [(r["line"], r["rule"], r["related_line"]) for r in found.iter_rows(named=True)] == [(4, "leakage.eval_exact", 3)]
    assert summary["against"][0]["records"] == 3 and summary["against"][0]["valid_records"] == 1


# --- answers in the prompt, internal references ------------------------------------------------------

def test_answer_copied_from_the_prompt_is_a_warning_but_short_answers_are_not_judged(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Repeat after me: The quick brown fox jumps over the lazy dog near the river bank.",
         "output": "The quick brown fox jumps over the lazy dog near the river bank."},
        {"instruction": "Is the sky blue? Answer yes or no.", "output": "Yes"},
        {"instruction": "Rewrite in passive voice: The cat chased the mouse across the old wooden floor.",
         "output": "The mouse was chased across the old wooden floor by the cat."},
        {"instruction": "请问什么是太阳系中离太阳最近的行星？", "output": "太阳系中离太阳最近的行星是水星。"},
    ])
    found, _ = leakage(data)
    rows = found.filter(pl.col("rule") == "leakage.answer_in_prompt")
    assert rows["line"].to_list() == [1] and rows["severity"].to_list() == ["warning"]
    assert rows["detail"].to_list() == ["100%"]


INTERNAL = [
    "According to our internal document HR-7, refunds take three days.",
    "根据我们的内部文档，退款需要3天。",
    "The dashboard lives at https://metrics.corp/q3 for the team.",
    "I saved it to /home/zhangwei/reports/q3.xlsx for you.",
    "[Download the results](sandbox:/mnt/data/results.csv)",
    "CONFIDENTIAL - do not distribute outside the team.",
    "As the internal knowledge base says, refunds take three days.",  # not "our" internal ...
    "According to the internal wiki, the VPN password rotates monthly.",
    "如内部知识库所述，退款需要三天。",
    "据内部文档，退款需要三天。",
    "The salary bands are in \\\\fileserver\\confidential\\salaries_2024.xlsx.",  # internal document files by path
    "详见 内部/人事/员工手册.docx 第三章。",
    "Open Internal_Pricing_2024.pptx and check slide 4.",  # ... and by name
]
LEGITIMATE = [
    "Participants' answers will be kept confidential.",
    "内部文档共享平台（如Google文档）可以帮助团队协作。",
    "The three internal angles of a triangle add up to 180 degrees.",
    "Edit /etc/nginx/nginx.conf and run `cd /home/user/project`.",
    "Open C:\\Users\\YourName\\Desktop and http://raspberrypi.local:8080.",
    "Cook until the internal temperature reaches 165°F.",
    "According to internal documents obtained by Reuters, the firm cut 300 jobs.",  # news cites them, publicly
    "To build an internal knowledge base, start with Confluence or a shared wiki.",
    "公司可以建立内部知识库，方便员工查阅资料。",
    "Internal combustion engines burn fuel. Save the file as notes.pdf.",
]


def test_answers_citing_internal_material_are_flagged_and_ordinary_uses_are_not(tmp_path):
    records = [{"instruction": "Tell me.", "output": text} for text in INTERNAL + LEGITIMATE]
    found, _ = leakage(write_jsonl(tmp_path / "d.jsonl", records))
    rows = found.filter(pl.col("rule") == "leakage.internal_reference")
    assert rows["line"].to_list() == list(range(1, len(INTERNAL) + 1))
    assert set(rows["field"]) == {"response"} and set(rows["severity"]) == {"warning"}


def test_internal_patterns_are_configurable(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Tell me.", "output": "See PROJ-1234 in Jira."}])
    found, _ = leakage(data, leakage={"internal_patterns": [r"\bPROJ-\d+\b"]})
    assert found.filter(pl.col("rule") == "leakage.internal_reference")["excerpt"].to_list() == ["See PROJ-1234 in Jira."]


def test_a_broken_internal_pattern_is_a_config_error_not_a_crash():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        AuditConfig.model_validate({"leakage": {"internal_patterns": ["(unclosed"]}})


def test_bundled_samples_have_no_internal_references_and_few_copied_answers():
    config = AuditConfig()
    for path in sorted(EXAMPLES.glob("*.json*")):
        ds = load(path)
        found = run_rule(LeakageRules(), ds, config)[0]
        assert not found.filter(pl.col("rule") == "leakage.internal_reference").height, path.name
        assert found.filter(pl.col("rule") == "leakage.answer_in_prompt").height <= 0.05 * ds.frame.height, path.name


@pytest.mark.parametrize("name", ["llamafactory/alpaca_en_demo.json", "llamafactory/alpaca_zh_demo.json", "belle/eval_set.json",
                                  "alpaca_eval/alpaca_eval_outputs.json", "fastchat/dummy_conversation.json"])
def test_real_sets_cite_no_internal_material(shared_data, name):
    """Their answers talk about internal angles, internal document platforms and PDF files, and cite nothing internal."""
    found = run_rule(LeakageRules(), load(shared_data / name), AuditConfig())[0]
    assert found.filter(pl.col("rule") == "leakage.internal_reference").height == 0


# --- end to end --------------------------------------------------------------------------------------

def test_cli_finds_the_mt_bench_question_inside_the_alpaca_eval_sample(tmp_path):
    proc, report = audit_json(tmp_path, str(ALPACA_EVAL), "--against", str(MT_BENCH), "--only", "leakage")
    assert proc.returncode == 1, proc.stderr
    assert report["against"] == [str(MT_BENCH)]
    # AlpacaEval's "vicuna" items include the Hawaii travel blog prompt that MT-Bench reused as question 81.
    leaks = [(f["line"], f["rule"], f["related_source"], f["related_line"]) for f in report["findings"]
             if f["rule"] in CONTAMINATION]
    assert leaks == [(268, "leakage.eval_overlap", str(MT_BENCH), 1)]
    summary = next(f["summary"] for f in report["families"] if f["family"] == "leakage")
    assert summary["against"][0]["records"] == 80 and summary["against"][0]["training_records_matched"] == 1


def test_cli_names_every_planted_leak_with_comma_separated_eval_files(tmp_path):
    train = crafted_train(tmp_path)
    proc, report = audit_json(tmp_path, str(train), "--against", f"{ALPACA_EVAL},{BELLE}", "--only", "leakage")
    assert proc.returncode == 1  # contamination is an error
    assert lines_for(report, "leakage.eval_exact") == [2, 3]
    assert lines_for(report, "leakage.eval_near") == [4]
    assert lines_for(report, "leakage.eval_overlap") == [5, 7]
    related = {f["line"]: (f["related_source"], f["related_line"]) for f in report["findings"]}
    assert related == {2: (str(ALPACA_EVAL), 15), 3: (str(ALPACA_EVAL), 3), 4: (str(ALPACA_EVAL), 25),
                       5: (str(ALPACA_EVAL), 10), 7: (str(BELLE), 4)}


def test_every_mt_bench_first_turn_used_as_an_instruction_is_found(tmp_path):
    questions = [json.loads(line) for line in MT_BENCH.read_text().splitlines()]
    train = write_jsonl(tmp_path / "train.jsonl", [{"instruction": q["turns"][0], "output": "Here is my answer."}
                                                    for q in questions])
    found, _ = leakage(train, [MT_BENCH])
    leaks = {r["line"]: r["related_line"] for r in found.iter_rows(named=True) if r["rule"] in CONTAMINATION}
    assert leaks == {n: n for n in range(1, len(questions) + 1)}  # near copies of the question, or 13-gram overlaps


def test_cli_fix_drops_every_contaminated_record_with_the_eval_line_as_reason(tmp_path):
    train = crafted_train(tmp_path)
    proc = run_cli("fix", str(train), "-o", str(tmp_path / "clean.jsonl"), "--against", f"{ALPACA_EVAL},{BELLE}",
                   "--only", "leakage", "-q")
    assert proc.returncode == 0, proc.stderr
    rejected = [json.loads(line) for line in (tmp_path / "clean.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["line"]: r["reasons"][0]["related_line"] for r in rejected} == {2: 15, 3: 3, 4: 25, 5: 10, 7: 4}
    assert len((tmp_path / "clean.jsonl").read_text(encoding="utf-8").splitlines()) == 3


# --- real data ---------------------------------------------------------------------------------------

def test_every_record_taken_from_alpaca_eval_is_found_in_the_full_set(shared_data, tmp_path):
    full = shared_data / "alpaca_eval" / "alpaca_eval_outputs.json"
    records = json.loads(full.read_text())
    picked = list(range(0, len(records), 7))
    train = write_jsonl(tmp_path / "train.jsonl", [records[i] for i in picked])
    proc, report = audit_json(tmp_path, str(train), "--against", str(full), "--only", "leakage")
    assert proc.returncode == 1
    exact = {f["line"]: f["related_line"] for f in report["findings"] if f["rule"] == "leakage.eval_exact"}
    assert exact == {k + 1: i + 1 for k, i in enumerate(picked)}


def test_alpaca_eval_and_mt_bench_share_exactly_two_questions(shared_data):
    found, _ = leakage(shared_data / "alpaca_eval" / "alpaca_eval_outputs.json",
                       [shared_data / "fastchat" / "mt_bench_question.jsonl"])
    leaks = {r["line"]: (r["rule"], r["related_line"]) for r in found.iter_rows(named=True) if r["rule"] in CONTAMINATION}
    assert leaks == {792: ("leakage.eval_overlap", 50), 802: ("leakage.eval_overlap", 1)}


def test_real_instruction_sets_are_not_contaminated_by_alpaca_eval_or_mt_bench(shared_data):
    evals = [shared_data / "alpaca_eval" / "alpaca_eval_outputs.json", shared_data / "fastchat" / "mt_bench_question.jsonl"]
    for train in (shared_data / "llamafactory" / "alpaca_en_demo.json", shared_data / "fastchat" / "dummy_conversation.json"):
        found, _ = leakage(train, evals)
        assert not found.filter(pl.col("rule").is_in(CONTAMINATION)).height, train.name


def test_chinese_instruction_set_is_not_flagged_against_belle_by_common_phrases(shared_data):
    found, _ = leakage(shared_data / "llamafactory" / "alpaca_zh_demo.json", [shared_data / "belle" / "eval_set.json"])
    assert not found.filter(pl.col("rule").is_in(CONTAMINATION)).height


def test_scanning_in_small_batches_finds_the_same_matches(monkeypatch):
    import datakit.measure.contamination as leakage_module

    eval_text = " ".join(f"word{i}" for i in range(40))
    index = NgramIndex([(0, eval_text)], n_word=13, n_cjk=20)
    texts = ["x " + " ".join(f"word{i}" for i in range(s, s + 14)) for s in range(20)] + ["", "word1 word2"]
    whole = index.matches(texts)
    monkeypatch.setattr(leakage_module, "BATCH_CHARS", 30)
    assert index.matches(texts) == whole
    assert [len(f) for f in whole[:20]] == [2] * 20 and whole[20:] == [[], []]
