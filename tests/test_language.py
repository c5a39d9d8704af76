"""Language detection gives langdetect's answers, and the language rules flag only what can be trusted."""
from __future__ import annotations

import json
import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

from datakit.measure import ensure
from datakit.measure.language import _profiles, _Stream, detect_languages, detector
from datakit.normalise import load
from schemas.config import AuditConfig
from tests.conftest import EXAMPLES, audit_json, lines_for, run_rule
from validators.language import LanguageRules

ADVERSARIAL = [
    "Привет, как дела? Это тест на русском языке.", "مرحبا كيف حالك اليوم يا صديقي", "यह हिंदी में एक परीक्षण वाक्य है।",
    "นี่คือประโยคทดสอบภาษาไทย", "Αυτή είναι μια δοκιμαστική πρόταση.", "זה משפט בדיקה בעברית",
    "これは日本語のテスト文です。漢字とかなが混ざっています。", "이것은 한국어 테스트 문장입니다.",
    "Tiếng Việt có dấu: Xin chào các bạn, hôm nay trời đẹp quá.", "ÉCOLE NATIONALE SUPÉRIEURE des MINES",
    "THE QUICK BROWN FOX", "iPhone XR USA NASA OK", "see https://example.com/a?b=c and mail me@example.org now",
    "𝐀𝐁𝐂 bold math and emoji 😀😀 text here", "a\ud800b lone surrogate text", "12345 67890", "!!!", "a", "中", "Ab",
    "x" * 20000, "hello world " * 2000, "Ünïcödé çhäräctërs ßpëcïål", "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　ｈｅｒｅ",
    "tab\tand\nnewline  double  space", "ſtraße", "ǅemal ǈubljana", "x\u200by zero width",
    "有机食品消费的趋势如何描述？\n使用可再生能源具有很多重要性。",  # langdetect says Korean
]


def langdetect_seeded(text: str, seed: int = 0) -> str | None:
    DetectorFactory.seed = seed
    try:
        found = detect(text)
    except LangDetectException:
        return None
    return None if found == "unknown" else found


def sample_texts(step: int = 3) -> list[str]:
    texts = []
    for path in sorted(EXAMPLES.glob("*.json*")):
        frame = load(path).frame
        texts += [t for t in frame["prompt"].to_list() + frame["response"].to_list() if t]
    return list(dict.fromkeys(texts))[::step]


def audit_language(tmp_path, records: list[dict], **config) -> tuple[pl.DataFrame, dict]:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    cfg = AuditConfig(**config)
    return run_rule(LanguageRules(), load(path), cfg)


ENGLISH = [f"Explain in a few sentences why the number {i} matters to people who study the history of mathematics."
           for i in range(12)]
ANSWERS = [f"The number {i} appears in many classic problems, and historians of mathematics trace how its properties "
           "were discovered and used over the centuries." for i in range(12)]


def test_detector_gives_langdetects_answer_on_real_and_adversarial_texts():
    texts = sample_texts() + ADVERSARIAL
    ours = detector(0).detect(texts)
    theirs = [langdetect_seeded(t) for t in texts]
    assert [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b] == []


def test_profile_table_is_langdetects_own():
    from langdetect import detector_factory

    detector_factory.init_factory()
    factory = detector_factory._factory
    langs, keys, table = _profiles()
    assert langs == factory.langlist and keys.size == len(factory.word_lang_prob_map)
    row = {k: i for i, k in enumerate(keys.tolist())}
    for gram in list(factory.word_lang_prob_map)[::97]:
        codes = [ord(c) for c in gram.rjust(3, "\0")]
        key = (((codes[0] << 21) | codes[1]) << 21) | codes[2]
        assert table[row[key]].tolist() == factory.word_lang_prob_map[gram]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 70000))
def test_word_stream_reproduces_python_random_gauss_and_choice(seed, n):
    rng, stream = random.Random(seed), _Stream(seed)
    z, spare = stream.gauss(pl.Series([0]).to_numpy())
    assert (rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)) == (z[0], spare[0])
    words = stream.words[4:] >> (32 - n.bit_length())
    assert rng.choice(range(n)) == words[words < n][0]


def test_detection_is_deterministic_and_texts_without_letters_have_no_language():
    texts = ["", "   ", "123 456", "?!", None, "The weather is lovely today and we are going to the beach."]
    first = detect_languages(texts)
    assert first == detect_languages(list(reversed(texts)))[::-1]
    assert first[:5] == [None] * 5 and first[5] == "en"


def test_measurement_adds_languages_and_leaves_unreadable_rows_null(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"instruction": ENGLISH[0], "output": "这是一个关于数学史的中文回答，内容足够长。"},
                               ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    ds = load(path)
    ensure(ds, ["language"], AuditConfig())
    assert ds.frame.select("prompt_lang", "response_lang").rows() == [("en", "zh-cn"), (None, None)]


def test_off_language_flags_the_russian_record_in_an_english_set(tmp_path):
    records = [{"instruction": q, "output": a} for q, a in zip(ENGLISH, ANSWERS)]
    records.append({"instruction": ENGLISH[0], "output": "Число играет важную роль во многих классических задачах, и "
                    "историки математики изучают, как были открыты его свойства."})
    found, summary = audit_language(tmp_path, records)
    off = found.filter(pl.col("rule") == "language.off_language")
    assert off["line"].to_list() == [13] and off["field"].to_list() == ["response"]
    assert "Russian (ru)" in off["message"][0]
    assert summary["main"] == ["en"] and summary["languages"] == {"en": 12, "ru": 1}


def test_mismatch_flags_an_english_answer_to_a_chinese_question(tmp_path):
    records = [{"instruction": "请用几句话解释为什么这个数字对研究数学史的人很重要。", "output": "这个数字出现在许多经典问题中，数学史学家研究它的性质是如何被发现的。"}
               for _ in range(10)]
    records.append({"instruction": "请用几句话解释为什么这个数字对研究数学史的人很重要。", "output": ANSWERS[0]})
    found, summary = audit_language(tmp_path, records, language={"expected": ["zh", "en"]})
    assert found.filter(pl.col("rule") == "language.mismatch")["line"].to_list() == [11]
    assert found.filter(pl.col("rule") == "language.off_language").height == 0
    assert summary["mismatches"] == 1


CHINESE_ANSWER = "递归是一种让函数调用自身来解决问题的方法，每次调用处理更小的子问题，直到遇到可以直接回答的基本情况。"


def test_mismatch_flags_a_few_english_words_answered_in_chinese(tmp_path):
    records = [{"instruction": q, "output": a} for q, a in zip(ENGLISH, ANSWERS)]
    records += [{"instruction": "Explain recursion.", "output": CHINESE_ANSWER},  # 16 letters: Latin vs Han needs no minimum
                {"instruction": "Explain recursion in Chinese.", "output": CHINESE_ANSWER},  # asked for
                {"instruction": "Translate: recursion", "output": CHINESE_ANSWER},
                {"instruction": "What is 12 times 12?", "output": "144"},
                {"instruction": "Explain recursion.", "output": "```python\ndef f(n):\n    return 1 if n < 2 else n * f(n - 1)\n```"}]
    found, summary = audit_language(tmp_path, records, language={"expected": ["en", "zh"]})
    mismatch = found.filter(pl.col("rule") == "language.mismatch")
    assert mismatch["line"].to_list() == [13] and summary["mismatches"] == 1
    assert "prompt is in Latin script (too short to name the language) but the response in Chinese" in mismatch["message"][0]
    assert mismatch["detail"][0] == "prompt latin script, response zh-cn"


def test_a_short_answer_in_another_script_is_not_a_mismatch(tmp_path):
    """Short answers to Chinese prompts are names and words (real Alpaca-zh: "IronyQueen_Sarah", "DelishDish")."""
    question = "请用几句话解释为什么这个数字对研究数学史的人很重要。"
    records = [{"instruction": question, "output": "这个数字出现在许多经典问题中，数学史学家研究它的性质是如何被发现的。"}] * 10
    records += [{"instruction": "生成一个移动应用程序的名称，允许用户从本地餐厅订餐。", "output": "\"DelishDish\""},
                {"instruction": "改变以下名词为复数形式：watch", "output": "watches"}]
    found, _ = audit_language(tmp_path, records, language={"expected": ["zh", "en"]})
    assert found.height == 0


@pytest.mark.parametrize("name", ["belle/eval_set.json", "llamafactory/alpaca_zh_demo.json", "self_instruct/seed_tasks.jsonl",
                                  "llamafactory/glaive_toolcall_zh_demo.json"])
def test_real_bilingual_sets_have_no_mismatch_false_alarms(shared_data, name):
    """Their translation tasks (either way), code answers and one-word answers are what they were asked for."""
    found, summary = run_rule(LanguageRules(), load(shared_data / name), AuditConfig())
    assert summary["mismatches"] == 0 and found.filter(pl.col("rule") == "language.mismatch").height == 0


def test_expected_languages_flag_records_outside_them(tmp_path):
    records = [{"instruction": q, "output": a} for q, a in zip(ENGLISH, ANSWERS)]
    found, summary = audit_language(tmp_path, records, language={"expected": ["de"]})
    assert found.filter(pl.col("rule") == "language.off_language").height == 12 and summary["main"] == ["de"]


def test_short_mixed_script_code_and_implausible_texts_are_not_judged(tmp_path):
    records = [{"instruction": q, "output": a} for q, a in zip(ENGLISH, ANSWERS)]
    records += [
        {"instruction": ENGLISH[1], "output": "Oui, bien sûr."},  # 12 letters: too short to tell French from others
        {"instruction": "翻译下面这个句子：I will always remember the day we met for the first time.", "output": ANSWERS[2]},
        {"instruction": ENGLISH[3], "output": "```python\ndef mittelwert(zahlen):\n    return sum(zahlen) / len(zahlen)\n```\n"
                                               "Fertig."},
        {"instruction": ENGLISH[4], "output": "有机食品消费的趋势如何描述？\n使用可再生能源具有很多重要性。"},
    ]
    found, summary = audit_language(tmp_path, records, language={"expected": ["en", "zh"]})
    assert found.height == 0
    assert summary["languages"]["unknown"] == 3 and summary["prompt_languages"]["unknown"] == 1
    assert detect_languages([records[-1]["output"]]) == ["ko"]  # what langdetect says; no Hangul, so not judged


def test_real_chinese_samples_are_detected_as_chinese():
    for name in ("belle_sample.jsonl", "alpaca_zh_sample.json"):
        ds = load(EXAMPLES / name)
        cfg = AuditConfig()
        summary = run_rule(LanguageRules(), ds, cfg)[1]
        assert summary["main"] == ["zh-cn"]
        judged = {k: v for k, v in summary["languages"].items() if k not in ("unknown", "(empty)")}
        assert judged["zh-cn"] / sum(judged.values()) > 0.95


def test_belle_eval_set_is_chinese_and_its_translation_prompts_are_not_flagged(shared_data):
    ds = load(shared_data / "belle" / "eval_set.json")
    cfg = AuditConfig()
    summary = run_rule(LanguageRules(), ds, cfg)[1]
    assert summary["main"] == ["zh-cn"] and summary["languages"]["zh-cn"] > 500
    assert summary["languages"]["(empty)"] == ds.frame.filter(pl.col("response") == "").height


def test_cli_reports_languages_in_the_profile_and_findings_with_lines(tmp_path):
    proc, report = audit_json(tmp_path, str(EXAMPLES / "alpaca_eval_sample.json"), "--only", "language", "--no-html",
                              "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    assert report["profile"]["languages"]["en"] == 250
    assert lines_for(report, "language.off_language") == [192]  # answered in French, as asked: flagged for review
    proc, report = audit_json(tmp_path, str(EXAMPLES / "belle_sample.jsonl"), "--only", "language", "--no-html")
    assert proc.returncode == 0 and next(iter(report["profile"]["languages"])) == "zh-cn"


@pytest.mark.parametrize("bad", ['{"instruction": "\\u0000\\u200b", "output": "\\u0000\\u0000"}', '{"instruction": 5}', "{broken",
                                 '{"instruction": "' + "\u4e2d" * 30000 + '", "output": "' + "a " * 60000 + '"}'])
def test_language_family_never_raises_on_bad_input(tmp_path, bad):
    path = tmp_path / "bad.jsonl"
    path.write_text(bad + "\n", encoding="utf-8")
    proc, _report = audit_json(tmp_path, str(path), "--only", "language", "--no-html", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
