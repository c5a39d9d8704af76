"""The record formats datakit reads, as pydantic models, and the role vocabulary they normalise to.

Field aliases cover the real variants seen in public SFT data (BELLE's question/std_answer,
prompt/completion, LLaMA-Factory's typed content parts and tool-call roles).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Roles after normalisation: system, user, assistant, tool. `tool` turns sit on the user's side of the
# alternation (they answer a function call), as LLaMA-Factory and OpenAI treat them.

SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bard": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "function": "tool",
    "tool": "tool",
}
OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}

INSTRUCTION_ALIASES = ("instruction", "question", "prompt", "query")
OUTPUT_ALIASES = ("output", "std_answer", "answer", "response", "completion")


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)


class AlpacaRecord(_Record):
    """instruction / input / output, optional system and history of earlier [user, assistant] pairs."""

    instruction: str
    input: str = ""
    output: str
    system: str = ""
    history: list[tuple[str, str]] = Field(default_factory=list)

    @field_validator("input", "system", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v


class ShareGPTTurn(BaseModel):
    model_config = ConfigDict(extra="allow")
    from_: str = Field(alias="from")
    value: str


class ShareGPTRecord(_Record):
    conversations: list[ShareGPTTurn]
    system: str = ""
    tools: Any = None


class ContentPart(BaseModel):
    """A typed content part: OpenAI's {type: text, text} or LLaMA-Factory's {type: text, value}."""

    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str | None = None
    value: str | None = None

    @property
    def as_text(self) -> str:
        return self.text if self.text is not None else (self.value or "")


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.as_text for p in self.content if p.type == "text")


class OpenAIRecord(_Record):
    """`messages` (or `conversations`) as a list of {role, content}."""

    messages: list[OpenAIMessage]


class PromptsRecord(_Record):
    """Questions without answers (`turns: [str, ...]`, MT-Bench style): eval sets to decontaminate against."""

    turns: list[str]

