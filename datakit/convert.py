"""`datakit convert`: Alpaca <-> ShareGPT <-> OpenAI messages, lossless where the formats allow, refusing clearly where not.

Every record goes through one conversation form (system text, turns with role/content and their own
extra fields, the record's other fields) and is rendered in the target format; fields the formats do
not define are kept where they were. What each target cannot hold:

- Alpaca holds one answer per record: earlier user/assistant pairs go to `history`, system prompts to
  `system`. Tool calls and tool results, non-text content parts, conversations that do not alternate
  user/assistant or do not end with the assistant cannot be Alpaca: such records are refused into the
  rejected file with the reason `convert.not_representable` (the rest is converted). Per-turn fields
  (e.g. `loss_weight`) have no place in Alpaca and are dropped; the command says how many.
- ShareGPT and OpenAI turns are one text, so an Alpaca `instruction` and `input` become one user turn
  ("instruction\\ninput", as LLaMA-Factory joins them); the input is also kept in `_datakit_input`
  so that converting back to Alpaca restores both fields exactly. ShareGPT `function_call` turns
  and OpenAI `tool_calls` map onto each other; typed content parts become their joined text.
- Output follows the target's canonical fields, the ones the LLaMA-Factory entry (`--dataset-info`) names:
  Alpaca variants (BELLE's question/std_answer, prompt/completion, a missing `input`) are written as
  instruction/input/output ("" when there is no input); ShareGPT turns use from/value with human, gpt,
  system, observation and function_call; OpenAI records use `messages` with system, user, assistant and
  tool, and text content (typed content parts are joined). Records already written that way are kept
  byte for byte.
- The output's name says its container (.jsonl, .json, .parquet, optionally .gz); without -o the
  output mirrors the input's container next to it.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from datakit.engine.inputs import BATCH_BYTES, BATCH_RECORDS
from datakit.io.atomic import write_text
from datakit.io.lock import output_lock
from datakit.io.names import dataset_entry_name
from datakit.io.read import RawRecord, open_raw
from datakit.io.write import (
    container_notes,
    container_of,
    data_stem,
    record_writer,
    refuse_overwrite,
    rejected_container,
    rejection,
    sibling,
    suffix_for,
    unreadable_row,
)
from datakit.normalise import detect_format
from schemas.records import INSTRUCTION_ALIASES, OPENAI_ROLES, OUTPUT_ALIASES, SHAREGPT_ROLES

Target = Literal["alpaca", "sharegpt", "openai"]
TARGETS = ("alpaca", "sharegpt", "openai")
INPUT_MARKER = "_datakit_input"
REFUSED = "convert.not_representable"
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
SHAREGPT_TAGS = {*SHAREGPT_FROM.values(), "function_call"}  # the `from` values LLaMA-Factory's sharegpt defaults read
OPENAI_TAGS = set(SHAREGPT_FROM)  # the roles datakit writes, and the entry's tags name
OPTIONAL_COLUMNS = ("system", "history", "tools")  # LLaMA-Factory columns an entry names only when some record fills them


class NotRepresentable(Exception):
    """This record cannot be written in the target format without losing what it says; the message says why."""


@dataclass
class Turn:
    role: str  # system | user | assistant | tool
    content: str
    extra: dict = field(default_factory=dict)  # the turn's other fields (loss_weight, tool_call_id, ...)
    calls: list[dict] | None = None  # tool calls of an assistant turn: [{"name", "arguments", optional "id"}]
    parallel: bool = False  # the calls were written as a list (ShareGPT writes one call as an object)


@dataclass
class Conversation:
    turns: list[Turn]
    extra: dict  # the record's fields the format does not consume, in their original order
    first_key: int  # where the format's own fields started, so the output keeps the record's layout
    alpaca_input: str | None = None


@dataclass
class ConvertResult:
    source: str
    to: str
    records: int
    converted: int
    unchanged: int
    refused: int
    output: Path
    rejected_path: Path
    container: str
    gzip: bool
    with_history: int = 0
    kept_input: int = 0  # records whose Alpaca input is also kept in INPUT_MARKER
    dropped_turn_fields: dict[str, int] = field(default_factory=dict)
    dataset_info: Path | None = None
    notes: list[str] = field(default_factory=list)


def convert(path: str | Path, to: Target, output: str | Path | None = None, *, rejected: str | Path | None = None,
            dataset_info: str | None = None) -> ConvertResult:
    """Convert every record of `path` to `to` (alpaca | sharegpt | openai) into `output`, in the container its name
    says (default `<input>.<to>.<ext>` next to the input, in the input's container); refused and unreadable records go
    to `rejected` (default `<output>.rejected.jsonl`) with their reason. `dataset_info` names a LLaMA-Factory
    dataset_info.json entry to write next to `output`."""
    if to not in TARGETS:
        raise ValueError(f"--to {to}: expected one of {', '.join(TARGETS)}.")
    if dataset_info is not None:
        dataset_entry_name(dataset_info)  # refused before anything is written
    with open_raw(path) as stream:
        batches = stream.batches(BATCH_BYTES, BATCH_RECORDS)
        first = next(batches, [])  # the container is final once the first batch is read
        out_path = Path(output) if output is not None else _default_output(Path(path), to, stream.container, stream.gzip)
        rej_path = Path(rejected) if rejected is not None else sibling(out_path, "rejected")
        refuse_overwrite("convert", [path], [out_path, rej_path])
        if dataset_info:
            _readable_by_llamafactory(out_path)
        container, gzip_ = container_of(out_path)
        result = ConvertResult(source=stream.path, to=to, records=0, converted=0, unchanged=0, refused=0,
                               output=out_path, rejected_path=rej_path, container=container, gzip=gzip_)
        filled: set[str] = set()
        # The rejected file is renamed into place first: an output on disk always has its rejected file next to it.
        with (output_lock("datakit convert", [out_path, rej_path]), record_writer(out_path, container, gzip_) as written,
              record_writer(rej_path, *rejected_container(rej_path)) as refused):
            for batch in itertools.chain([first], batches):
                kept, rows = _convert_batch(batch, to, stream.path, result)
                written.write(kept)
                refused.write(rows)
                filled.update(k for new in kept for k in _filled_columns(new))
                result.records += len(batch)
                result.refused += len(rows)
    if dataset_info:
        with output_lock("datakit convert", [out_path.parent / "dataset_info.json"], wait=True):  # entries of other runs kept
            result.dataset_info = write_dataset_info(out_path, dataset_info, to, filled)
        if "tool_calls" in filled:
            result.notes.append(f"entry '{dataset_info}' uses LLaMA-Factory's `openai` formatting, the one that reads "
                                "tool_calls (added to LLaMA-Factory in November 2025); for an older LLaMA-Factory "
                                "convert with --to sharegpt instead.")
    _notes(result, out_path)
    return result


def _convert_batch(batch: list[RawRecord], to: str, source: str, result: ConvertResult) -> tuple[list[Any], list[dict]]:
    """(the converted records, the rejected rows) of one batch, each in input order; tallies into `result`."""
    kept: list[Any] = []
    rows: list[dict] = []
    for rec in batch:
        if rec.error is not None:
            rows.append(unreadable_row(source, rec))
            continue
        try:
            new, same = convert_record(rec.obj, to, result)
        except NotRepresentable as e:
            rows.append(rejection(source, rec.line, rec.text, rec.obj, [{
                "rule": REFUSED, "severity": "error", "fix": "drop",
                "message": f"cannot be written as {to}: {e}"}]))
            continue
        kept.append(new)
        result.unchanged += same
        result.converted += not same
    return kept, rows


def _default_output(path: Path, to: str, container: str, gzip_: bool) -> Path:
    """`data.json` -> `data.sharegpt.json` next to the input, in the container the input was read as."""
    return path.with_name(f"{data_stem(path)}.{to}{suffix_for(container, gzip_)}")


def _filled_columns(record: Any) -> list[str]:
    """The OPTIONAL_COLUMNS a written record fills, and "tool_calls" when an OpenAI message of it calls a tool."""
    if not isinstance(record, dict):
        return []
    calls = isinstance(record.get("messages"), list) and any(isinstance(m, dict) and m.get("tool_calls")
                                                             for m in record["messages"])
    return [k for k in OPTIONAL_COLUMNS if record.get(k)] + (["tool_calls"] if calls else [])


def convert_record(obj: Any, to: str, tally: ConvertResult | None = None) -> tuple[Any, bool]:
    """(the record in format `to`, whether it already was); raises NotRepresentable with the reason otherwise."""
    fmt = detect_format(obj) if isinstance(obj, dict) else None
    if fmt is None:
        raise NotRepresentable("it is not a record of a known format (Alpaca, ShareGPT or OpenAI messages); run `datakit "
                               "audit` to see why.")
    if fmt == "prompts":
        raise NotRepresentable("it holds questions without answers (an eval set's shape), which no training format holds.")
    if fmt == to and _canonical(obj, to):
        return obj, True
    conv = {"alpaca": _from_alpaca, "sharegpt": _from_sharegpt, "openai": _from_openai}[fmt](obj)
    produced = {"alpaca": _to_alpaca, "sharegpt": _to_sharegpt, "openai": _to_openai}[to](conv)
    new = _layout(obj, conv, produced)
    if tally is not None:
        tally.with_history += bool(produced.get("history"))
        tally.kept_input += INPUT_MARKER in produced
        if to == "alpaca":
            for key in (k for t in conv.turns if t.role != "system" for k in t.extra):
                tally.dropped_turn_fields[key] = tally.dropped_turn_fields.get(key, 0) + 1
    return new, False


def _canonical(obj: dict, to: str) -> bool:
    """Whether a record of format `to` already has the target's canonical fields, role names and text values (so it is
    kept as it is): what LLaMA-Factory reads through the entry `dataset_info_entry` writes. Typed content parts are
    joined into text, like every other conversion into OpenAI messages does."""
    if to == "alpaca":
        return all(isinstance(obj.get(k), str) for k in ("instruction", "input", "output"))
    if to == "sharegpt":
        return all(isinstance(t, dict) and t.get("from") in SHAREGPT_TAGS and isinstance(t.get("value"), str)
                   for t in obj["conversations"])
    messages = obj.get("messages")
    return isinstance(messages, list) and all(
        isinstance(m, dict) and m.get("role") in OPENAI_TAGS
        and (isinstance(m.get("content"), str) or (m.get("content") is None and bool(m.get("tool_calls"))))
        for m in messages)


# --- reading each format into the conversation form ---------------------------------------------------------


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotRepresentable(f"{where} is a {type(value).__name__}, not text; fix the record first (`datakit fix`).")
    return value


def _from_alpaca(obj: dict) -> Conversation:
    if "instances" in obj and not any(k in obj for k in OUTPUT_ALIASES):
        raise NotRepresentable("self-instruct `instances` hold several input/output pairs; split them into one record each.")
    keys = list(obj)
    instruction_key = next((k for k in INSTRUCTION_ALIASES if k in obj), None)
    output_key = next((k for k in OUTPUT_ALIASES if k in obj), None)
    if instruction_key is None or output_key is None:
        raise NotRepresentable(f"it has no {'instruction' if instruction_key is None else 'output'} field; run `datakit "
                               "audit` to see what it holds.")
    consumed = {instruction_key, output_key, "input", "system", "history"} & set(obj)
    turns = [Turn("system", _text(obj.get("system"), "system"))] if obj.get("system") else []
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(isinstance(p, list) and len(p) == 2 for p in history):
        raise NotRepresentable("history is not a list of [user, assistant] pairs.")
    for i, (user, assistant) in enumerate(history):
        turns += [Turn("user", _text(user, f"history[{i}][0]")), Turn("assistant", _text(assistant, f"history[{i}][1]"))]
    instruction = _text(obj[instruction_key], instruction_key)
    input_ = _text(obj.get("input"), "input")
    turns += [Turn("user", instruction + ("\n" + input_ if input_ else "")), Turn("assistant", _text(obj[output_key], output_key))]
    extra = {k: v for k, v in obj.items() if k not in consumed}
    first = min(keys.index(k) for k in consumed)
    return Conversation(turns, extra, first, input_ or None)


def _from_sharegpt(obj: dict) -> Conversation:
    turns = [Turn("system", _text(obj.get("system"), "system"))] if obj.get("system") else []
    for i, t in enumerate(obj["conversations"]):
        if not isinstance(t, dict):
            raise NotRepresentable(f"conversations[{i}] is not a {{from, value}} object.")
        who = str(t.get("from", "")).strip().lower()
        role = SHAREGPT_ROLES.get(who)
        if role is None:
            raise NotRepresentable(f"conversations[{i}] has the unknown role '{t.get('from')}'.")
        value = _text(t.get("value"), f"conversations[{i}].value")
        extra = {k: v for k, v in t.items() if k not in ("from", "value")}
        if who == "function_call":
            calls, parallel = _calls_from_text(value, i)
            turns.append(Turn("assistant", "", extra, calls, parallel))
        else:
            turns.append(Turn(role, value, extra))
    consumed = {"conversations", "system"} & set(obj)
    return _conversation(obj, turns, consumed)


def _from_openai(obj: dict) -> Conversation:
    key = "messages" if isinstance(obj.get("messages"), list) else "conversations"
    turns = []
    for i, m in enumerate(obj[key]):
        if not isinstance(m, dict):
            raise NotRepresentable(f"{key}[{i}] is not a {{role, content}} object.")
        role = OPENAI_ROLES.get(str(m.get("role", "")).strip().lower())
        if role is None:
            raise NotRepresentable(f"{key}[{i}] has the unknown role '{m.get('role')}'.")
        content = m.get("content")
        if isinstance(content, list):
            content = _parts_text(content, f"{key}[{i}].content")
        extra = {k: v for k, v in m.items() if k not in ("role", "content", "tool_calls")}
        calls = None
        if m.get("tool_calls"):
            calls = _calls_from_openai(m["tool_calls"], f"{key}[{i}].tool_calls")
            if _text(content, f"{key}[{i}].content"):
                raise NotRepresentable(f"{key}[{i}] holds both text and tool calls, which ShareGPT and Alpaca keep apart.")
        turns.append(Turn(role, _text(content, f"{key}[{i}].content"), extra, calls, bool(calls) and len(calls) > 1))
    return _conversation(obj, turns, {key})


def _conversation(obj: dict, turns: list[Turn], consumed: set[str]) -> Conversation:
    keys = list(obj)
    return Conversation(turns, {k: v for k, v in obj.items() if k not in consumed}, min(keys.index(k) for k in consumed),
                        _marker(obj, turns))


def _marker(obj: dict, turns: list[Turn]) -> str | None:
    """The Alpaca input kept by an earlier conversion, when the last user turn still ends with it."""
    value = obj.get(INPUT_MARKER)
    users = [t for t in turns if t.role == "user"]
    if isinstance(value, str) and value and users and users[-1].content.endswith("\n" + value):
        return value
    return None


def _parts_text(parts: list, where: str) -> str:
    texts = []
    for j, p in enumerate(parts):
        if not isinstance(p, dict) or p.get("type", "text") != "text":
            kind = p.get("type") if isinstance(p, dict) else type(p).__name__
            raise NotRepresentable(f"{where}[{j}] is a '{kind}' part; only text converts (images and audio need their own columns).")
        text = p.get("text") if p.get("text") is not None else p.get("value")
        texts.append(_text(text, f"{where}[{j}]"))
    return "".join(texts)


def _calls_from_text(value: str, i: int) -> tuple[list[dict], bool]:
    """A ShareGPT function_call value, {"name", "arguments"} as JSON or a list of them (parallel calls); and whether
    it was a list."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise NotRepresentable(f"conversations[{i}] is a function_call whose value is not JSON.") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls or not all(isinstance(c, dict) and "name" in c for c in calls):
        raise NotRepresentable(f"conversations[{i}] is a function_call without a name.")
    return calls, isinstance(parsed, list)


def _calls_from_openai(tool_calls: Any, where: str) -> list[dict]:
    if not isinstance(tool_calls, list):
        raise NotRepresentable(f"{where} is not a list.")
    calls = []
    for c in tool_calls:
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or "name" not in fn:
            raise NotRepresentable(f"{where} holds a call without function.name.")
        args = fn.get("arguments", "{}")
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            raise NotRepresentable(f"{where}: the arguments of '{fn['name']}' are not JSON.") from None
        calls.append({"name": fn["name"], "arguments": args} | ({"id": c["id"]} if "id" in c else {}))
    return calls


# --- writing the conversation form in each format ---------------------------------------------------------


def _leading_system(turns: list[Turn]) -> int:
    """How many turns open the conversation as system messages."""
    return next((i for i, t in enumerate(turns) if t.role != "system"), len(turns))


def _to_alpaca(conv: Conversation) -> dict:
    lead = _leading_system(conv.turns)
    system = [t.content for t in conv.turns[:lead]]
    rest = conv.turns[lead:]
    if any(t.role == "system" for t in rest):
        raise NotRepresentable("a system message in the middle of the conversation has no place in Alpaca.")
    if any(t.role == "tool" or t.calls for t in rest):
        raise NotRepresentable("tool calls and tool results have no place in Alpaca; convert to sharegpt or openai instead.")
    roles = [t.role for t in rest]
    if not roles or roles != ["user", "assistant"] * (len(roles) // 2) or len(roles) % 2:
        raise NotRepresentable(f"turns go {'/'.join(roles) or 'nowhere'}; Alpaca holds user/assistant pairs ending with "
                               "the assistant.")
    pairs = [[rest[i].content, rest[i + 1].content] for i in range(0, len(rest), 2)]
    *history, (user, answer) = pairs
    instruction, input_ = user, ""
    if conv.alpaca_input is not None:
        instruction, input_ = user[: -len(conv.alpaca_input) - 1], conv.alpaca_input
    out = {"instruction": instruction, "input": input_, "output": answer}
    if system:
        out["system"] = "\n".join(system)
    if history:
        out["history"] = history
    return out


def _to_sharegpt(conv: Conversation) -> dict:
    lead = _leading_system(conv.turns)
    system = [t.content for t in conv.turns[:lead]]
    turns = []
    for t in conv.turns[lead:]:
        if t.calls is not None:
            value = json.dumps(t.calls if t.parallel else t.calls[0], ensure_ascii=False)
            turns.append({"from": "function_call", "value": value} | t.extra)
        else:
            turns.append({"from": SHAREGPT_FROM[t.role], "value": t.content} | t.extra)
    out: dict = {"conversations": turns}
    if system:
        out["system"] = "\n".join(system)
    return out | _input_marker(conv)


def _to_openai(conv: Conversation) -> dict:
    messages = []
    for t in conv.turns:
        if t.calls is not None:
            calls = [({"id": c["id"]} if "id" in c else {}) | {"type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c.get("arguments", {}), ensure_ascii=False)}} for c in t.calls]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls} | t.extra)
        else:
            messages.append({"role": t.role, "content": t.content} | t.extra)
    return {"messages": messages} | _input_marker(conv)


def _input_marker(conv: Conversation) -> dict:
    return {INPUT_MARKER: conv.alpaca_input} if conv.alpaca_input else {}


def _layout(original: dict, conv: Conversation, produced: dict) -> dict:
    """The produced fields where the format's fields were, the record's other fields around them, as before."""
    clash = sorted(set(produced) & set(conv.extra) - {INPUT_MARKER})
    if clash:
        raise NotRepresentable(f"its field(s) {', '.join(clash)} would be overwritten by the converted record's own.")
    extra = [(k, v) for k, v in conv.extra.items() if k != INPUT_MARKER]
    before = [(k, v) for k, v in extra if list(original).index(k) < conv.first_key]
    after = [(k, v) for k, v in extra if list(original).index(k) > conv.first_key]
    return dict(before) | produced | dict(after)


# --- LLaMA-Factory registration -----------------------------------------------------------------------------


def dataset_info_entry(file_name: str, to: str, filled: set[str]) -> dict:
    """A LLaMA-Factory dataset_info.json entry (formatting, columns, tags) for a file in format `to` whose records
    fill the OPTIONAL_COLUMNS in `filled` (gathered while the records are written), as LLaMA-Factory's data/README.md
    defines them. OpenAI messages are its sharegpt formatting with OpenAI tags, except when an assistant message
    calls tools: the sharegpt reader takes only each message's `content` (None there), so such a file gets the
    `openai` formatting, whose reader turns `tool_calls` into function calls."""
    if to == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
        columns |= {k: k for k in ("system", "history") if k in filled}
        return {"file_name": file_name, "columns": columns}
    if to == "sharegpt":
        columns = {"messages": "conversations"} | {k: k for k in ("system", "tools") if k in filled}
        return {"file_name": file_name, "formatting": "sharegpt", "columns": columns}
    columns = {"messages": "messages"} | ({"tools": "tools"} if "tools" in filled else {})
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "system_tag": "system", "observation_tag": "tool"}
    formatting = "openai" if "tool_calls" in filled else "sharegpt"
    return {"file_name": file_name, "formatting": formatting, "columns": columns, "tags": tags}


LLAMAFACTORY_SUFFIXES = (".json", ".jsonl", ".parquet")  # the data files LLaMA-Factory's loader knows by extension


def _readable_by_llamafactory(output: Path) -> None:
    """Refuse, before anything is written, an entry LLaMA-Factory could not load: it picks a file's reader by the last
    extension, and knows no .gz (nor .ndjson or a name without one)."""
    if output.suffix.lower() not in LLAMAFACTORY_SUFFIXES:
        raise ValueError(f"--dataset-info: LLaMA-Factory loads a dataset file by its extension ({', '.join(LLAMAFACTORY_SUFFIXES)}"
                         f"), which {output.name} does not end in; name the output e.g. {data_stem(output)}.jsonl.")


def write_dataset_info(output: Path, name: str, to: str, filled: set[str]) -> Path:
    """Add or replace entry `name` in the dataset_info.json next to `output`, keeping every other entry."""
    info_path = output.parent / "dataset_info.json"
    info: dict = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{info_path}: not valid JSON ({e}); fix or move it, then run convert again.") from None
        if not isinstance(info, dict):
            raise ValueError(f"{info_path}: expected a JSON object of dataset entries, found a {type(info).__name__}.")
    info[name] = dataset_info_entry(output.name, to, filled)
    write_text(info_path, json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return info_path


def _notes(result: ConvertResult, out_path: Path) -> None:
    result.notes += container_notes(out_path, result.rejected_path)
    if result.with_history:
        result.notes.append(f"{result.with_history} multi-turn record(s): earlier user/assistant pairs are in `history`.")
    if result.dropped_turn_fields:
        fields = ", ".join(f"{k} ({n} turns)" for k, n in sorted(result.dropped_turn_fields.items()))
        result.notes.append(f"per-turn fields dropped, Alpaca has no place for them: {fields}.")
    if result.kept_input:
        result.notes.append(f"{result.kept_input} Alpaca input(s) joined to their instruction in the user turn are also kept "
                            f"in `{INPUT_MARKER}`, so that `--to alpaca` restores both fields.")


def print_summary(result: ConvertResult, console: Console) -> None:
    console.print(f"convert {result.source} -> {result.to}: {result.converted} converted, {result.unchanged} already "
                  f"{result.to}, {result.refused} refused (of {result.records})")
    console.print(f"written -> {result.output}; refused and unreadable records with their reason -> {result.rejected_path}")
    if result.dataset_info is not None:
        console.print(f"LLaMA-Factory entry -> {result.dataset_info}")
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")
