"""Read JSONL, JSON arrays, gzip of either, and Parquet as a stream of raw records, tolerating bad input.

`open_raw(path)` streams a file of any size in bounded memory: consecutive batches of records in file
order, then the file's checksum, notes and record count. `read_raw(path)` collects every batch for callers
that want the whole file. Every problem becomes a finding with the file and 1-based line and the rest of
the file is still read; only a file that cannot be used at all (missing, empty, a top-level scalar, damaged
gzip, unreadable Parquet) raises `InputError`, which the CLI turns into one clear line and exit status 2.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import itertools
import json
import operator
import os
import re
import stat
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

BOM = "\ufeff"
# Byte-order marks that state an encoding other than UTF-8; UTF-32's first, since UTF-16 LE's is a prefix of one.
OTHER_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
              (codecs.BOM_UTF16_BE, "utf-16"))
BOM_NAMES = {codecs.BOM_UTF32_LE: "UTF-32 little-endian", codecs.BOM_UTF32_BE: "UTF-32 big-endian",
             codecs.BOM_UTF16_LE: "UTF-16 little-endian", codecs.BOM_UTF16_BE: "UTF-16 big-endian"}
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"

GUNZIP_RATIO = 100  # a gzip file may decompress to this many times its size (JSON text: 3-20x; a gzip bomb: ~1000x)
GUNZIP_FLOOR = 2**30  # ... or to this many bytes, whichever is more
GUNZIP_LIMIT_ENV = "DATAKIT_MAX_GUNZIP_BYTES"  # a number of bytes that replaces both
CHUNK_SIZE = 4 * 2**20  # bytes read from disk (and out of gzip) at a time
BATCH_BYTES = 64 * 2**20  # default record text per batch
BATCH_RECORDS = 100_000  # default records per batch
RECORD_LIMIT = 8 * 2**20  # characters of one record: a longer one is a failed record, never parsed (its memory would be ~100x)
RECORD_LIMIT_ENV = "DATAKIT_MAX_RECORD_CHARS"  # a number of characters that replaces it
ONE_OBJECT_MAX_CHARS = 64 * 2**20  # a JSONL file whose every line fails is tried as one pretty-printed object up to this size
PARQUET_ROWS = 10_000  # rows decoded from Parquet at a time
# How far past the position it reports the JSON scanner may have looked (a number, a literal, a \uXXXX pair):
# a result that close to the end of the text read so far may change once more text arrives.
LOOKAHEAD = 64

ELEMENT_SEPARATORS = re.compile(r"[ \t\n\r,]*")
FIRST_ELEMENT_LINE = re.compile(r"\n([ \t]*)\S")
NEXT_COMPACT_ELEMENT = re.compile(r"(?<=\}),\s*(?=\{)")
# A "\\uD800"-style escape of half a UTF-16 pair with no other half beside it (scraped text with an emoji cut in two).
LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                                   r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
SURROGATE = re.compile("[\ud800-\udfff]")
TRUNCATED_GZIP = "Compressed file ended before the end-of-stream marker was reached"  # gzip.decompress's words
DECODER = json.JSONDecoder()
CANONICAL = json.JSONEncoder(ensure_ascii=False)  # json.dumps(value, ensure_ascii=False), without a new encoder per call
CANONICAL_ROW = json.JSONEncoder(ensure_ascii=False, default=str)
TEXT_OF = operator.attrgetter("text")


class InputError(Exception):
    """The input cannot be used at all. The message is the whole story: file, what, what to do."""


@dataclass
class RawRecord:
    line: int
    text: str  # the record as it appeared (JSONL line) or re-serialised (array / Parquet element)
    obj: Any = None
    error: str | None = None  # why it could not be parsed as JSON
    rule: str = "format.invalid_json"  # the finding its error is: format.invalid_json or format.record_too_large


@dataclass
class FileNote:
    """Something about the file itself, not one record (BOM, CRLF, invalid UTF-8, blank lines)."""

    rule: str
    line: int | None
    message: str
    severity: str = "info"


@dataclass
class RawFile:
    path: str
    container: str  # jsonl | json | parquet
    gzip: bool
    checksum: str
    records: list[RawRecord]
    notes: list[FileNote]


def read_raw(path: str | Path) -> RawFile:
    """The whole file in memory: every batch of `open_raw(path)` with the file's checksum and notes."""
    with open_raw(path) as stream:
        records = list(itertools.chain.from_iterable(stream.batches()))
    return RawFile(stream.path, stream.container, stream.gzip, stream.checksum, records, stream.notes)


def open_raw(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> RawStream:
    """Open a dataset file to stream its records; reads only as far as it takes to tell the container.

    Raises InputError for a missing file, a directory, an empty file or a damaged gzip header; the other
    InputErrors (top-level scalar, damaged gzip or Parquet further in) come from `RawStream.batches()`.
    `chunk_size` is how many bytes are read at a time (tests make it tiny to put boundaries everywhere).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file. Check the path (datakit reads .jsonl, .json, .json.gz, .jsonl.gz and .parquet).")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a dataset file. Pass one file, e.g. {p}/train.jsonl.")
    if not stat.S_ISREG(p.stat().st_mode):  # opening a named pipe would wait for a writer forever
        raise InputError(f"{p}: is not a regular file (a named pipe, device or socket). datakit reads a file more than "
                         "once and needs its size; save the data to a file first.")
    try:
        return RawStream(p, chunk_size)
    except PermissionError:
        raise InputError(f"{p}: permission denied: this user cannot read the file. Check its permissions (ls -l) "
                         "or run as a user who may read it.") from None


class RawStream:
    """One dataset file read once, as consecutive batches of records in file order, in bounded memory.

    `path`, `gzip`, `size` and `container` are known once it is open (a JSONL file that turns out to be one
    pretty-printed object becomes "json" before its first batch); `position`, the bytes of the file on disk
    read so far, grows to `size` as batches are read (a gzip of Parquet is decompressed to a temporary file
    before the first batch; plain Parquet advances with the rows). `checksum`, `notes` and `records` are
    final once `batches()` is exhausted.

    Memory is about one batch plus the longest line, or the longest JSON array element: text is read
    `chunk_size` bytes at a time and never held whole. What stays as today's whole-file reader had it, and
    what does not:
    - records, line numbers, texts, error messages, notes, checksum and container are the same, except that a
      valid element of a broken JSON array now gets the canonical `json.dumps(value, ensure_ascii=False)` text
      that elements of valid arrays always had, so `raw` is canonical for every array element;
    - a JSONL file whose every line fails is read as one pretty-printed object, as before, when the whole text
      parses and is at most ONE_OBJECT_MAX_CHARS long; a longer one stays one failed record per line;
    - a damaged gzip (or one that decompresses past `gunzip_limit`) and a damaged Parquet row group are noticed
      where they are read, so the InputError may come after earlier batches were yielded: a caller must not treat those
      batches as the whole file;
    - a broken element of an array written on one line makes the reader look ahead to the next line that
      starts with text, to choose how to find the next element (the same rule as before);
    - lone carriage returns between array elements are whitespace, as in a valid array, also in a broken one;
    - inputs that crashed the whole-file reader now read: corrupt deflate data is a damaged gzip, an array element
      nested too deep, holding a lone surrogate or a number past Python's digit limit is a failed record (as such a
      line of JSON Lines is); a damaged Parquet file's message quotes pyarrow; a UTF-16 or UTF-32 file with its
      byte-order mark is decoded as such.
    """

    def __init__(self, path: Path, chunk_size: int):
        self.path = str(path)
        self.size = path.stat().st_size
        self.records = 0
        self._reading: Iterator[list[RawRecord]] | None = None
        self._checksum: str | None = None
        self._notes: list[FileNote] | None = None
        self._disk = _DiskReader(path, chunk_size)
        try:
            self._detect()
        except BaseException:
            self._disk.close()
            raise

    def _detect(self) -> None:
        """Tell gzip, Parquet, a JSON array and JSON Lines apart from the first bytes and the first visible character."""
        self.gzip = self._disk.peek(2) == GZIP_MAGIC
        if self.gzip:
            chunks = _damaged_gzip_is_input_error(_gunzip(self._disk, gunzip_limit(self.size)), self.path, self.size)
        else:
            chunks = self._disk.chunks()
        head, self._content = _peek_bytes(chunks, len(PARQUET_MAGIC))
        self._text: _Text | None = None
        self._parser: _JsonLines | _JsonArray | None = None
        self._transcoder: _Transcoder | None = None
        if head.startswith(PARQUET_MAGIC):
            return
        if encoding := _bom_encoding(head):
            self._transcoder = _Transcoder(self._content, *encoding)
            self._content = self._transcoder.chunks()
        self._text = _Text(self._content)
        first, pieces = _first_visible_char(self._text.pieces())
        if first is None:
            raise InputError(f"{self.path}: file is empty (no records). Nothing to audit.")
        self._parser = _JsonArray(self.path, pieces, self._text) if first == "[" else _JsonLines(self.path, pieces, first)

    @property
    def container(self) -> str:
        return "parquet" if self._parser is None else self._parser.container

    @property
    def position(self) -> int:
        return self._disk.position

    @property
    def checksum(self) -> str:
        """ "sha256:" + hex digest of the file's bytes on disk (compressed ones for gzip)."""
        if self._checksum is None:
            raise RuntimeError(f"{self.path}: the checksum is known once every batch has been read")
        return self._checksum

    @property
    def notes(self) -> list[FileNote]:
        if self._notes is None:
            raise RuntimeError(f"{self.path}: the file notes are known once every batch has been read")
        return self._notes

    def batches(self, max_bytes: int = BATCH_BYTES, max_records: int = BATCH_RECORDS) -> Iterator[list[RawRecord]]:
        """Consecutive lists of at most max_records records and about max_bytes of record text, in file order.

        A record longer than max_bytes is a batch of its own. The stream can be read once.
        """
        if max_bytes < 1 or max_records < 1:
            raise ValueError(f"max_bytes and max_records must be at least 1 (got {max_bytes}, {max_records})")
        if self._reading is not None:
            raise RuntimeError(f"{self.path}: a RawStream is read once; call open_raw again to read the file again")
        self._reading = self._read(max_bytes, max_records)
        return self._reading

    def _read(self, max_bytes: int, max_records: int) -> Iterator[list[RawRecord]]:
        try:
            groups = self._parquet_records() if self._parser is None else self._parser.records()
            for batch in _batched(groups, max_bytes, max_records):
                self.records += len(batch)
                yield batch
            if not self.records:  # as unusable as an empty file, which the JSON Lines reader refuses when it opens
                raise InputError(f"{self.path}: holds no records (an empty JSON array, or Parquet with no rows). "
                                 "Nothing to audit.")
            self._disk.read_to_end()
            self._checksum = self._disk.checksum()
            self._notes = [] if self._parser is None else self._text.notes() + self._parser.notes()
            if self._transcoder is not None:
                self._notes.insert(0, self._transcoder.note())
        finally:
            self._disk.close()

    def _parquet_records(self) -> Iterator[list[RawRecord]]:
        """Rows of the Parquet file; a gzip of one is decompressed to a temporary file, removed when done."""
        if not self.gzip:
            yield from self._parquet_rows(self.path)
            return
        with tempfile.NamedTemporaryFile(prefix="datakit-", suffix=".parquet") as tmp:
            for chunk in self._content:
                tmp.write(chunk)
            tmp.flush()
            yield from self._parquet_rows(tmp.name)

    def _parquet_rows(self, file: str) -> Iterator[list[RawRecord]]:
        """Rows as dicts, as today's polars reader gave them; a plain file is hashed along with the rows read."""
        index, limit = 0, record_limit()
        for rows, fraction_read in _parquet_batches(self.path, file):
            records = [RawRecord(index + i, CANONICAL_ROW.encode(row), row) for i, row in enumerate(rows, 1)]
            yield [_too_large(r.line, r.text, limit) if len(r.text) > limit else r for r in records]
            index += len(rows)
            if not self.gzip:
                self._disk.read_until(int(self.size * fraction_read))

    def close(self) -> None:
        """Release the file and any temporary file (done when the batches are exhausted; needed when stopping early)."""
        if self._reading is not None:
            self._reading.close()
        self._disk.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _batched(groups: Iterable[list[RawRecord]], max_bytes: int, max_records: int) -> Iterator[list[RawRecord]]:
    """Regroup records (read a piece of text at a time) into batches that stay within both limits."""
    batch: list[RawRecord] = []
    size = 0
    for group in groups:
        group_size = sum(map(len, map(TEXT_OF, group)))
        if len(batch) + len(group) <= max_records and size + group_size <= max_bytes:  # the common case, at C speed
            batch += group
            size += group_size
            continue
        for record in group:
            if batch and (len(batch) == max_records or size + len(record.text) > max_bytes):
                yield batch
                batch, size = [], 0
            batch.append(record)
            size += len(record.text)
    if batch:
        yield batch


class _DiskReader:
    """The file's bytes as read from disk, counted (the progress) and hashed (the checksum) on the way."""

    def __init__(self, path: Path, chunk_size: int):
        self._file = open(path, "rb")  # noqa: SIM115 -- closed by RawStream.close
        self.chunk_size = chunk_size
        self._sha = hashlib.sha256()
        self._given_back = b""
        self.position = 0

    def read(self, n: int) -> bytes:
        """Up to n bytes, fewer only at the end of the file, like a file's read (gzip's header parser needs that)."""
        data, self._given_back = self._given_back[:n], self._given_back[n:]
        if len(data) < n:
            more = self._file.read(n - len(data))
            self._sha.update(more)
            self.position += len(more)
            data += more
        return data

    def unread(self, data: bytes) -> None:
        """Give bytes back: the next read returns them first (they are counted and hashed once)."""
        self._given_back = data + self._given_back

    def peek(self, n: int) -> bytes:
        data = self.read(n)
        self.unread(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read(self.chunk_size):
            yield chunk

    def read_until(self, offset: int) -> None:
        """Read (and hash) up to offset, so that the position follows a reader that reads the file by itself."""
        while self.position < offset and self.read(min(self.chunk_size, offset - self.position)):
            pass

    def read_to_end(self) -> None:
        for _ in self.chunks():
            pass

    def checksum(self) -> str:
        return "sha256:" + self._sha.hexdigest()

    def close(self) -> None:
        self._file.close()


def gunzip_limit(compressed: int) -> int:
    """The most bytes a gzip file of `compressed` bytes may decompress to before reading stops (a gzip bomb): its size
    times GUNZIP_RATIO, at least GUNZIP_FLOOR, or the number of bytes in the environment's DATAKIT_MAX_GUNZIP_BYTES."""
    if (given := os.environ.get(GUNZIP_LIMIT_ENV)) is None:
        return max(GUNZIP_FLOOR, GUNZIP_RATIO * compressed)
    try:
        return int(given)
    except ValueError:
        raise InputError(f"{GUNZIP_LIMIT_ENV}={given!r}: expected a whole number of bytes, e.g. 20000000000.") from None


class _GunzipLimit(Exception):
    """A gzip file decompressed past `gunzip_limit`."""


def _gunzip(disk: _DiskReader, limit: int) -> Iterator[bytes]:
    """Decompressed bytes of every gzip member in turn, with gzip.decompress's checks and errors, a chunk at a time;
    _GunzipLimit past `limit` bytes in all."""
    total = 0
    while gzip._read_gzip_header(disk) is not None:  # the stdlib's own header parser, so errors read the same
        inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        crc = length = 0
        while not inflater.eof:
            data = inflater.unconsumed_tail or disk.read(disk.chunk_size)
            out = inflater.decompress(data, disk.chunk_size)  # bounded output: a small file may inflate enormously
            if not data and not out and not inflater.eof:
                raise EOFError(TRUNCATED_GZIP)
            crc, length = zlib.crc32(out, crc), length + len(out)
            total += len(out)
            if total > limit:
                raise _GunzipLimit(limit)
            if out:
                yield out
        trailer = inflater.unused_data
        trailer += disk.read(max(0, 8 - len(trailer)))
        if len(trailer) < 8:
            raise EOFError(TRUNCATED_GZIP)
        stored_crc, stored_length = struct.unpack("<II", trailer[:8])
        if stored_crc != crc:
            raise gzip.BadGzipFile("CRC check failed")
        if stored_length != length & 0xFFFFFFFF:
            raise gzip.BadGzipFile("Incorrect length of data produced")
        disk.unread(_skip_zero_padding(trailer[8:], disk))


def _skip_zero_padding(rest: bytes, disk: _DiskReader) -> bytes:
    """The bytes after a gzip member without the zero padding gzip allows between members."""
    rest = rest.lstrip(b"\x00")
    while not rest:
        more = disk.read(disk.chunk_size)
        if not more:
            break
        rest = more.lstrip(b"\x00")
    return rest


def _damaged_gzip_is_input_error(chunks: Iterator[bytes], path: str, size: int) -> Iterator[bytes]:
    try:
        yield from chunks
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputError(f"{path}: gzip stream is damaged ({e}); re-create or re-download the file.") from None
    except _GunzipLimit as e:
        limit = e.args[0]
        raise InputError(f"{path}: decompresses to more than {limit:,} bytes ({limit // max(size, 1):,} times its "
                         f"{size:,} bytes), past the limit that guards against gzip bombs. If the file is genuine, raise "
                         f"the limit: {GUNZIP_LIMIT_ENV}=<bytes> datakit ...") from None


def _peek_bytes(chunks: Iterator[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first n bytes (fewer if the content is shorter) and every chunk, none consumed."""
    seen: list[bytes] = []
    for chunk in chunks:
        seen.append(chunk)
        if sum(map(len, seen)) >= n:
            break
    return b"".join(seen)[:n], itertools.chain(seen, chunks)


def _parquet_batches(shown: str, file: str) -> Iterator[tuple[list[dict], float]]:
    """Rows of a Parquet file a batch at a time, with the fraction of rows read; a damaged file is an InputError."""
    import polars as pl
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(file) as reader:
            total, read = reader.metadata.num_rows, 0
            for batch in reader.iter_batches(batch_size=PARQUET_ROWS):
                read += batch.num_rows
                yield pl.from_arrow(batch).to_dicts(), read / total
    except Exception as e:  # noqa: BLE001 -- pyarrow and polars raise several unrelated types for damaged files
        raise InputError(f"{shown}: Parquet file cannot be read ({type(e).__name__}: {e}).") from None


def _bom_encoding(head: bytes) -> tuple[str, str] | None:
    """(codec, name) of a UTF-16 or UTF-32 byte-order mark starting head, or None (the UTF-8 one is `_Text`'s)."""
    for bom, codec in OTHER_BOMS:
        if head.startswith(bom):
            return codec, BOM_NAMES[bom]
    return None


class _Transcoder:
    """UTF-8 bytes from the chunks of a UTF-16 or UTF-32 text whose byte-order mark states it (the mark is dropped):
    the rest of the reader reads UTF-8. Invalid code units become U+FFFD, and the file's note says so."""

    def __init__(self, chunks: Iterable[bytes], codec: str, name: str):
        self._chunks = chunks
        self._decoder = codecs.getincrementaldecoder(codec)("strict")
        self.name = name
        self.invalid = False

    def chunks(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if text := self._decode(chunk, False):
                yield text.encode("utf-8")
        if text := self._decode(b"", True):
            yield text.encode("utf-8")

    def _decode(self, data: bytes, final: bool) -> str:
        state = self._decoder.getstate()
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError:
            self.invalid = True
            self._decoder.setstate(state)
            self._decoder.errors = "replace"
            try:
                return self._decoder.decode(data, final)
            finally:
                self._decoder.errors = "strict"

    def note(self) -> FileNote:
        invalid = (" Some bytes were not valid in it and were replaced by U+FFFD; the file may be damaged."
                   if self.invalid else "")
        return FileNote("format.encoding", 1, f"file is {self.name}, as its byte-order mark states, and was read as such."
                        f"{invalid} Most trainers read UTF-8 only: `datakit fix` writes UTF-8 (or `iconv -f "
                        f"{self.name.split()[0]} -t UTF-8`).", "warning")


def _char_boundary(data: bytes) -> int:
    """Length of the longest prefix of data that decodes alone exactly as inside the whole text.

    It must not end inside a UTF-8 sequence (the rest of the character follows) nor on a '\\r' (a '\\n' may
    follow, and CRLF becomes LF only as a pair).
    """
    cut = len(data)
    for back in range(1, min(4, cut) + 1):
        byte = data[cut - back]
        if byte < 0x80 or byte >= 0xC0:  # where the last character starts: ASCII or a lead byte
            length = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < length:
                cut -= back
            break
    if data[cut - 1 : cut] == b"\r":
        cut -= 1
    return cut


def _line_list(lines: list[int], total: int) -> str:
    """The first ten line numbers, and " ..." when there are more."""
    return ", ".join(map(str, lines[:10])) + (" ..." if total > 10 else "")


class _Text:
    """The file's text piece by piece, exactly as one whole-file decode would give it, and what its notes need.

    Pieces have the byte-order mark dropped and CRLF turned into LF. Invalid UTF-8 is replaced by U+FFFD, and
    the note lists the lines holding U+FFFD, legitimate ones included, as the whole-file reader did.
    """

    def __init__(self, chunks: Iterable[bytes], first_line: int = 1, at_start: bool = True):
        self._chunks = chunks
        self._at_start = at_start  # the text starts the file: a byte-order mark there is one
        self._line = first_line
        self.bom = self.crlf = self.invalid_utf8 = False
        self.replacement_lines: list[int] = []  # the first 11 lines holding U+FFFD (11: to know there are more than 10)
        self.last_visible = ""  # the last non-whitespace character read so far

    def pieces(self) -> Iterator[str]:
        carry = b""
        for chunk in self._chunks:
            data = carry + chunk
            cut = _char_boundary(data)
            carry = data[cut:]
            if cut and (text := self._decode(data[:cut])):
                yield text
        if carry and (text := self._decode(carry)):
            yield text

    def _decode(self, raw: bytes) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            self.invalid_utf8 = True
        if self._at_start:
            self._at_start = False
            self.bom = text.startswith(BOM)
            text = text[1:] if self.bom else text
        if len(self.replacement_lines) <= 10:  # beyond, the note needs no more line numbers
            if "\ufffd" in text:
                self._note_replacement_lines(text)
            self._line += text.count("\n")
        if "\r" in text and "\r\n" in text:  # one character is found much faster than two
            self.crlf = True
            text = text.replace("\r\n", "\n")
        if visible := text[-LOOKAHEAD:].rstrip() or text.rstrip():  # the tail first: no copy of the whole piece
            self.last_visible = visible[-1]
        return text

    def _note_replacement_lines(self, text: str) -> None:
        line, counted = self._line, 0
        at = text.find("\ufffd")
        while at >= 0 and len(self.replacement_lines) <= 10:
            line += text.count("\n", counted, at)
            counted = at
            if not self.replacement_lines or self.replacement_lines[-1] != line:
                self.replacement_lines.append(line)
            end_of_line = text.find("\n", at)
            at = -1 if end_of_line < 0 else text.find("\ufffd", end_of_line)

    def notes(self) -> list[FileNote]:
        return self.line_notes().notes()

    def line_notes(self) -> LineNotes:
        return LineNotes(self.invalid_utf8, self.replacement_lines, self.bom, self.crlf)


@dataclass
class LineNotes:
    """What a text's file notes are made of. A file read in byte ranges gets the notes of one read: its ranges'
    LineNotes, added up in file order (`+`), are the whole file's."""

    invalid_utf8: bool = False
    replacement_lines: list[int] = field(default_factory=list)  # the first 11 lines holding U+FFFD
    bom: bool = False
    crlf: bool = False
    blank_lines: list[int] = field(default_factory=list)  # the first 10 blank lines
    blank_count: int = 0

    def __add__(self, later: LineNotes) -> LineNotes:
        return LineNotes(self.invalid_utf8 or later.invalid_utf8, (self.replacement_lines + later.replacement_lines)[:11],
                         self.bom or later.bom, self.crlf or later.crlf, (self.blank_lines + later.blank_lines)[:10],
                         self.blank_count + later.blank_count)

    def notes(self) -> list[FileNote]:
        notes: list[FileNote] = []
        if self.invalid_utf8:
            lines = self.replacement_lines
            notes.append(FileNote("format.invalid_utf8", lines[0] if lines else None,
                                  f"invalid UTF-8 bytes on line(s) {_line_list(lines, len(lines))}; they were replaced "
                                  "by U+FFFD. Re-export the source as UTF-8 (e.g. `iconv -f GB18030 -t UTF-8`).", "warning"))
        if self.bom:
            notes.append(FileNote("format.bom", 1, "file starts with a UTF-8 byte-order mark; it was ignored. "
                                  "Some JSON tools reject it: `datakit fix` writes files without one."))
        if self.crlf:
            notes.append(FileNote("format.crlf", None,
                                  "file uses Windows line endings (CRLF); they were read as plain newlines."))
        if self.blank_count:
            notes.append(FileNote("format.blank_line", self.blank_lines[0], f"{self.blank_count} blank line(s) skipped "
                                  f"(line {_line_list(self.blank_lines, self.blank_count)})."))
        return notes


def _first_visible_char(pieces: Iterator[str]) -> tuple[str | None, Iterator[str]]:
    """The text's first non-whitespace character (None if it has none) and all its pieces, none consumed."""
    seen: list[str] = []
    for piece in pieces:
        seen.append(piece)
        if visible := piece.lstrip():
            return visible[0], itertools.chain(seen, pieces)
    return None, iter(seen)


def _line_groups(pieces: Iterable[str]) -> Iterator[tuple[list[str], bool]]:
    """The lines without their '\\n', a list per piece of text, and whether a '\\n' ended them: all did but the last,
    which is what follows the final '\\n' (a line may span pieces)."""
    partial: list[str] = []
    for piece in pieces:
        lines = piece.split("\n")
        if len(lines) > 1:
            partial.append(lines[0])
            lines[0] = "".join(partial)
            partial = [lines.pop()]
            yield lines, True
        else:
            partial.append(piece)
    yield ["".join(partial)], False


def record_limit() -> int:
    """The most characters one record may have (RECORD_LIMIT, or the environment's DATAKIT_MAX_RECORD_CHARS)."""
    if (given := os.environ.get(RECORD_LIMIT_ENV)) is None:
        return RECORD_LIMIT
    try:
        return int(given)
    except ValueError:
        raise InputError(f"{RECORD_LIMIT_ENV}={given!r}: expected a whole number of characters, e.g. 50000000.") from None


def _too_large(no: int, text: str, limit: int, where: str = "") -> RawRecord:
    """A record longer than the limit, as a failed record that keeps its text (for the rejected file) unparsed."""
    return RawRecord(no, text, None, f"record of {len(text):,} characters{where}, over the limit of {limit:,} for one "
                     "record: no training example is that long (a scraper stuck in a loop, or several files run "
                     f"together?) and parsing it would take ~100x its size in memory. Split it, drop it, or raise the "
                     f"limit: {RECORD_LIMIT_ENV}=<characters>", "format.record_too_large")


def _line_record(no: int, line: str, ended: bool, limit: int) -> RawRecord:
    if len(line) > limit:
        return _too_large(no, line, limit)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        why = e.msg if ended else "truncated record (the file ends mid-record)"
        return RawRecord(no, line, None, f"{why} at column {e.colno}")
    except RecursionError:
        return RawRecord(no, line, None, "nesting too deep to parse")
    except ValueError:  # the only other error json raises: an integer past Python's digit limit
        at, digits = _long_number(line, 0)
        return RawRecord(no, line, None, _long_number_problem(digits, f"column {at + 1}"))
    if "\\u" in line and (escape := LONE_SURROGATE_ESCAPE.search(line)) and SURROGATE.search(CANONICAL.encode(obj)):
        return RawRecord(no, line, None, _lone_surrogate_problem(escape.group(), f"column {escape.start() + 1}"))
    return RawRecord(no, line, obj)


def _long_number(text: str, start: int) -> tuple[int, int]:
    """Where the first run of digits too long for Python's int() starts in text, and its length."""
    found = re.compile(rf"\d{{{sys.get_int_max_str_digits() + 1},}}").search(text, start)
    return (found.start(), len(found.group())) if found else (start, 0)


def _long_number_problem(digits: int, where: str = "") -> str:
    where = f" at {where}" if where else ""
    return (f"a number with {digits or 'too many'} digits{where}, over Python's limit of {sys.get_int_max_str_digits()} for an "
            "integer, so Python tools cannot load the record; store it as a string")


def _lone_surrogate_problem(escape: str, where: str = "") -> str:
    where = f" at {where}" if where else ""
    return (f"lone surrogate {escape}{where} (half of a UTF-16 pair, often an emoji cut in two), which no UTF-8 file can hold; "
            "replace it with the whole character or remove it")


class _JsonLines:
    """Records of a JSON Lines text, one per non-blank line, and the whole-file cases a line cannot tell.

    Records are held back, never more than ONE_OBJECT_MAX_CHARS of text, while the file may still be one JSON
    document: a top-level scalar (an InputError) or one pretty-printed object (one record, container "json").
    A text starting past the file's first line is a byte range of a file already known to be JSON Lines: never one
    document.
    """

    def __init__(self, path: str, pieces: Iterable[str], first_char: str, first_line: int = 1):
        self._path = path
        self._limit = record_limit()
        self._pieces = pieces
        self._first_line = first_line
        self._maybe_scalar = first_char != "{"
        # every line, while the text may be one object
        self._document: list[str] | None = None if self._maybe_scalar or first_line > 1 else []
        self._document_chars = 0
        self._only_json_space = True  # every blank line is JSON whitespace, so one scalar line would be the document
        self._blank: list[int] = []
        self._blank_count = 0
        self.container = "jsonl"

    def records(self) -> Iterator[list[RawRecord]]:
        groups = self._record_groups()
        held: list[RawRecord] = []
        for group in groups:
            for i, record in enumerate(group):
                held.append(record)
                if not self._may_be_one_document(held):
                    self._document = None
                    yield held + group[i + 1 :]
                    yield from groups
                    return
        yield self._settle(held)

    def _record_groups(self) -> Iterator[list[RawRecord]]:
        """A list of records per piece of text, noting blank lines and keeping the text while it may be one object."""
        no = self._first_line - 1
        for lines, ended in _line_groups(self._pieces):
            if self._document is not None:
                self._keep_document_lines(lines)
            group = []
            for line in lines:
                no += 1
                if line.strip():
                    group.append(_line_record(no, line, ended, self._limit))
                else:
                    self._note_blank(no, line, ended)
            yield group

    def _keep_document_lines(self, lines: list[str]) -> None:
        self._document_chars += sum(map(len, lines)) + len(lines)
        if self._document_chars > ONE_OBJECT_MAX_CHARS:
            self._document = None
        else:
            self._document += lines

    def _note_blank(self, no: int, line: str, ended: bool) -> None:
        if line.strip(" \t\r"):
            self._only_json_space = False
        if ended:  # a blank end after the last newline is no blank line
            self._blank_count += 1
            if len(self._blank) < 10:
                self._blank.append(no)

    def _may_be_one_document(self, held: list[RawRecord]) -> bool:
        if self._maybe_scalar:
            return len(held) == 1 and held[0].error is None
        return held[-1].error is not None and self._document is not None

    def _settle(self, held: list[RawRecord]) -> list[RawRecord]:
        """At the end of the file: reject a top-level scalar, or read one pretty-printed object as one record."""
        if self._maybe_scalar and len(held) == 1 and held[0].error is None and self._only_json_space:
            raise InputError(f"{self._path}: top-level JSON value is a {type(held[0].obj).__name__}, not records. "
                             "Expected JSON Lines (one object per line) or a JSON array of objects.")
        if self._maybe_scalar or len(held) < 2 or self._document is None:
            return held
        text = "\n".join(self._document)
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return held
        self.container = "json"
        return [RawRecord(1, text.strip(), obj)]

    def notes(self) -> list[FileNote]:
        return self.line_notes().notes()

    def line_notes(self) -> LineNotes:
        return LineNotes(blank_lines=self._blank, blank_count=self._blank_count)


class _FirstElementIndent:
    """Indentation of the first line after the array's '[' that starts with text, fed the text piece by piece.

    Today's rule for finding the element after a broken one: a line indented like this one, if there is one.
    """

    def __init__(self) -> None:
        self.known = False
        self.value: str | None = None
        self._tail = ""  # a trailing "\n" and spaces or tabs: the start of a line still to be seen

    def feed(self, text: str) -> None:
        if self.known:
            return
        text = self._tail + text
        if found := FIRST_ELEMENT_LINE.search(text):
            self.known, self.value = True, found.group(1)
            return
        last = text.rfind("\n")
        self._tail = text[last:] if last >= 0 and not text[last + 1 :].strip(" \t") else ""


class _JsonArray:
    """Elements of a top-level JSON array, decoded one at a time from a window of text that slides along the file.

    Valid elements get canonical text; a broken element keeps its own text and the error with its file line and
    column, and reading resumes at the next element start (a line indented like the first element, else "},{").
    """

    container = "json"

    def __init__(self, path: str, pieces: Iterator[str], text: _Text):
        self._path = path
        self._limit = record_limit()
        self._pieces = pieces
        self._text = text
        self._window = ""
        self._line = 1  # file line of the window's first character
        self._column = 0  # its 0-based column in that line
        self._eof = False
        self._count = 0
        self._indent = _FirstElementIndent()
        self._resync: re.Pattern[str] | None = None

    def records(self) -> Iterator[list[RawRecord]]:
        """A list of records per window of text: the elements well inside it, then one read with every check."""
        pos = self._open_bracket()
        while True:
            group: list[RawRecord] = []
            pos = self._skip_separators(self._elements_inside(pos, group))
            if pos == len(self._window) or self._window[pos] == "]":
                yield group
                break
            record, pos = self._element(pos)
            group.append(record)
            yield group
        self._window = ""
        for _ in self._pieces:  # text after the array still counts for the file's notes and checksum
            pass

    def _open_bracket(self) -> int:
        for piece in self._pieces:
            self._window += piece
            if "[" in piece:
                break
        pos = self._window.index("[") + 1
        self._indent.feed(self._window[pos:])
        return pos

    def _extend(self, min_chars: int) -> bool:
        """Append at least min_chars more text to the window (less at the end of the file); False if none came."""
        new: list[str] = []
        added = 0
        for piece in self._pieces:
            new.append(piece)
            self._indent.feed(piece)
            added += len(piece)
            if added >= min_chars:
                break
        else:
            self._eof = True
        if new:
            self._window = "".join([self._window, *new])
        return bool(new)

    def _refill(self, pos: int, min_chars: int) -> int:
        """Drop the text before pos and append at least min_chars more; pos is then 0 (the window's start)."""
        pos = self._slide(pos)
        self._extend(min_chars)
        return pos

    def _slide(self, pos: int) -> int:
        """Drop the window's text before pos, keeping the file line and column of what remains."""
        newlines = self._window.count("\n", 0, pos)
        if newlines:
            self._line += newlines
            self._column = pos - self._window.rfind("\n", 0, pos) - 1
        else:
            self._column += pos
        self._window = self._window[pos:]
        return 0

    def _where(self, at: int) -> tuple[int, int]:
        """File line and 1-based column of a window position."""
        newlines = self._window.count("\n", 0, at)
        if newlines:
            return self._line + newlines, at - self._window.rfind("\n", 0, at)
        return self._line, self._column + at + 1

    def _skip_separators(self, pos: int) -> int:
        while True:
            pos = ELEMENT_SEPARATORS.match(self._window, pos).end()
            if pos < len(self._window) or self._eof:
                return pos
            pos = self._refill(pos, 1)

    def _may_be_cut(self, at: int, unterminated: bool = False) -> bool:
        """Whether a scan result at `at` may change with more text: near the window's end, or a string still open."""
        return not self._eof and (unterminated or at + LOOKAHEAD > len(self._window))

    def _elements_inside(self, pos: int, group: list[RawRecord]) -> int:
        """Decode, at speed, the valid elements that end well inside the window (most of them); stop at anything
        else (the window's end, a broken element, the closing bracket) for `_element` and its checks."""
        window, count = self._window, self._count
        inside = len(window) - LOOKAHEAD
        skip, decode, encode = ELEMENT_SEPARATORS.match, DECODER.raw_decode, CANONICAL.encode
        while (pos := skip(window, pos).end()) < inside and window[pos] != "]":
            try:
                value, end = decode(window, pos)
            except (ValueError, RecursionError):  # ValueError: JSONDecodeError or an integer past the digit limit
                break
            if end > inside or end - pos > self._limit or SURROGATE.search(text := encode(value)):
                break
            count += 1
            group.append(RawRecord(count, text, value))
            pos = end
        self._count = count
        return pos

    def _element(self, pos: int) -> tuple[RawRecord, int]:
        self._count += 1
        while True:
            try:
                value, end = DECODER.raw_decode(self._window, pos)
            except json.JSONDecodeError as e:
                if self._may_be_cut(e.pos, e.msg.startswith("Unterminated string")):
                    pos = self._refill(pos, len(self._window) - pos)
                    continue
                return self._broken(pos, e.pos, e.msg)
            except RecursionError:
                return self._broken(pos, pos, "nesting too deep to parse")
            except ValueError:  # an integer past Python's digit limit
                at, digits = _long_number(self._window, pos)
                if self._may_be_cut(at + digits):
                    pos = self._refill(pos, len(self._window) - pos)
                    continue
                return self._broken(pos, at, _long_number_problem(digits))
            if self._may_be_cut(end):
                pos = self._refill(pos, len(self._window) - pos)
                continue
            if end - pos > self._limit:
                line, column = self._where(pos)
                return _too_large(self._count, self._window[pos:end], self._limit, f" (file line {line}, column {column})"), end
            text = CANONICAL.encode(value)
            if SURROGATE.search(text):
                return self._unstorable(pos, end)
            return RawRecord(self._count, text, value), end

    def _unstorable(self, pos: int, end: int) -> tuple[RawRecord, int]:
        """A well-formed element holding a lone surrogate, as a failed record keeping its own text."""
        escape = LONE_SURROGATE_ESCAPE.search(self._window, pos, end)
        line, column = self._where(escape.start() if escape else pos)
        why = f"{_lone_surrogate_problem(escape.group() if escape else '')} (file line {line}, column {column})"
        return RawRecord(self._count, self._window[pos:end].strip(), None, why), end

    def _broken(self, pos: int, at: int, why: str) -> tuple[RawRecord, int]:
        """The broken element starting at pos as a failed record, and where the next element starts."""
        line, column = self._where(at)
        stop, resume = self._next_element(max(at, pos + 1))
        text = self._window[pos:stop].strip().rstrip(",")
        return RawRecord(self._count, text, None, f"{why} (file line {line}, column {column})"), resume

    def _next_element(self, start: int) -> tuple[int, int]:
        pattern = self._resync_pattern()
        while (found := pattern.search(self._window, start)) is None:
            if not self._extend(len(self._window)):
                return len(self._window), len(self._window)
        return found.start(), found.end()

    def _resync_pattern(self) -> re.Pattern[str]:
        if self._resync is None:
            while not self._indent.known and self._extend(len(self._window)):
                pass
            indent = self._indent.value
            self._resync = NEXT_COMPACT_ELEMENT if indent is None else re.compile(r"\n" + re.escape(indent) + r"(?=[\{\[])")
        return self._resync

    def notes(self) -> list[FileNote]:
        if self._text.last_visible == "]":
            return []
        return [FileNote("format.truncated_file", self._count or None,
                         "JSON array is not closed with ']': the file looks truncated. Records before the cut were read.",
                         "warning")]


# ---------------------------------------------------------------------------------------------------------------------
# A large file in byte ranges, for reading it on several workers at once (the Ray engine)


def line_ranges(path: str | Path, piece_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of about piece_bytes covering a plain JSON Lines file, each starting at a line start. A file that
    cannot be cut is one range: gzip, Parquet, a JSON array, or a first line that is no JSON object (the file may be
    one pretty-printed object). Reads only the first line and a little at each cut."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        if size <= piece_bytes or not _first_line_is_object(f, max(piece_bytes, 1 << 20)):
            return [(0, size)]
        cuts = [0]
        for at in range(piece_bytes, size, piece_bytes):
            if at > cuts[-1] and (cut := _next_line_start(f, at)) is not None and cut < size:
                cuts.append(cut)
    return list(zip(cuts, cuts[1:] + [size]))


def _first_line_is_object(f: Any, limit: int) -> bool:
    """Whether the file's first line is a UTF-8 JSON object (never so for gzip, Parquet, UTF-16 or UTF-32 bytes)."""
    line = f.readline(limit)
    return not _bom_encoding(line) and _is_object(line.removeprefix(BOM.encode()).decode("utf-8", errors="replace"))


def _next_line_start(f: Any, at: int) -> int | None:
    """The offset just past the first newline at or after at - 1 (so `at` itself when a line ends there)."""
    f.seek(at - 1)
    while chunk := f.read(1 << 16):
        if (newline := chunk.find(b"\n")) >= 0:
            return at + newline
        at += len(chunk)
    return None


class RawRange:
    """The records of bytes [start, end) of a JSON Lines file, cut at line starts (`line_ranges`), numbered from the
    range's first line: one worker's share of a large file. Records, texts and errors are those of one read of the
    whole file; `line_notes` (once every batch has been read) add up over the ranges to the file's notes. The
    checksum belongs to the whole file, not to a range."""

    def __init__(self, path: str | Path, start: int, end: int, first_line: int = 1, *, chunk_size: int = CHUNK_SIZE):
        self.path, self.start, self.end, self.first_line = str(path), start, end, first_line
        self.chunk_size = chunk_size
        self.records = 0
        self.position = 0  # bytes of the range read so far
        self.line_notes: LineNotes | None = None

    def batches(self, max_bytes: int = BATCH_BYTES, max_records: int = BATCH_RECORDS) -> Iterator[list[RawRecord]]:
        with open(self.path, "rb") as f:
            text = _Text(self._chunks(f), self.first_line, self.start == 0)
            parser = _JsonLines(self.path, text.pieces(), "{", self.first_line)
            for batch in _batched(parser.records(), max_bytes, max_records):
                self.records += len(batch)
                yield batch
        self.line_notes = text.line_notes() + parser.line_notes()

    def count(self) -> tuple[int, int]:
        """(lines, records): the range's newlines and its non-blank lines, found without parsing a record, so that a
        cheap first pass tells each range of a file its first line and its first record id."""
        with open(self.path, "rb") as f:
            lines, records, _ = _count_lines(_Text(self._chunks(f), at_start=self.start == 0).pieces())
        return lines, records

    def _chunks(self, f: Any) -> Iterator[bytes]:
        f.seek(self.start)
        self.position = 0
        while self.position < self.end - self.start:
            chunk = f.read(min(self.chunk_size, self.end - self.start - self.position))
            if not chunk:
                return
            self.position += len(chunk)
            yield chunk


def count_records(path: str | Path) -> int:
    """How many records `open_raw(path)` yields, found cheaply where the container allows: Parquet from its metadata,
    JSON Lines whose first record is an object (gzip or not) from its non-blank lines; anything else by reading it."""
    with open_raw(path) as stream:
        if stream.container == "parquet" and not stream.gzip:
            if (rows := _parquet_row_count(path)) is not None:
                return rows
        elif isinstance(stream._parser, _JsonLines):
            _, records, first = _count_lines(stream._parser._pieces)
            if first is not None and _is_object(first):
                return records
    with open_raw(path) as stream:
        return sum(map(len, stream.batches()))


def _parquet_row_count(path: str | Path) -> int | None:
    """Rows of a Parquet file from its metadata; None for a damaged file (reading it raises the reader's InputError)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 -- pyarrow raises several unrelated types for damaged files
        return None


def _count_lines(pieces: Iterable[str]) -> tuple[int, int, str | None]:
    """(newlines, non-blank lines, the first non-blank line) of a text, as `_JsonLines` splits it."""
    lines = records = 0
    first = None
    for group, ended in _line_groups(pieces):
        lines += len(group) if ended else 0
        blank_or_not = [bool(line.strip()) for line in group]
        if first is None and any(blank_or_not):
            first = group[blank_or_not.index(True)]
        records += sum(blank_or_not)
    return lines, records, first


def _is_object(text: str | bytes) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (json.JSONDecodeError, RecursionError):
        return False
