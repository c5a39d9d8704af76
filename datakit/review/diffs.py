"""Word-level differences between two texts, as segments the page shows side by side (near copies, conflicting
answers, a proposed repair): [op, text] with op "=" same, "-" only in the first, "+" only in the second."""
from __future__ import annotations

import difflib
import re

WORDS = re.compile(r"\s+|[\w\u0080-\uffff]+|[^\w\s]", re.UNICODE)
MAX_CHARS = 20_000  # longer texts are compared on their first MAX_CHARS characters (the rest shown as it is)


def word_diff(before: str, after: str, least: float = 0.0) -> list[list[str]] | None:
    """The segments turning `before` into `after`; None when the texts share less than `least` of their words (two
    different answers side by side read better whole than as one long deletion and insertion)."""
    a, b = WORDS.findall(before[:MAX_CHARS]), WORDS.findall(after[:MAX_CHARS])
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if least and before != after and matcher.quick_ratio() < least:
        return None
    out: list[list[str]] = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            _add(out, "=", "".join(a[a0:a1]))
            continue
        _add(out, "-", "".join(a[a0:a1]))
        _add(out, "+", "".join(b[b0:b1]))
    _add(out, "=", before[MAX_CHARS:] if before[MAX_CHARS:] == after[MAX_CHARS:] else "")
    if before[MAX_CHARS:] != after[MAX_CHARS:]:
        _add(out, "-", before[MAX_CHARS:])
        _add(out, "+", after[MAX_CHARS:])
    return out


def _add(out: list[list[str]], op: str, text: str) -> None:
    if not text:
        return
    if out and out[-1][0] == op:
        out[-1][1] += text
    else:
        out.append([op, text])
