"""Regular expressions a user writes in a config, made unable to hang an audit.

Python's `re` backtracks without limit: `(a+)+$` or `(\\w+\\s?)+$` takes minutes on one answer of a few hundred
characters. User patterns therefore run on the `regex` engine (the same syntax, and a time limit per call): when a
config is read each one is compiled and probed on adversarial texts, so a catastrophic pattern is a config error
naming the key and the pattern; on data every call is bounded, so one the probes missed ends the audit with a clear
error instead of a hang. The reviewed built-in defaults run without the per-call limit, which costs microseconds a call.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import regex

MATCH_TIMEOUT = 1.0  # seconds one pattern may take on one text before the audit stops with PatternTooSlow
PROBE_TIMEOUT = 0.1  # seconds a pattern may take on one probe text; well-behaved ones need microseconds
PROBE_CHARS = 1000  # backtracking blow-ups show at this length (2 s for (a+)+$), linear patterns take microseconds
MAX_REPEAT_PRODUCT = 1_000_000  # {n} counts multiply the compiled size: (a{65535}){65535} takes minutes to compile
_UNITS = ("a", "A", "1", " ", "ab ", "a1", "a_", "a-", "a.", "a,", "a/", "a\n", "\t", "\n", "é", "中", "中文，", "<a>", "&",
          "\\", "#", "=", "'", '"', "!")
_ENDS = ("", "\x00")
_COUNTS = regex.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")


class PatternTooSlow(ValueError):
    """A configured pattern ran past MATCH_TIMEOUT on one text: it backtracks catastrophically on this data."""

    def __init__(self, key: str, pattern: str, where: str | int = ""):
        super().__init__(key, pattern, where)  # all in args, so the error survives pickling out of a worker process

    def at(self, where: str | int) -> PatternTooSlow:
        """The same error, located (a record's file:line, or its row in the batch until the caller knows the line)."""
        return PatternTooSlow(self.args[0], self.args[1], where)

    def __str__(self) -> str:
        key, pattern, where = self.args
        return (f"{key}: pattern {pattern!r} ran over {MATCH_TIMEOUT:g} s on one text{f' ({where})' if where != '' else ''}"
                f"{_WHY} Rewrite it, or remove it from the config, and run again.")


_WHY = (": it backtracks catastrophically (nested or overlapping repeats such as (a+)+, (\\w+\\s?)+ or (a|a)*), "
        "so the audit would hang.")


def check_pattern(pattern: str) -> str:
    """`pattern` if it compiles and runs fast on adversarial probe texts; else ValueError saying why (for a config)."""
    sizes = [max(int(n), int(m or 0)) for n, m in _COUNTS.findall(pattern)]
    product = 1
    for size in sizes:
        product *= max(size, 1)
    if product > MAX_REPEAT_PRODUCT:
        raise ValueError(f"pattern {pattern!r} repeats counts that multiply to {product:,} ({'x'.join(map(str, sizes))}): "
                         f"over {MAX_REPEAT_PRODUCT:,}, it takes minutes to compile. Use smaller {{n}} counts or + and *.")
    try:
        compiled = regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError) as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression ({e})") from None
    for text in _probes(pattern):
        try:
            compiled.search(text, timeout=PROBE_TIMEOUT)
        except TimeoutError:
            shown = text[:12].encode("unicode_escape").decode()
            raise ValueError(f"pattern {pattern!r} ran over {PROBE_TIMEOUT:g} s on a {len(text):,}-character test text "
                             f"('{shown}...'){_WHY} Rewrite such a repeat as one (a+, \\w+) or anchor it.") from None
    return pattern


def _probes(pattern: str) -> Iterable[str]:
    """Long runs of one unit (a letter, a word and a space, a digit, CJK, punctuation, the pattern's own literals),
    alone or after one of the pattern's literals, ending at the text's end or on a character nothing matches: what
    makes a backtracking engine try every way to split the run."""
    literals = [w for w in regex.split(r"[][(){}|*+?.^$]+", regex.sub(r"\\.", " ", pattern)) if w][:8]
    units = dict.fromkeys([*_UNITS, *literals, *(w[0] for w in literals)])
    for prefix in ("", *literals[:3]):
        for unit in units:
            body = prefix + unit * max(1, PROBE_CHARS // len(unit))
            for end in _ENDS:
                yield body + end


class BoundedPattern:
    """A compiled user pattern whose every call ends within MATCH_TIMEOUT (built-ins: no limit, no cost), raising
    PatternTooSlow naming the config key."""

    def __init__(self, pattern: str, key: str, builtin: bool = False, shape: Callable[[str], str] = str):
        self.pattern, self.key = pattern, key
        self.compiled = regex.compile(shape(pattern))
        self.timeout = None if builtin else MATCH_TIMEOUT

    def search(self, text: str) -> regex.Match | None:
        return self._bounded(lambda: self.compiled.search(text, timeout=self.timeout))

    def finditer(self, text: str) -> list[regex.Match]:
        return self._bounded(lambda: list(self.compiled.finditer(text, timeout=self.timeout)))

    def sub(self, replacement: str, text: str) -> str:
        return self._bounded(lambda: self.compiled.sub(replacement, text, timeout=self.timeout))

    def _bounded(self, call: Callable):
        try:
            return call()
        except TimeoutError:
            raise PatternTooSlow(self.key, self.pattern) from None


def bounded(patterns: list[str], key: str, builtins: Iterable[str] = (),
            shape: Callable[[str], str] = str) -> list[BoundedPattern]:
    """Each pattern compiled (as `shape` turns it into a larger regex, if given) and bounded; those among `builtins`
    (the reviewed defaults) run without the per-call limit."""
    trusted = set(builtins)
    return [BoundedPattern(p, key, p in trusted, shape) for p in patterns]
