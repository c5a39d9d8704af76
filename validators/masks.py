"""The parts of a text that are not the writer's own prose: code, URLs, e-mail addresses and quoted text.

Rules that judge wording (spelling, hedging) and structure (completeness) blank these out first, hygiene only code:
a typo in an identifier, a bracket inside code or a hedge inside a quoted line of dialogue is not the answer's own,
and markup inside code is content. Blanking keeps the length, so a match position in the blanked text indexes the
original.
"""
from __future__ import annotations

import re

# Markdown code: a ``` block (to the end when never closed) or `inline` code. Hygiene keeps markup found there.
FENCED_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
# Every kind of code a writer's prose rules set aside: also ~~~ blocks and lines indented as code.
CODE = re.compile(FENCED_CODE.pattern + r"|~~~.*?(?:~~~|\Z)|(?m:^(?: {4}|\t)[ \t]*\S.*$)", re.DOTALL)
LINK = re.compile(r"(?i)(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
QUOTED = re.compile("\"[^\"\\n]*\"|“[^”]{0,2000}”|‘[^’\\n]*’|「[^」]{0,2000}」|『[^』]{0,2000}』|《[^》\\n]*》"
                    r"|(?<!\w)'[^'\n]+'(?!\w)")


def blank(text: str, *patterns: re.Pattern) -> str:
    """`text` with every match of the patterns replaced by spaces (newlines kept), in the order given."""
    for pattern in patterns:
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    return text


def prose(text: str) -> str:
    """Only the writer's own words left: code, links and quoted text blanked. A quotation that is the whole text
    (a generated slogan or sentence, given in quotes) is the writer's own and stays."""
    text = blank(text, CODE, LINK)
    whole = QUOTED.fullmatch(text.strip())
    return text if whole else blank(text, QUOTED)
