"""MinHash signatures of record texts and LSH near-duplicate matching, vectorised over whole batches.

Signatures are bit-for-bit those of `datasketch.MinHash` (same SHA-1 32-bit token hash, same
permutations drawn from `np.random.RandomState(seed)`, scheme "affine32" of datasketch >= 2.0 or
"legacy" of earlier versions) fed with one `update` per shingle, so any datasketch index or banding
agrees with ours. What differs is the cost: a batch is tokenised with numpy over its code points,
each distinct shingle is SHA-1 hashed once, and each permutation's minimum per record is one
`np.minimum.reduceat`.

Shingles (what two texts are compared on), after NFKC, lower case and whitespace collapsing:
- `shingles = "characters"` (the default): every text is a sequence of characters, spaces dropped;
  shingles are `char_ngram` characters. A word or two edited changes a few per cent of them, where
  word 5-grams lose five shingles per edit (two edits in 60 words: Jaccard ~0.7, a miss at 0.8);
- `shingles = "words"`: a text mostly in a script written without spaces (Chinese, Japanese: CJK
  ideographs, kana, CJK punctuation) is shingled by characters as above; any other text is a
  sequence of words (runs of non-space characters; a CJK character inside it is a word of its own)
  and shingles are `word_ngram` words joined by one space. "Mostly" is: at least half of its
  word-level tokens are CJK characters;
- a text shorter than n units is one shingle: all of it.

Public API: `signatures` (leakage compares prompts with it) and the measurement `add_minhash` ("minhash");
banding and clustering are `datakit.measure.lsh`'s.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import methodcaller

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from datakit.measure.normal import normalised
from datakit.measure.parallel import map_batches
from schemas.config import AuditConfig, NearDuplicateConfig
from schemas.dataset import Dataset

# datasketch.minhash constants ("legacy" scheme) and the 32-bit MurmurHash3 finalizer ("affine32").
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))

# Code points of scripts written without spaces between words (CJK ideographs, kana, CJK punctuation).
_CJK_BMP = ((0x3000, 0x303F), (0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_CJK_ASTRAL = (0x20000, 0x3134F)
_SPACE = 32
_DIGEST = methodcaller("digest")

# Code points tokenised at once: bounds the working memory (about 75 bytes per code point, ~75 MB).
BATCH_CODE_POINTS = 1_000_000
# Shingle hashes remembered across the sub-batches of one call (about 40 bytes each).
CACHE_ENTRIES = 1_000_000


@lru_cache(maxsize=1)
def _cjk_table() -> np.ndarray:
    table = np.zeros(0x10000, dtype=bool)
    for lo, hi in _CJK_BMP:
        table[lo:hi + 1] = True
    return table


def _is_cjk(cps: np.ndarray) -> np.ndarray:
    return _cjk_table()[np.minimum(cps, 0xFFFF)] | ((cps >= _CJK_ASTRAL[0]) & (cps <= _CJK_ASTRAL[1]))


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters (a, b), drawn exactly as `MinHash._init_permutations` draws them."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        ab = np.array([(gen.randint(1, _MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, _MERSENNE_PRIME, dtype=np.uint64))
                       for _ in range(num_perm)], dtype=np.uint64).T
        return ab[0], ab[1]
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    return h ^ (h >> s3)


@dataclass
class _Shingles:
    """The shingle occurrences of a batch as spans of tokens, and where each token's UTF-8 text lies.

    Text A is the batch's normalised texts back to back; text B is the same without spaces, so that
    its tokens lie back to back. A word shingle is a slice of A when its words are one space apart
    (nearly always), a character shingle is always a slice of B.
    """

    text_a: bytes
    text_b: bytes
    a_start: np.ndarray     # per token: byte offsets in A
    a_end: np.ndarray
    b_start: np.ndarray     # per token: byte offset in B
    start: np.ndarray       # per occurrence: first token
    length: np.ndarray      # per occurrence: number of tokens (0 for an empty text)
    cjk: np.ndarray         # per occurrence: character shingle (joined without spaces)
    per_record: np.ndarray  # occurrences per record (always >= 1)
    record_cjk: np.ndarray  # per record: shingled by characters


def _tokenise(norm: list[str], word_ngram: int, char_ngram: int, by_characters: bool = False) -> _Shingles:
    """Tokens and shingle spans of normalised texts, computed over the code points of the whole batch; with
    `by_characters` every text is shingled by characters, whatever its script."""
    joined = "".join(norm)
    lengths = np.fromiter(map(len, norm), dtype=np.int64, count=len(norm))
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    starts = np.concatenate([[0], np.cumsum(lengths)])
    space = cps == _SPACE
    nonspace = ~space
    if by_characters:  # every non-space character is a token
        record_cjk, word_first, word_last = np.ones(len(norm), dtype=bool), nonspace, nonspace
    else:
        cjk = _is_cjk(cps)
        brk = space | cjk
        edge = np.zeros(cps.size + 1, dtype=bool)  # a record starts here (or the batch ends)
        edge[starts] = True
        word_first = nonspace & (np.concatenate([[True], brk[:-1]]) | edge[:-1] | cjk)
        word_last = nonspace & (np.concatenate([brk[1:], [True]]) | edge[1:] | cjk)
        count = lambda mask: np.diff(np.searchsorted(np.flatnonzero(mask), starts))
        n_cjk, n_words = count(cjk), count(word_first)
        record_cjk = (n_cjk > 0) & (2 * n_cjk >= n_words)
        if record_cjk.any():  # in character mode every non-space character is a token
            in_cjk = np.repeat(record_cjk, lengths)
            word_first = np.where(in_cjk, nonspace, word_first)
            word_last = np.where(in_cjk, nonspace, word_last)
    first = np.flatnonzero(word_first)
    utf8 = (cps >= 0x80).astype(np.uint8)
    utf8 += cps >= 0x800
    utf8 += cps >= 0x10000
    utf8 += 1
    wide = np.int64 if cps.size >= 1 << 29 else np.int32  # int32 sums are ~6x faster; 4 bytes per code point fit
    offset = np.concatenate([[0], np.cumsum(utf8, dtype=wide)]).astype(np.int64)
    a_start, a_end = offset[first], offset[np.flatnonzero(word_last) + 1]
    b_start = np.concatenate([[0], np.cumsum(a_end - a_start)])[:-1]
    rec_tok = np.searchsorted(first, starts)
    tokens = np.diff(rec_tok)
    ngram = np.where(record_cjk, char_ngram, word_ngram)
    per_record = np.maximum(1, tokens - ngram + 1)
    rec = np.repeat(np.arange(len(norm)), per_record)
    occ_first = np.concatenate([[0], np.cumsum(per_record)])[:-1]
    start = rec_tok[:-1][rec] + (np.arange(rec.size) - np.repeat(occ_first, per_record))
    return _Shingles(joined.encode("utf-8", "surrogatepass"), joined.replace(" ", "").encode("utf-8", "surrogatepass"),
                     a_start, a_end, b_start, start, np.minimum(ngram, tokens)[rec], record_cjk[rec], per_record, record_cjk)


def _to_numpy(arr: pa.Array, dtype: type) -> np.ndarray:
    """Values of a null-free arrow integer array as numpy, without a copy (and without pyarrow importing pandas)."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * size)


def _to_arrow(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), values.size, [None, pa.py_buffer(values)])


def _indices(arr: pa.Array) -> np.ndarray:
    """Dictionary-encoding indices (int32): equal values, equal index, by arrow's exact hash table."""
    return _to_numpy(pc.dictionary_encode(arr).indices, np.int32)


class _HashCache:
    """What one `signatures` call (or one worker process of it) learnt from earlier batches: a token vocabulary
    (token bytes -> global id) and the SHA-1 hash of each shingle seen, keyed by its exact token-id window.

    A shingle repeated across batches (copied records, shared phrasing) is hashed once, not once per
    batch. A hit needs equal keys, never just equal fingerprints. The cache stops growing at
    CACHE_ENTRIES shingles, so memory stays bounded; it only ever saves time, results are the same.
    """

    def __init__(self) -> None:
        self.vocab = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 0, [None, pa.py_buffer(np.zeros(1, np.int64)),
                                                                             pa.py_buffer(b"")])
        self.fp = np.empty(0, dtype=np.uint64)
        self.keys: np.ndarray | None = None
        self.hashes = np.empty(0, dtype=np.uint32)

    def token_ids(self, sh: _Shingles) -> np.ndarray:
        """A global id per token of the batch: equal ids, equal token text, across all batches seen."""
        offsets = np.append(sh.b_start, len(sh.text_b)).astype(np.int64)
        tokens = pa.LargeBinaryArray.from_buffers(pa.large_binary(), sh.b_start.size,
                                                  [None, pa.py_buffer(offsets), pa.py_buffer(sh.text_b)])
        enc = pc.dictionary_encode(tokens)
        known = self._find(enc.dictionary, self.vocab).astype(np.int64)
        new = np.flatnonzero(known < 0)
        known[new] = len(self.vocab) + np.arange(new.size)
        if new.size:
            self.vocab = pa.concat_arrays([self.vocab, enc.dictionary.take(_to_arrow(new))])
        return known[_to_numpy(enc.indices, np.int32)]

    @staticmethod
    def _find(values: pa.Array, among: pa.Array) -> np.ndarray:
        """Position of each value in `among` (-1 when absent), by arrow's hash table."""
        found = pc.index_in(values, value_set=among)
        out = _to_numpy(found, np.int32).copy()
        if found.null_count:
            bits = np.unpackbits(np.frombuffer(found.buffers()[0], dtype=np.uint8), bitorder="little")
            out[bits[found.offset:found.offset + len(found)] == 0] = -1
        return out

    def lookup(self, fp: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hashes, hit, unseen): hashes of shingles hashed before (0 elsewhere), which those are, and which
        fingerprints the cache has never seen (those `add` may remember)."""
        if not self.fp.size:
            return np.zeros(fp.size, dtype=np.uint32), np.zeros(fp.size, dtype=bool), np.ones(fp.size, dtype=bool)
        at = self._find(_to_arrow(fp), _to_arrow(self.fp))
        hit = at >= 0
        hit[hit] = (self.keys[at[hit]] == keys[hit]).all(axis=1)
        return np.where(hit, self.hashes[np.maximum(at, 0)], 0).astype(np.uint32), hit, at < 0

    def add(self, fp: np.ndarray, keys: np.ndarray, hashes: np.ndarray) -> None:
        """Remember newly hashed shingles with unseen fingerprints, up to CACHE_ENTRIES in all."""
        first = np.flatnonzero(_indices(_to_arrow(fp)) == np.arange(fp.size))  # the first of equal fingerprints
        first = first[:max(0, CACHE_ENTRIES - self.fp.size)]
        self.fp = np.concatenate([self.fp, fp[first]])
        self.hashes = np.concatenate([self.hashes, hashes[first]])
        self.keys = keys[first] if self.keys is None else np.concatenate([self.keys, keys[first]])


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads small integers (token ids) over 64 bits."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _window(ids: np.ndarray, start: np.ndarray, length: np.ndarray, k: int) -> np.ndarray:
    """Token id at position k of each occurrence, -1 past its end."""
    if not ids.size:
        return np.full(start.size, -1, dtype=np.int32)
    return np.where(k < length, ids[np.minimum(start + k, ids.size - 1)], -1)


def _distinct(sh: _Shingles, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(inverse, representative, fingerprint, key) of the batch's distinct shingles.

    `inverse` maps each occurrence to its distinct shingle; per distinct shingle, `representative` is
    one of its occurrences and `key` its exact token-id window (ids, -1 padded; length; mode).
    Fast path: a 64-bit fingerprint of the key grouped by arrow, then checked exactly against the
    keys; if two different shingles share a fingerprint (about one chance in 10^7 per million
    distinct shingles) the keys themselves are grouped instead.
    """
    width = int(sh.length.max()) if sh.length.size else 0
    cols = [_window(ids, sh.start, sh.length, k) for k in range(width)]
    mixed = mix64(np.arange(int(ids.max()) + 2 if ids.size else 1))  # per token id + 1; slot 0 is "past the end"
    fp = mix64(sh.length * 2 + sh.cjk)
    mult = np.uint64(0x100000001B3)
    for col in cols:
        fp *= mult
        fp += mixed[col + 1]
    inverse, rep = _group(fp)
    same = (sh.length[rep][inverse] == sh.length) & (sh.cjk[rep][inverse] == sh.cjk)
    member = rep[inverse]
    for col in cols:
        same &= col[member] == col
    if not same.all():
        inverse, rep = _group(np.stack([*cols, sh.length, sh.cjk], axis=1).astype(np.int64))
    keys = np.stack([*(col[rep] for col in cols), sh.length[rep], sh.cjk[rep]], axis=1).astype(np.int32)
    return inverse, rep, fp[rep], keys


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact grouping of equal keys (1-D uint64, or rows of a 2-D int64 array): inverse and one member per group."""
    if keys.ndim == 2:
        keys = np.ascontiguousarray(keys)
        arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(keys.shape[1] * 8), keys.shape[0], [None, pa.py_buffer(keys)])
    else:
        arr = _to_arrow(keys)
    inverse = _indices(arr).astype(np.int64)
    rep = np.empty(int(inverse.max()) + 1 if inverse.size else 0, dtype=np.int64)
    rep[inverse] = np.arange(inverse.size)
    return inverse, rep


def _sha1_32(sh: _Shingles, rep: np.ndarray) -> np.ndarray:
    """datasketch's `sha1_hash32` (first 4 bytes of SHA-1, little-endian) of each distinct shingle's UTF-8 text."""
    start, length, cjk = sh.start[rep], sh.length[rep], sh.cjk[rep]
    tokens = sh.a_start.size
    first = np.minimum(start, max(tokens - 1, 0))
    last = np.minimum(start + np.maximum(length, 1) - 1, max(tokens - 1, 0))
    b_end = sh.b_start + (sh.a_end - sh.a_start)
    # a word shingle is a slice of text A unless two of its words touch (a CJK character inside Latin text)
    touching = np.concatenate([[0], np.cumsum(sh.a_start[1:] - sh.a_end[:-1] != 1)]) if tokens else np.zeros(1, np.int64)
    sliceable = touching[last] == touching[first]
    empty = length == 0
    out = np.empty(rep.size, dtype="<u4")
    for rows, text, starts, ends in (
        (np.flatnonzero(cjk & ~empty), sh.text_b, sh.b_start, b_end),
        (np.flatnonzero(~cjk & ~empty & sliceable), sh.text_a, sh.a_start, sh.a_end),
    ):
        view = memoryview(text)  # rows is empty when the batch has no tokens at all (only empty texts)
        lo, hi = starts[first[rows]].tolist(), ends[last[rows]].tolist()
        out[rows] = _digest32(map(view.__getitem__, map(slice, lo, hi)))
    rebuilt = np.flatnonzero(~cjk & ~empty & ~sliceable)
    a, b, t = sh.text_a, sh.a_start.tolist(), sh.a_end.tolist()
    out[rebuilt] = _digest32(b" ".join(a[b[k]:t[k]] for k in range(s, s + n))
                             for s, n in zip(start[rebuilt].tolist(), length[rebuilt].tolist()))
    out[empty] = _digest32([b""])[0]
    return out


def _digest32(chunks) -> np.ndarray:
    """`sha1_hash32` of each bytes-like chunk, hashed at C speed (no Python frame per chunk)."""
    digests = b"".join(map(_DIGEST, map(hashlib.sha1, chunks)))
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20)[:, :4].copy().view("<u4").ravel()


def _min_hashes(hashes: np.ndarray, per_record: np.ndarray, cfg: NearDuplicateConfig) -> np.ndarray:
    """Per record and permutation, the minimum permuted hash over its shingles (records x num_perm, uint32)."""
    a, b = _permutations(cfg.num_perm, cfg.seed, cfg.scheme)
    legacy = cfg.scheme == "legacy"
    hv = hashes.astype(np.uint64) if legacy else _fmix32(hashes)
    out = np.empty((per_record.size, cfg.num_perm), dtype=np.uint32)
    offsets = np.concatenate([[0], np.cumsum(per_record)])
    step = max(1, (1 << 20) // cfg.num_perm)  # 4 MiB of permuted values per chunk (measured fastest)
    r = 0
    while r < per_record.size:
        r_end = int(np.searchsorted(offsets, offsets[r] + step, side="right")) - 1
        r_end = min(max(r_end, r + 1), per_record.size)
        lo, hi = offsets[r], offsets[r_end]
        phv = np.multiply.outer(a, hv[lo:hi])
        phv += b[:, None]
        if legacy:
            phv %= _MERSENNE_PRIME
            phv &= _MAX_HASH
        out[r:r_end] = np.minimum.reduceat(phv, offsets[r:r_end] - lo, axis=1).T
        r = r_end
    return out


def _batches(lengths: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Consecutive record ranges of about BATCH_CODE_POINTS code points each (batching never changes a signature)."""
    lo, size = 0, 0
    for i, n in enumerate(lengths):
        size += n
        if size >= BATCH_CODE_POINTS:
            yield lo, i + 1
            lo, size = i + 1, 0
    if lo < len(lengths):
        yield lo, len(lengths)


def normalise_texts(texts: Sequence[str | None]) -> list[str]:
    """The compared form of each text: `datakit.measure.normal.normalised` (NFKC, lower case, whitespace collapsed).
    Slices are normalised as separate queries so polars runs them on all its threads (one query would use one)."""
    frame = pl.DataFrame({"t": list(texts)}, schema={"t": pl.String})
    size = max(10_000, -(-frame.height // (2 * pl.thread_pool_size())))
    parts = [frame.slice(lo, size).lazy().select(normalised("t")) for lo in range(0, max(frame.height, 1), size)]
    return [t for part in pl.collect_all(parts) for t in part["t"].to_list()]


def _batch(norm: list[str], cfg: NearDuplicateConfig, cache: _HashCache) -> tuple[np.ndarray, np.ndarray]:
    """Signatures (uint32) and character-mode flags of one batch of normalised texts."""
    sh = _tokenise(norm, cfg.word_ngram, cfg.char_ngram, cfg.shingles == "characters")
    inverse, rep, fp, keys = _distinct(sh, cache.token_ids(sh))
    hashes, hit, unseen = cache.lookup(fp, keys)
    miss = np.flatnonzero(~hit)
    hashes[miss] = _sha1_32(sh, rep[miss])
    new = np.flatnonzero(unseen)
    cache.add(fp[new], keys[new], hashes[new])
    return _min_hashes(hashes[inverse], sh.per_record, cfg), sh.record_cjk


_worker_cache: _HashCache | None = None  # set in each worker process of a `signatures` call's pool


def _start_worker() -> None:
    global _worker_cache
    _worker_cache = _HashCache()


def _batch_job(job: tuple[list[str], NearDuplicateConfig]) -> tuple[np.ndarray, np.ndarray]:
    return _batch(*job, _worker_cache)


def signatures_and_modes(texts: Sequence[str | None], cfg: NearDuplicateConfig) -> tuple[np.ndarray, np.ndarray]:
    """`signatures` plus, per text, whether it was shingled by characters (CJK) rather than words.

    Batches run on every core (`datakit.measure.parallel`): the children only use numpy, pyarrow and hashlib.
    """
    norm = normalise_texts(texts)
    ranges = list(_batches([len(t) for t in norm]))
    sigs = np.empty((len(norm), cfg.num_perm), dtype=np.uint64)
    cjk = np.zeros(len(norm), dtype=bool)
    jobs = ((norm[lo:hi], cfg) for lo, hi in ranges)
    for (lo, hi), (s, c) in zip(ranges, map_batches(_batch_job, jobs, len(ranges), initializer=_start_worker)):
        sigs[lo:hi], cjk[lo:hi] = s, c
    return sigs, cjk


def signatures(texts: Sequence[str | None], cfg: NearDuplicateConfig) -> np.ndarray:
    """MinHash signature of each text (len(texts) x num_perm, uint64), equal to datasketch.MinHash's hashvalues
    (`MinHash(num_perm, seed, scheme=cfg.scheme)` updated once per shingle's UTF-8 bytes)."""
    return signatures_and_modes(texts, cfg)[0]


# ---------------------------------------------------------------------------------------------------------------------
# Measurements


def record_texts(frame: pl.DataFrame) -> list[str]:
    """The text compared for near-duplicates: prompt (system + user) and response, one line apart."""
    return frame.select(pl.concat_str([pl.col("prompt").fill_null(""), pl.col("response").fill_null("")],
                                      separator="\n"))[:, 0].to_list()


def add_minhash(ds: Dataset, config: AuditConfig) -> None:
    """Adds `minhash` (Array(UInt64, num_perm)) and `minhash_cjk` (shingled by characters); null for invalid rows."""
    cfg = config.near_duplicate
    valid = ds.frame["valid"].to_numpy()
    sigs, cjk = signatures_and_modes(record_texts(ds.frame.filter(pl.col("valid"))), cfg)
    full = np.zeros((ds.frame.height, cfg.num_perm), dtype=np.uint64)
    full[valid] = sigs
    full_cjk = np.zeros(ds.frame.height, dtype=bool)
    full_cjk[valid] = cjk
    ds.frame = ds.frame.with_columns(
        pl.when(pl.col("valid")).then(pl.Series(full)).alias("minhash"),
        pl.when(pl.col("valid")).then(pl.Series(full_cjk)).alias("minhash_cjk"),
    )

