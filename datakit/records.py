"""Reading and editing the texts of an original record object in any format, leaving every other field untouched.

One walker knows where each format keeps its texts and which role speaks each one: Alpaca's system,
history, instruction/input/output (and the field-name variants `datakit.normalise` reads), ShareGPT's
system and turn values, OpenAI message contents including typed text parts, and MT-Bench-style
turns. `datakit fix` repairs and truncates through it; tests use it to compare records.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from datakit.normalise import detect_format
from schemas.records import INSTRUCTION_ALIASES, OPENAI_ROLES, OUTPUT_ALIASES, SHAREGPT_ROLES

# fn(text, role) -> new text; role is the canonical speaker: system | user | assistant | tool.
TextFn = Callable[[str, str], str]


def map_texts(obj: Any, fn: TextFn) -> Any:
    """A deep copy of `obj` with `fn` applied to each of its texts; objects of no known format come back as they are.

    Only string values are passed to `fn`: a wrong-typed field is the format rules' business, not a text to edit.
    """
    if not isinstance(obj, dict) or detect_format(obj) is None:
        return obj
    out = copy.deepcopy(obj)
    _walk(out, fn)
    return out


def texts(obj: Any) -> list[tuple[str, str]]:
    """(role, text) of every text of the record, in conversation order."""
    found: list[tuple[str, str]] = []

    def collect(text: str, role: str) -> str:
        found.append((role, text))
        return text

    if isinstance(obj, dict) and detect_format(obj) is not None:
        _walk(obj, collect)  # `collect` returns each text unchanged, so the record is not modified
    return found


def _walk(rec: dict, fn: TextFn) -> None:
    fmt = detect_format(rec)
    if fmt == "alpaca":
        _alpaca(rec, fn)
    elif fmt == "sharegpt":
        _edit(rec, "system", "system", fn)
        for turn in _dicts(rec.get("conversations")):
            _edit(turn, "value", SHAREGPT_ROLES.get(str(turn.get("from", "")).strip().lower(), "user"), fn)
    elif fmt == "openai":
        key = "messages" if isinstance(rec.get("messages"), list) else "conversations"
        for message in _dicts(rec.get(key)):
            role = OPENAI_ROLES.get(str(message.get("role", "")).strip().lower(), "user")
            if isinstance(message.get("content"), list):
                for part in _dicts(message["content"]):
                    if part.get("type", "text") == "text":
                        _edit(part, "text", role, fn)
                        _edit(part, "value", role, fn)
            else:
                _edit(message, "content", role, fn)
    elif fmt == "prompts":
        rec["turns"] = [fn(t, "user") if isinstance(t, str) else t for t in rec["turns"]]


def _alpaca(rec: dict, fn: TextFn) -> None:
    """Conversation order: system, earlier [user, assistant] pairs, the instruction and input, the answer."""
    _edit(rec, "system", "system", fn)
    history = rec.get("history")
    if isinstance(history, list):
        for pair in history:
            if isinstance(pair, list):
                for i, role in zip(range(min(len(pair), 2)), ("user", "assistant")):
                    if isinstance(pair[i], str):
                        pair[i] = fn(pair[i], role)
    for key in (*INSTRUCTION_ALIASES, "input"):
        _edit(rec, key, "user", fn)
    instances = list(_dicts(rec.get("instances")))
    for instance in instances:
        _edit(instance, "input", "user", fn)
    for instance in instances:
        _edit(instance, "output", "assistant", fn)
    for key in OUTPUT_ALIASES:
        _edit(rec, key, "assistant", fn)


def _edit(container: dict, key: str, role: str, fn: TextFn) -> None:
    if isinstance(container.get(key), str):
        container[key] = fn(container[key], role)


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
