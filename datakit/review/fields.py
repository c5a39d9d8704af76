"""Where each text of a record lives (`instruction`, `conversations[3].value`, `messages[1].content[0].text`), so the
page can show a record in its own format and an edit can put new texts back in the same places.

The places come from `datakit.records`, the one walker that knows every format: each text is swapped for a marker
and the markers are found again in the copy, so no format's layout is written down twice.
"""
from __future__ import annotations

from typing import Any

from datakit.records import map_texts, texts

MARK = "\x00datakit-review-{}\x00"


def text_fields(obj: Any) -> list[dict]:
    """[{field, role, text}] for every text of the record, in conversation order."""
    found = texts(obj)
    if not found:
        return []
    counter = iter(range(len(found)))
    marked = map_texts(obj, lambda text, role: MARK.format(next(counter)))
    where: dict[int, str] = {}
    _find(marked, "", where)
    return [{"field": where.get(i, f"text {i + 1}"), "role": role, "text": text} for i, (role, text) in enumerate(found)]


def with_texts(obj: Any, new: list[str]) -> Any:
    """A copy of the record with its texts replaced, in the order `text_fields` gives them; ValueError when the
    number of texts differs."""
    if len(new) != len(texts(obj)):
        raise ValueError(f"the record has {len(texts(obj))} texts, the edit gives {len(new)}")
    counter = iter(new)
    return map_texts(obj, lambda text, role: next(counter))


def _find(value: Any, path: str, where: dict[int, str]) -> None:
    if isinstance(value, str):
        if value.startswith("\x00datakit-review-") and value.endswith("\x00"):
            where[int(value[len("\x00datakit-review-"):-1])] = path
    elif isinstance(value, dict):
        for key, item in value.items():
            _find(item, f"{path}.{key}" if path else str(key), where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _find(item, f"{path}[{i}]", where)
