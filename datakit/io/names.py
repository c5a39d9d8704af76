"""Names a user or a dataset supplies that end up inside files we write, checked so that none can act as a path.

A LLaMA-Factory dataset name is a key of dataset_info.json, and tools join such names to folders (caches, exports):
one like `../../etc/x`, `a/b` or with a NUL would then point outside them. Only letters, digits, `_`, `-` and `.`
(not first) are accepted, at most MAX_NAME characters; anything else is refused with the rule, never rewritten, so
the entry is found under the name the user typed.
"""
from __future__ import annotations

import re

MAX_NAME = 128
_NAME = re.compile(rf"[^\W_][\w.-]{{0,{MAX_NAME - 1}}}")  # \w: letters of any script, digits, _


def dataset_entry_name(name: str, flag: str = "--dataset-info") -> str:
    """`name` when it is a plain entry name; a ValueError saying what is allowed otherwise."""
    if _NAME.fullmatch(name):
        return name
    shown = name if len(name) <= 60 else name[:57] + "..."
    raise ValueError(f"{flag} {shown!r}: a dataset name may hold only letters, digits, '_', '-' and '.', start with a "
                     f"letter or digit and have at most {MAX_NAME} characters (it names an entry tools may turn into a "
                     "path); e.g. --dataset-info my_data.")
