"""`trainkit chat` driven through a pseudo-terminal as a user would: the run's system prompt, two turns whose answers
are those of the same conversation through `generate_answers`, /reset, /system, Ctrl-C stopping an answer, Ctrl-D."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.trainkit_helpers import SYSTEM
from trainkit.chat import Conversation, prompt_budget
from trainkit.generate import Prompt, generate_answers, load_for_inference, prompt_ids

pexpect = pytest.importorskip("pexpect")
TRAINKIT = str(Path(sys.executable).parent / "trainkit")


@pytest.fixture(scope="module")
def inf(chat_run):
    return load_for_inference(chat_run)


def spawn(*args: str):
    env = dict(os.environ, TERM="dumb", NO_COLOR="1", COLUMNS="200")
    return pexpect.spawn(TRAINKIT, ["chat", *map(str, args)], encoding="utf-8", timeout=120, env=env, echo=False)


def answer(child) -> str:
    """The text streamed after 'assistant> ' up to the next prompt (the conversation was not trimmed before it)."""
    child.expect("assistant> ")
    assert "dropped" not in child.before
    child.expect("you> ")
    return child.before.replace("\r\n", "\n").strip()


def test_two_turns_reset_and_quit_in_a_terminal(chat_run, inf):
    child = spawn(chat_run, "--max-new-tokens", "4")
    child.expect(f"system prompt: '{SYSTEM}'")
    child.expect("you> ")
    child.sendline("Who are you?")
    first = answer(child)
    child.sendline("hi")
    second = answer(child)
    history = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Who are you?"}]
    expected = generate_answers(inf, [history], max_new_tokens=4, progress=False)
    history += [{"role": "assistant", "content": expected[0]}, {"role": "user", "content": "hi"}]
    expected += generate_answers(inf, [history], max_new_tokens=4, progress=False)
    assert [first, second] == expected  # the chat sends the run's template, system prompt and history
    child.sendline("/reset")
    child.expect("conversation reset")
    child.expect("you> ")
    child.sendline("hi")
    assert answer(child) == generate_answers(inf, [[history[0], {"role": "user", "content": "hi"}]], max_new_tokens=4,
                                             progress=False)[0]  # nothing of the earlier turns is left
    child.sendline("/system none")
    child.expect("no system prompt")
    child.expect("you> ")
    child.sendline("hi")
    assert answer(child) == generate_answers(inf, [[{"role": "user", "content": "hi"}]], max_new_tokens=4, progress=False)[0]
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in child.before


def test_ctrl_c_stops_the_answer_not_the_chat(chat_run):
    child = spawn(chat_run, "--base", "--max-new-tokens", "5000")  # the random base rarely stops by itself
    child.expect("you> ")
    child.sendline("Tell me a long story.")
    child.expect("assistant> ")
    child.expect(".{10}")
    child.sendintr()
    child.expect(r"\(stopped; this exchange is not kept")
    child.expect("you> ")
    child.sendintr()  # at the prompt: a reminder, not an exit
    child.expect("Ctrl-D quits")
    child.sendline("/help")
    child.expect("/system TEXT")
    child.expect("you> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_history_is_trimmed_oldest_first_to_the_run_max_length(inf):
    budget = prompt_budget(inf.max_length, 16)
    talk = Conversation(SYSTEM)
    for i in range(30):
        talk.turns += [{"role": "user", "content": f"question {i} " * 3}, {"role": "assistant", "content": f"answer {i} " * 3}]
    every = list(talk.turns)
    ids, dropped = talk.fit(inf, "last question", budget)
    assert dropped > 0 and len(ids) <= budget
    assert talk.turns == every[2 * dropped:]  # the oldest exchanges went, the newest stay
    one_more = Prompt([{"role": "system", "content": SYSTEM}, *every[2 * (dropped - 1):], {"role": "user", "content": "last question"}])
    assert len(prompt_ids(inf, [one_more])[0]) > budget  # no exchange was dropped that would have fit


def test_a_missing_run_folder_is_one_line(tmp_path):
    child = spawn(tmp_path)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2 and "not a trainkit run folder" in child.before and "Traceback" not in child.before


def test_a_template_that_refuses_the_system_role_is_a_note_not_a_crash(chat_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(chat_run, copy)
    template = copy / "adapter" / "chat_template.jinja"
    template.write_text("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                        + template.read_text(encoding="utf-8"), encoding="utf-8")
    child = spawn(copy, "--max-new-tokens", "3")
    child.expect("you> ")
    child.sendline("hi")
    child.expect("cannot render this conversation: .*System role not supported")
    child.expect("you> ")
    child.sendline("/system none")
    child.expect("you> ")
    child.sendline("hi")
    child.expect("assistant> ")
    child.expect("you> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
