"""Prompt templates: how a record's turns become text segments, each marked as trained (assistant) or not.

Two kinds: the Alpaca "### Instruction / ### Input / ### Response" template (English or Chinese
variant) and the tokenizer's own chat template. A tokenizer without a chat template that is asked
for one gets ChatML, the format of Qwen and many open chat models.
"""
from __future__ import annotations

from dataclasses import dataclass

TEMPLATE_NAMES = ("auto", "chat", "alpaca_en", "alpaca_zh")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TemplateError(ValueError):
    """The chosen template cannot render this data; the message says which template to pick instead."""


@dataclass(frozen=True)
class AlpacaTemplate:
    """The strings of one Alpaca-style template (Stanford Alpaca's wording and its usual Chinese translation)."""

    preamble: str
    preamble_with_input: str
    instruction: str
    input: str
    response: str


ALPACA = {
    "alpaca_en": AlpacaTemplate(
        preamble="Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n",
        preamble_with_input="Below is an instruction that describes a task, paired with an input that provides further context. "
                            "Write a response that appropriately completes the request.\n\n",
        instruction="### Instruction:\n{}\n\n", input="### Input:\n{}\n\n", response="### Response:\n"),
    "alpaca_zh": AlpacaTemplate(
        preamble="以下是描述任务的指令。请编写适当完成该请求的回答。\n\n",
        preamble_with_input="以下是描述任务的指令，以及提供进一步上下文的输入。请编写适当完成该请求的回答。\n\n",
        instruction="### 指令:\n{}\n\n", input="### 输入:\n{}\n\n", response="### 回答:\n"),
}


@dataclass(frozen=True)
class Segment:
    text: str
    train: bool  # True for assistant text: the only tokens that carry loss


def choose_template(requested: str, has_chat_template: bool, mostly_chinese: bool) -> tuple[str, str]:
    """The template to use and why: `auto` prefers the tokenizer's own chat template, as the model was trained on it."""
    if requested not in TEMPLATE_NAMES:
        raise ValueError(f"--template {requested}: unknown; choose one of {', '.join(TEMPLATE_NAMES)}.")
    if requested != "auto":
        return requested, f"--template {requested} was asked for"
    if has_chat_template:
        return "chat", "the tokenizer has a chat template: the model's own format is used for every record"
    name = "alpaca_zh" if mostly_chinese else "alpaca_en"
    return name, (f"the tokenizer has no chat template; most prompts are {'Chinese' if mostly_chinese else 'not Chinese'}, "
                  f"so the {'Chinese' if mostly_chinese else 'English'} Alpaca template is used")


def alpaca_segments(messages: list[dict], template: AlpacaTemplate, instruction: str | None = None,
                    input_: str | None = None) -> list[Segment]:
    """Alpaca rendering: user turns are instructions, tool turns inputs, assistant turns responses.

    For an Alpaca record, `instruction` and `input_` replace the last user turn (the one datakit built from
    them) so the input keeps its own "### Input" section; earlier turns are the record's history.
    """
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    has_input = bool(input_) and instruction is not None
    pending = (system + "\n\n") if system else (template.preamble_with_input if has_input else template.preamble)
    segments: list[Segment] = []
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"] or ""
        if role == "assistant":
            segments.append(Segment(pending + template.response, False))
            segments.append(Segment(content, True))
            pending = "\n\n"
        elif role == "user" and i == last_user and instruction is not None:
            pending += template.instruction.format(instruction) + (template.input.format(input_) if has_input else "")
        elif role == "tool":
            pending += template.input.format(content)
        elif role == "user":
            pending += template.instruction.format(content)
    return segments


def chat_segments(messages: list[dict], tokenizer) -> list[Segment]:
    """Chat-template rendering: each assistant turn is what the template adds after the generation prompt.

    Rendering the conversation up to each turn and taking differences keeps the mask exact for any
    template that renders a conversation as a growing prefix (every common chat template does).
    """
    render = lambda msgs, gen: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    segments: list[Segment] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(messages[:i], True)
        through = render(messages[: i + 1], False)
        if not before.startswith(done) or not through.startswith(before):
            raise TemplateError("the tokenizer's chat template does not render a conversation as a growing prefix, so "
                                "assistant turns cannot be located exactly; pass --template alpaca_en or alpaca_zh.")
        segments.append(Segment(before[len(done):], False))
        segments.append(Segment(through[len(before):], True))
        done = through
    return segments
