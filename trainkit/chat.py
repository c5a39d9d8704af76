"""`trainkit chat`: try a trained run in the terminal, with the run's template and system prompt, answers streamed.

Commands: /reset (forget the conversation), /system TEXT (change the system prompt), /help; Ctrl-D quits and
Ctrl-C during an answer stops that answer only. The conversation is trimmed, oldest turns first, to the run's
max_length: the adapter never trained on longer text.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from trainkit.generate import Inference, Prompt, Sampling, StopFlag, generate_batch, prompt_ids

HELP = ("/reset         forget the conversation (the system prompt stays)\n"
        "/system TEXT   use TEXT as the system prompt (and forget the conversation); /system alone shows it\n"
        "/system none   chat with no system prompt\n"
        "/help          this list\n"
        "Ctrl-C         stop the answer being written;  Ctrl-D  quit")


@dataclass
class Conversation:
    """The system prompt and the turns so far; `fit` drops the oldest exchanges that do not fit the token budget."""

    system: str | None
    turns: list[dict] = field(default_factory=list)

    def messages(self, user: str) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns + [{"role": "user", "content": user}]

    def fit(self, inf: Inference, user: str, budget: int) -> tuple[list[int], int]:
        """Prompt ids for `user` after as many recent exchanges as fit in `budget` tokens; how many were dropped."""
        dropped = 0
        while True:
            ids = prompt_ids(inf, [Prompt(self.messages(user))])[0]
            if len(ids) <= budget or not self.turns:
                return ids, dropped
            del self.turns[:2]  # the oldest user turn and its answer
            dropped += 1


def prompt_budget(max_length: int, max_new_tokens: int) -> int:
    """Tokens the conversation may take: the run's max_length less room for the answer (at least half of it kept)."""
    return max(max_length - max_new_tokens, max_length // 2)


def stream_answer(inf: Inference, ids: list[int], sampling: Sampling, out: TextIO) -> tuple[str, bool]:
    """Write the answer to `out` as it is generated; returns (answer, stopped by Ctrl-C)."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(inf.tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop = StopFlag()
    result: dict = {}

    def work() -> None:
        try:
            result["ids"] = generate_batch(inf, [ids], sampling, streamer=streamer, stop=stop)[0]
        except BaseException as e:  # noqa: BLE001  handed to the main thread, which reports it
            result["error"] = e
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    stopped = False
    try:
        for piece in streamer:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stopped = True
        stop.event.set()
        for _ in streamer:  # let generation notice the flag and end the stream
            pass
    thread.join()
    if "error" in result:
        raise result["error"]
    out.write("\n")
    return inf.tokenizer.decode(result.get("ids", []), skip_special_tokens=True).strip(), stopped


def chat(inf: Inference, sampling: Sampling, *, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, seed: int = 0) -> None:
    """The chat loop, until Ctrl-D (end of input)."""
    from transformers import set_seed

    if stdin.isatty():
        import readline  # noqa: F401  line editing and history for input()
    sampling.check()
    set_seed(seed)
    talk = Conversation(inf.system)
    budget = prompt_budget(inf.max_length, sampling.max_new_tokens)
    say = lambda text: (out.write(text + "\n"), out.flush())
    say(f"chatting with the {inf.answers_with} (template {inf.template}, max_length {inf.max_length} tokens, "
        f"{'greedy' if sampling.temperature == 0 else f'temperature {sampling.temperature}, top-p {sampling.top_p}'}).")
    say(f"system prompt: {talk.system!r}" if talk.system else "no system prompt (the training data has none in common).")
    say("/help for commands, Ctrl-D to quit.")
    while True:
        try:
            line = _read(stdin, out)
        except EOFError:
            say("")
            return
        except KeyboardInterrupt:
            say("\n(Ctrl-D quits)")
            continue
        text = line.strip()
        if not text:
            continue
        if line.startswith("/"):
            command(text, talk, say)
            continue
        try:
            ids, dropped = talk.fit(inf, text, budget)
        except Exception as e:  # noqa: BLE001  a chat template that refuses a role (some reject system prompts)
            say(f"(the {inf.template} template cannot render this conversation: {type(e).__name__}: {e}; "
                "/system none drops the system prompt, /reset the history)")
            continue
        if dropped:
            say(f"(note: the {dropped} oldest exchange(s) were dropped to keep the conversation within the run's "
                f"max_length of {inf.max_length} tokens)")
        if len(ids) > budget:
            say(f"(note: your message alone is {len(ids)} tokens, more than the {budget} this run trained with room "
                "for an answer; expect a weaker answer)")
        out.write("assistant> ")
        out.flush()
        answer, stopped = stream_answer(inf, ids, sampling, out)
        if stopped:
            say("(stopped; this exchange is not kept in the conversation)")
            continue
        talk.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]


def _read(stdin: TextIO, out: TextIO) -> str:
    if stdin is sys.stdin:
        return input("you> ")
    out.write("you> ")
    out.flush()
    line = stdin.readline()
    if not line:
        raise EOFError
    return line


def command(text: str, talk: Conversation, say) -> None:
    name, _, arg = text.partition(" ")
    arg = arg.strip()
    if name == "/reset":
        talk.turns.clear()
        say("(conversation reset)")
    elif name == "/system" and not arg:
        say(f"system prompt: {talk.system!r}" if talk.system else "no system prompt.")
    elif name == "/system":
        talk.system = None if arg.lower() == "none" else arg
        talk.turns.clear()
        say(f"(system prompt set to {talk.system!r}; conversation reset)" if talk.system else
            "(no system prompt; conversation reset)")
    elif name == "/help":
        say(HELP)
    else:
        say(f"unknown command {name}; /help lists the commands (a message starting with '/' needs a space before it).")
