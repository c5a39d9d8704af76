"""Language of every prompt and response: langdetect's answers, computed for many texts at once with numpy.

`langdetect.detect` spends ~3 ms per text in pure-Python loops. `LanguageDetector` reproduces it
(langdetect 1.0.9: same profiles, n-gram extraction, seeded random draws and convergence rule) on
batches of texts, ~20x faster, and `detect_languages` asks it once per distinct text. How:

- Every text restarts langdetect's `random.Random` from the same seed, so the 32-bit words behind its
  `choice` and `gauss` calls are the same for all texts: they are drawn once (`_Stream`).
- `choice(ngrams)` is rejection sampling on the top bits of each word, so a text's draws are a
  vectorised filter of that stream; a trial's running product of per-n-gram probabilities is a
  cumulative sum of logarithms, tested for convergence after every 5th update as langdetect does.

Answers can differ from langdetect's only by floating-point rounding at its convergence threshold
(`bench/bench_language.py` measures the per-record agreement), and for texts longer than `RAW_CAP`.
"""
from __future__ import annotations

import json
import math
import os
import re
from functools import lru_cache

import numpy as np
import polars as pl

from datakit.measure.parallel import map_batches
from schemas.config import AuditConfig
from schemas.dataset import Dataset

# langdetect reads the first 10,000 characters left after removing URLs and e-mail addresses; the cap
# bounds the e-mail regular expression, which is slow on huge unbroken strings.
RAW_CAP = 100_000
BATCH = 128  # texts detected together: bounds memory (up to ~0.5 MB per text for the hardest ones)
_MAX_TEXT = 10_000  # langdetect's Detector.max_text_length
_TRIALS = 7  # langdetect's Detector.n_trial
# Blocks of 5 updates computed per step of a trial (the first step starts with one more update): the
# steps add up to 1,001 updates, langdetect's iteration limit; most trials converge within 50.
_STAGES = (4, 6, 10, 20, 40, 60, 60)
_SPACE = 0x20
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_SHIFT = 21  # bits per code point in an n-gram key: three code points fit in 63 bits


class _Stream:
    """The 32-bit words a `random.Random(seed)` yields, drawn once and extended on demand."""

    def __init__(self, seed: int):
        import random

        self._rng = random.Random(seed)
        self.words = np.empty(0, dtype=np.int64)
        self.extend(1 << 14)

    def extend(self, upto: int) -> None:
        if upto > self.words.size:
            more = [self._rng.getrandbits(32) for _ in range(max(upto, 2 * self.words.size) - self.words.size)]
            self.words = np.concatenate([self.words, np.array(more, dtype=np.int64)])

    def _uniform(self, pos: np.ndarray) -> np.ndarray:
        """`Random.random()` from the two words at each position (CPython's genrand_res53)."""
        return ((self.words[pos] >> 5) * 67108864.0 + (self.words[pos + 1] >> 6)) * (1.0 / 9007199254740992.0)

    def gauss(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`Random.gauss()` from the 4 words at each position: its value and the spare it keeps for the next call.

        The transcendental functions come from `math`, as in `random.gauss`: numpy's cos and log may differ
        from the C library's in the last bit, which would move a weight and, rarely, an answer."""
        self.extend(int(pos.max()) + 4)
        x2pi = (self._uniform(pos) * (2.0 * math.pi)).tolist()
        g2rad = [math.sqrt(-2.0 * math.log(1.0 - u)) for u in self._uniform(pos + 2).tolist()]
        return (np.array([math.cos(x) * g for x, g in zip(x2pi, g2rad)]),
                np.array([math.sin(x) * g for x, g in zip(x2pi, g2rad)]))


class _KeyIndex:
    """Row of each int64 key in an open-addressing hash table, looked up for a whole array at once."""

    _MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing

    def __init__(self, keys: np.ndarray):
        bits = max(4, int(4 * keys.size).bit_length())  # load factor <= 1/4: short probe sequences
        self._shift, self._mask = np.uint64(64 - bits), (1 << bits) - 1
        self._keys = np.full(1 << bits, -1, dtype=np.int64)
        self._rows = np.full(1 << bits, -1, dtype=np.int64)
        slot, todo = self._hash(keys), np.arange(keys.size)
        while todo.size:
            free = todo[self._keys[slot[todo]] == -1]
            _, first = np.unique(slot[free], return_index=True)  # one key per free slot per round
            placed = free[first]
            self._keys[slot[placed]], self._rows[slot[placed]] = keys[placed], placed
            todo = np.setdiff1d(todo, placed, assume_unique=True)
            slot[todo] = (slot[todo] + 1) & self._mask

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * self._MUL) >> self._shift).astype(np.int64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Row per key, -1 for keys not in the table."""
        out = np.full(keys.size, -1, dtype=np.int64)
        slot, todo = self._hash(keys), np.arange(keys.size)
        while todo.size:
            seen = self._keys[slot[todo]]
            hit = seen == keys[todo]
            out[todo[hit]] = self._rows[slot[todo[hit]]]
            todo = todo[~hit & (seen != -1)]
            slot[todo] = (slot[todo] + 1) & self._mask
        return out


class LanguageDetector:
    """langdetect's `Detector.detect` with a fixed seed, for batches of texts."""

    def __init__(self, seed: int = 0):
        from langdetect.detector import Detector
        from langdetect.utils.ngram import NGram

        self.langs, keys, self._probs = _profiles()
        self._index = _KeyIndex(keys)
        self._d = Detector
        self._normalize_vi, self._normalize_char = NGram.normalize_vi, NGram.normalize
        self._norm = np.full(0x10000, -1, dtype=np.int64)  # langdetect's normalised character, filled as characters appear
        self._upper = np.array([chr(c).isupper() for c in range(0x10000)], dtype=bool)
        self._stream = _Stream(seed)

    def detect(self, texts: list[str]) -> list[str | None]:
        """langdetect's language code per text; None where it finds no n-gram or no language above 0.1.
        Batches run on every core (`datakit.measure.parallel`; workers inherit this detector)."""
        global _forked
        _forked = self
        batches = [texts[start: start + BATCH] for start in range(0, len(texts), BATCH)]
        return [lang for found in map_batches(_detect_in_worker, batches, len(batches) // _BATCHES_PER_CORE)
                for lang in found]

    def _detect_batch(self, texts: list[str]) -> list[str | None]:
        rows, counts = self._ngram_rows(texts)
        prob = self._probabilities(rows, counts)
        best = prob.argmax(axis=1)
        ok = (counts > 0) & (prob[np.arange(best.size), best] > self._d.PROB_THRESHOLD)
        return [self.langs[b] if k else None for b, k in zip(best.tolist(), ok.tolist())]

    def _ngram_rows(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Profile rows of the n-grams langdetect extracts from each text, in its order, concatenated,
        and how many belong to each text."""
        d = self._d
        clean = [self._normalize_vi(d.MAIL_RE.sub(" ", d.URL_RE.sub(" ", t[:RAW_CAP])))[:_MAX_TEXT] for t in texts]
        cp = np.frombuffer("".join(clean).encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64)
        seg = np.repeat(np.arange(len(texts)), [len(t) for t in clean])
        space = cp == _SPACE
        keep = ~(space & np.concatenate(([False], space[:-1])) & ~_starts(seg))  # one space of each run
        cp, seg = cp[keep], seg[keep]
        latin = (cp >= 0x41) & (cp <= 0x7A)  # langdetect's 'A' <= ch <= 'z'
        other = (cp >= 0x300) & ((cp < 0x1E00) | (cp > 0x1EFF))  # not Latin Extended Additional
        strip = 2 * np.bincount(seg, latin, len(texts)) < np.bincount(seg, other, len(texts))
        keep = ~(latin & strip[seg])  # a text mostly in another script loses its Latin letters
        cp, seg = cp[keep], seg[keep]
        start = _starts(seg)
        bmp = cp < 0x10000
        ch = np.where(bmp, self._normalised(cp & 0xFFFF), cp)
        up = self._upper[ch & 0xFFFF]
        if not bmp.all():
            up[~bmp] = [chr(c).isupper() for c in ch[~bmp].tolist()]
        second = np.concatenate(([False], start[:-1])) & ~start
        prev1 = np.where(start, _SPACE, np.roll(ch, 1))
        prev2 = np.where(start | second, _SPACE, np.roll(ch, 2))
        emit = ~(up & np.roll(up, 1) & ~start)  # nothing is emitted inside an all-capitals word
        keys = np.stack([ch, (prev1 << _SHIFT) | ch, (((prev2 << _SHIFT) | prev1) << _SHIFT) | ch], axis=1)
        wanted = np.stack([emit & (ch != _SPACE), emit & ((ch != _SPACE) | (prev1 != _SPACE)),
                           emit & (prev1 != _SPACE)], axis=1)
        found = self._index.get(keys[wanted])
        owner = np.broadcast_to(seg[:, None], wanted.shape)[wanted]
        return found[found >= 0], np.bincount(owner[found >= 0], minlength=len(texts))

    def _normalised(self, cp: np.ndarray) -> np.ndarray:
        """langdetect's per-character normalisation of Basic Multilingual Plane code points; each character's is
        computed the first time it is seen (a run meets a few thousand of the 65,536)."""
        new = np.unique(cp[self._norm[cp] < 0])
        if new.size:
            normalize = self._normalize_char
            self._norm[new] = [ord(normalize(chr(c))) for c in new.tolist()]
        return self._norm[cp]

    def _probabilities(self, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """langdetect's per-language probabilities summed over its trials and divided by their number, one row
        per text; a text stops early once the remaining trials cannot change its best language (`_decided`)."""
        d = self._d
        total = np.zeros((counts.size, len(self.langs)))
        texts = np.flatnonzero(counts)
        if texts.size == 0:
            return total
        run = _Run(self._probs, rows, counts[texts], np.concatenate(([0], np.cumsum(counts)[:-1]))[texts])
        found = np.zeros((texts.size, run.mult.size))
        spare = None
        alive = np.arange(texts.size)  # texts whose answer the remaining trials could still change
        for trial in range(_TRIALS):
            if spare is None:
                z, spare = self._stream.gauss(run.pos)
                run.pos += 4
            else:
                z, spare = spare, None
            weight = (d.ALPHA_DEFAULT + z * d.ALPHA_WIDTH) / d.BASE_FREQ
            if trial:
                alive = alive[~_decided(found[alive][:, run.expand], _TRIALS - trial)]
                if not alive.size:
                    break
            todo, sums = alive, None
            for blocks in _STAGES:
                converged, sums = self._stage(run, todo, weight[todo], sums, blocks)
                found[todo[converged]] += sums[converged] / _TRIALS
                todo, sums = todo[~converged], sums[~converged]
                if not todo.size:
                    break
            if todo.size:  # langdetect stops a trial at its iteration limit, converged or not
                found[todo] += run.normalised(sums) / _TRIALS
        total[texts[:, None], run.columns] = found[:, run.expand]
        return total

    def _stage(self, run: _Run, todo: np.ndarray, weight: np.ndarray, sums: np.ndarray | None,
               blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """The next `blocks` convergence checks of one trial for the texts `todo`.

        langdetect normalises and tests convergence after updates 1, 6, 11, ...: the first stage
        (`sums` None) is one update then blocks of 5, later ones continue from the log-probabilities
        `sums`. Returns which texts converged, and per text its normalised probabilities where it
        converged, else its log-probabilities so far; stream positions move past the draws used.
        """
        first = sums is None
        updates = 5 * blocks + first
        span = 3 * updates + 32  # more than half of the words are accepted draws
        while True:
            self._stream.extend(int(run.pos[todo].max()) + span)
            drawn = self._stream.words[run.pos[todo, None] + np.arange(span)] >> run.shift[todo, None]
            accepted = drawn < run.counts[todo, None]
            if (accepted.sum(axis=1) >= updates).all():
                break
            span *= 2
        at = np.nonzero(accepted & (np.cumsum(accepted, axis=1) <= updates))[1].reshape(todo.size, updates)
        grams = run.local[run.offsets[todo, None] + np.take_along_axis(drawn, at, axis=1)]
        factors = weight[:, None, None] + run.table[grams]
        parts = [factors[:, :1]] if first else []
        parts.append(factors[:, first:].reshape(todo.size, blocks, 5, run.mult.size).prod(axis=2))
        checks = np.cumsum(np.log(np.concatenate(parts, axis=1) if first else parts[0]), axis=1)
        if not first:
            checks += sums[:, None, :]
        top = checks.max(axis=2, keepdims=True)
        spread = np.exp(checks - top) @ run.mult
        hit = spread < 1.0 / self._d.CONV_THRESHOLD
        converged = hit.any(axis=1)
        check = np.where(converged, hit.argmax(axis=1), blocks - 1 + first)
        used = 5 * check + (1 if first else 5)
        run.pos[todo] += at[np.arange(todo.size), used - 1] + 1
        state = checks[np.arange(todo.size), check]
        state[converged] = run.normalised(state[converged])
        return converged, state


class _Run:
    """One batch's state: its n-grams' rows of the profile table, where each text's draws are in the stream.

    The table keeps only the batch's n-grams, and only the languages whose profile holds one of them:
    every other language is multiplied by the smoothing weight alone at each update, so they all move
    together and are tracked as one last column standing for `rest` languages (`mult`).
    """

    def __init__(self, probs: np.ndarray, rows: np.ndarray, counts: np.ndarray, offsets: np.ndarray):
        used, self.local = np.unique(rows, return_inverse=True)
        table = probs[used]
        active = np.flatnonzero(table.any(axis=0))
        rest = np.setdiff1d(np.arange(probs.shape[1]), active)
        self.table = np.concatenate([table[:, active], np.zeros((used.size, 1))], axis=1)
        self.mult = np.append(np.ones(active.size), rest.size)
        self.columns = np.concatenate([active, rest])  # the languages, in column order with the rest expanded
        self.expand = np.concatenate([np.arange(active.size), np.full(rest.size, active.size)])
        self.counts, self.offsets = counts, offsets
        self.shift = np.array([32 - int(n).bit_length() for n in counts.tolist()])  # choice() keeps the top bits
        self.pos = np.zeros(counts.size, dtype=np.int64)

    def normalised(self, logs: np.ndarray) -> np.ndarray:
        """Probabilities from log-probabilities, one row each (the rest column: each of its languages')."""
        prob = np.exp(logs - logs.max(axis=1, keepdims=True))
        return prob / (prob @ self.mult)[:, None]


@lru_cache(maxsize=1)
def _profiles() -> tuple[list[str], np.ndarray, np.ndarray]:
    """langdetect's languages, n-gram keys and probability table (n-gram x language), read from its profile files
    as `DetectorFactory.load_profile` reads them (same order, same probabilities) without its slow Python table."""
    from langdetect.detector_factory import PROFILES_DIRECTORY

    langs, keys, columns, probs = [], [], [], []
    for name in os.listdir(PROFILES_DIRECTORY):
        path = os.path.join(PROFILES_DIRECTORY, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
        grams = list(profile["freq"])
        size = np.fromiter(map(len, grams), np.int64, len(grams))
        codes = np.frombuffer("".join(grams).encode("utf-32-le"), np.uint32).astype(np.int64)
        end = np.cumsum(size) - 1
        one, two = size >= 2, size >= 3  # n-grams of 1-3 characters, keyed like `_ngram_rows` keys them
        key = (np.where(two, codes[end - 2 * two], 0) << _SHIFT | np.where(one, codes[end - one], 0)) << _SHIFT | codes[end]
        ok = (size >= 1) & (size <= 3)
        counts = np.fromiter(profile["freq"].values(), np.float64, len(grams))
        keys.append(key[ok])
        probs.append(counts[ok] / np.array(profile["n_words"], dtype=np.float64)[size[ok] - 1])
        columns.append(np.full(int(ok.sum()), len(langs)))
        langs.append(profile["name"])
    unique, row = np.unique(np.concatenate(keys), return_inverse=True)
    table = np.zeros((unique.size, len(langs)))
    table[row, np.concatenate(columns)] = np.concatenate(probs)
    return langs, unique, table


def _decided(found: np.ndarray, remaining: int) -> np.ndarray:
    """Texts whose language `remaining` more trials cannot change: each trial adds at most 1/_TRIALS to a
    language's average, so a lead over the runner-up larger than that is final. Most texts converge on
    one language with probability ~1 in every trial and are decided after 4 of the 7, exactly as langdetect
    would decide them."""
    if found.shape[1] < 2:
        return np.ones(found.shape[0], dtype=bool)
    top2 = np.partition(found, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0] > remaining / _TRIALS + 1e-9


def _starts(seg: np.ndarray) -> np.ndarray:
    """True at the first character of each text in a concatenation."""
    return np.concatenate(([True], seg[1:] != seg[:-1])) if seg.size else np.zeros(0, dtype=bool)


_forked: LanguageDetector | None = None  # the detector whose `detect` call started the worker processes
_BATCHES_PER_CORE = 8  # below ~1,000 texts per core, starting workers costs more than it saves


def _detect_in_worker(texts: list[str]) -> list[str | None]:
    return _forked._detect_batch(texts)


@lru_cache(maxsize=4)
def detector(seed: int) -> LanguageDetector:
    return LanguageDetector(seed)


def detect_languages(texts: list[str | None], seed: int = 0) -> list[str | None]:
    """Language code per text (langdetect's: en, zh-cn, ...), None for empty or undetectable text.

    Each distinct text is detected once, CJK texts batched together: a batch then tracks few languages.
    """
    distinct = sorted(dict.fromkeys(t for t in texts if t and t.strip()), key=lambda t: _CJK.search(t) is not None)
    found = dict(zip(distinct, detector(seed).detect(distinct))) if distinct else {}
    return [found.get(t) if t else None for t in texts]


def add_languages(ds: Dataset, config: AuditConfig) -> None:
    """Adds `prompt_lang` and `response_lang`; null for invalid rows and texts with nothing to detect."""
    frame = ds.frame
    valid = frame["valid"].to_list()
    texts = [t if v else None for t, v in zip(frame["prompt"].to_list(), valid)]
    texts += [t if v else None for t, v in zip(frame["response"].to_list(), valid)]
    langs = detect_languages(texts, config.language.seed)
    ds.frame = frame.with_columns(pl.Series("prompt_lang", langs[: frame.height], pl.String),
                                  pl.Series("response_lang", langs[frame.height:], pl.String))
