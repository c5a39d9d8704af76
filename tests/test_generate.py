"""trainkit/generate.py on a real tiny run: prompts render as training rendered them, greedy batching changes no
answer, sampling repeats for a seed, and each of adapter / merged / base loads from what the run saved."""
from __future__ import annotations

import pytest

from tests.trainkit_helpers import SYSTEM, identity_records, train_tiny_run, write_jsonl
from trainkit.generate import (
    InferenceError,
    Prompt,
    generate_answers,
    load_for_inference,
    prompt_ids,
    prompt_of,
)


@pytest.fixture(scope="module")
def alpaca_run(tiny_model_no_chat, tmp_path_factory):
    return train_tiny_run(tiny_model_no_chat, tmp_path_factory.mktemp("gen-alpaca"), identity_records(24))


@pytest.fixture(scope="module")
def inf(chat_run):
    return load_for_inference(chat_run)


def _training_examples(run_dir, tokenizer):
    import json

    from datakit.normalise import load
    from trainkit.tokenize import tokenize_frame

    run = json.loads((run_dir / "run.json").read_text())
    frame = load(run["data"]).valid
    return frame, tokenize_frame(frame, tokenizer, run["plan"]["template"]["value"])


@pytest.mark.parametrize("which", ["chat_run", "alpaca_run"])
def test_prompt_ids_are_the_training_ids_before_the_last_answer(which, request):
    run_dir = request.getfixturevalue(which)
    inf = load_for_inference(run_dir)
    frame, tok = _training_examples(run_dir, inf.tokenizer)
    rows = {r["line"]: r for r in frame.to_dicts()}
    for example in tok.examples:
        prompt, reference = prompt_of(rows[example.line])
        ids = prompt_ids(inf, [prompt])[0]
        first_target_of_last_answer = max(i for i, lab in enumerate(example.labels)
                                           if lab != -100 and (i == 0 or example.labels[i - 1] == -100))
        assert ids == example.input_ids[:first_target_of_last_answer], example.line
        assert inf.tokenizer.decode(example.input_ids[len(ids):], skip_special_tokens=True).strip() == reference.strip()


def test_the_run_system_prompt_is_the_one_most_training_records_carry(inf):
    assert inf.system == SYSTEM
    assert inf.template == "chat" and inf.max_length > 0 and inf.answers_with.startswith("adapter ")


def test_greedy_batched_answers_equal_one_by_one(inf):
    prompts = [[{"role": "user", "content": q}] for q in ("hi", "Who are you?", "What is your name? Tell me more please.",
                                                           "Are you ChatGPT?", "hello")]
    prompts.append(Prompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Who made you?"}]))
    batched = generate_answers(inf, prompts, max_new_tokens=12, batch_size=4, progress=False)
    single = [generate_answers(inf, [p], max_new_tokens=12, batch_size=1, progress=False)[0] for p in prompts]
    assert batched == single
    assert all(isinstance(a, str) for a in batched) and any(batched)


def test_sampling_repeats_for_a_seed_and_changes_with_it(inf):
    prompts = [[{"role": "user", "content": "Who are you?"}]] * 3
    options = {"max_new_tokens": 16, "temperature": 1.5, "top_p": 0.95, "batch_size": 2, "progress": False}
    first = generate_answers(inf, prompts, seed=7, **options)
    assert generate_answers(inf, prompts, seed=7, **options) == first
    assert generate_answers(inf, prompts, seed=8, **options) != first


def test_base_and_merged_load_from_the_run_and_base_answers_differ(chat_run, inf, tmp_path):
    from trainkit import merge

    prompts = [[{"role": "user", "content": q}] for q in ("Who are you?", "hi", "What can you do?")]
    adapter = generate_answers(inf, prompts, max_new_tokens=10, progress=False)
    merged = load_for_inference(chat_run, merged=merge(chat_run, tmp_path / "merged"))
    assert merged.answers_with.startswith("merged model")
    assert generate_answers(merged, prompts, max_new_tokens=10, progress=False) == adapter
    base = load_for_inference(chat_run, base=True)
    assert generate_answers(base, prompts, max_new_tokens=10, progress=False) != adapter


def test_bad_settings_and_folders_are_one_line_errors(chat_run, inf, tmp_path):
    with pytest.raises(InferenceError, match="not a trainkit run folder"):
        load_for_inference(tmp_path)
    with pytest.raises(InferenceError, match="choose one"):
        load_for_inference(chat_run, merged=tmp_path, base=True)
    with pytest.raises(InferenceError, match="--top-p"):
        generate_answers(inf, [[{"role": "user", "content": "hi"}]], temperature=1.0, top_p=0, progress=False)
    with pytest.raises(InferenceError, match="--merged"):
        load_for_inference(chat_run, merged=tmp_path)


def test_prompt_tuning_answers_do_not_depend_on_the_batch(tiny_model, tmp_path):
    """peft ignores position ids under prompt tuning, so left padding would shift every position: such a run is given
    batches of equal-length prompts instead."""
    from trainkit import train

    data = write_jsonl(tmp_path / "train.jsonl", identity_records(8))
    run_dir = train(data, tiny_model, tmp_path / "run", method="prompt", max_steps=1, progress=False).run_dir
    inf = load_for_inference(run_dir)
    prompts = [[{"role": "user", "content": q}] for q in ("hi", "Who are you? Tell me more.", "What", "hello", "What")]
    batched = generate_answers(inf, prompts, max_new_tokens=6, batch_size=5, progress=False)
    assert batched == [generate_answers(inf, [p], max_new_tokens=6, batch_size=1, progress=False)[0] for p in prompts]
    assert not inf.pads and load_for_inference(run_dir, base=True).pads


def test_a_record_ending_on_a_question_is_all_prompt():
    asked = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    prompt, reference = prompt_of({"messages": asked, "format": "openai"})
    assert prompt.messages == asked and reference is None
    prompt, reference = prompt_of({"messages": asked[:2], "format": "openai"})
    assert prompt.messages == asked[:1] and reference == "b"
    alpaca = {"messages": asked[:2], "format": "alpaca", "instruction": "a", "input": "ctx"}
    assert prompt_of(alpaca)[0] == Prompt(asked[:1], "a", "ctx")
