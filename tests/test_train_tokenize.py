"""Records to tokens: loss falls on assistant tokens only, token by token, in every template and turn layout."""
from __future__ import annotations

import polars as pl
import pytest

from datakit.normalise import load
from tests.conftest import EXAMPLES
from tests.trainkit_helpers import write_jsonl
from trainkit.model import load_tokenizer
from trainkit.templates import ALPACA, choose_template
from trainkit.tokenize import IGNORE, tokenize_frame


def _frame(tmp_path, records):
    return load(write_jsonl(tmp_path / "d.jsonl", records)).valid


def _expected(tokenizer, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Ids and labels written out by hand: each piece tokenised alone, trained pieces keep their ids."""
    ids, labels = [], []
    for text, train in pieces:
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += toks
        labels += toks if train else [IGNORE] * len(toks)
    return ids, labels


def test_multi_turn_chat_trains_every_assistant_turn_and_nothing_else(tiny_model, tmp_path):
    tok = load_tokenizer(tiny_model)
    rec = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"},
                        {"role": "assistant", "content": "I am a model."}, {"role": "user", "content": "Thanks!"},
                        {"role": "assistant", "content": "You are welcome."}]}
    ex = tokenize_frame(_frame(tmp_path, [rec]), tok).examples[0]
    ids, labels = _expected(tok, [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n", False),
        ("I am a model.<|im_end|>\n", True),
        ("<|im_start|>user\nThanks!<|im_end|>\n<|im_start|>assistant\n", False),
        ("You are welcome.<|im_end|>\n", True),
    ])
    assert ex.input_ids == ids  # the EOS (<|im_end|>) already ends the last turn: nothing appended
    assert ex.labels == labels


def test_alpaca_record_masks_the_whole_prompt_and_trains_response_plus_eos(tiny_model_no_chat, tmp_path):
    tok = load_tokenizer(tiny_model_no_chat)
    rec = {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}
    tokenized = tokenize_frame(_frame(tmp_path, [rec]), tok)
    ex = tokenized.examples[0]
    t = ALPACA["alpaca_en"]
    prompt = t.preamble_with_input + "### Instruction:\nTranslate to French.\n\n### Input:\nGood morning\n\n### Response:\n"
    ids, labels = _expected(tok, [(prompt, False), ("Bonjour", True)])
    assert tokenized.template == "alpaca_en"
    assert ex.input_ids == ids + [tok.eos_token_id]
    assert ex.labels == labels + [tok.eos_token_id]


def test_tool_results_and_user_turns_never_carry_loss(tiny_model, tmp_path):
    tok = load_tokenizer(tiny_model)
    rec = {"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "CALL weather(Paris)"},
                        {"role": "tool", "content": "SUNNY-21C"}, {"role": "assistant", "content": "Sunny, 21C."}]}
    ex = tokenize_frame(_frame(tmp_path, [rec]), tok).examples[0]
    trained = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])
    masked = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels) if lab == IGNORE])
    assert trained == "CALL weather(Paris)<|im_end|>\nSunny, 21C.<|im_end|>\n"
    assert "SUNNY-21C" in masked and "Weather in Paris?" in masked


def test_labels_equal_ids_wherever_they_are_not_masked_on_real_conversations(tiny_model):
    tok = load_tokenizer(tiny_model)
    tokenized = tokenize_frame(load(EXAMPLES / "glaive_toolcall_en_sample.json").valid, tok)
    assert len(tokenized.examples) == 60
    for ex in tokenized.examples:
        assert all(lab in (IGNORE, i) for i, lab in zip(ex.input_ids, ex.labels))
        assert ex.labels[0] == IGNORE  # every record starts with a prompt
        assert any(lab != IGNORE for lab in ex.labels)


def test_alpaca_history_turns_are_trained_too(tiny_model_no_chat, tmp_path):
    tok = load_tokenizer(tiny_model_no_chat)
    rec = {"instruction": "And in German?", "input": "", "output": "Guten Morgen",
           "history": [["Say good morning in French.", "Bonjour"]]}
    ex = tokenize_frame(_frame(tmp_path, [rec]), tok).examples[0]
    trained = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])
    assert trained == "BonjourGuten Morgen<|im_end|>"


def test_chinese_data_without_chat_template_gets_the_chinese_alpaca_template(tiny_model_no_chat):
    tok = load_tokenizer(tiny_model_no_chat)
    tokenized = tokenize_frame(load(EXAMPLES / "alpaca_zh_sample.json").valid.head(5), tok)
    assert tokenized.template == "alpaca_zh"
    masked = tok.decode([i for i, lab in zip(tokenized.examples[0].input_ids, tokenized.examples[0].labels) if lab == IGNORE])
    assert "### 指令:" in masked and masked.endswith("### 回答:\n")


def test_records_without_an_answer_are_reported_with_their_line_not_trained(tiny_model):
    tok = load_tokenizer(tiny_model)
    tokenized = tokenize_frame(load(EXAMPLES / "mt_bench_questions.jsonl").valid.head(4), tok)
    assert tokenized.examples == []
    assert [line for line, _ in tokenized.skipped] == [1, 2, 3, 4]
    assert all("no assistant turn" in why for _, why in tokenized.skipped)


def test_unknown_template_name_is_a_user_error():
    with pytest.raises(ValueError, match="alpaca_en"):
        choose_template("vicuna", True, False)


def test_explicit_alpaca_template_wins_over_the_chat_template(tiny_model):
    tok = load_tokenizer(tiny_model)
    frame = pl.concat([load(EXAMPLES / "alpaca_en_sample.json").valid.head(2)])
    assert tokenize_frame(frame, tok, "alpaca_en").template == "alpaca_en"
