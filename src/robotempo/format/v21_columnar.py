"""The columnar parse of `meta/episodes.jsonl` (v2.x) for files whose every line is canonical, the layout
LeRobot, OpenTau and robotempo's writer make: `{"episode_index": E, "tasks": ["T"], "length": L}`.

numpy over the whole file instead of a parser per line: opening one episode of a 20,000-episode dataset must
cost little more than of 1,000 (P3). Every byte of every line is checked (literals compared 8 bytes at a time,
numbers read as 8-byte words, each distinct task decoded by `json.loads` and every other string compared byte
for byte with it); anything else returns None and `format/v21.py` falls back to its other parsers.
"""

from __future__ import annotations

import json
import os
from typing import BinaryIO

import numpy as np

_HEAD, _MID, _TAIL = b'{"episode_index": ', b', "tasks": ["', b'"], "length": '
# The shortest canonical line (an empty task, one-digit numbers). Reads run at most len(_HEAD) + 7 + len(_MID)
# bytes forward from a line's start and 9 back from its end: within any line this long, never past the buffer.
_SHORTEST = len(_HEAD) + 1 + len(_MID) + len(_TAIL) + 2
_ASCII_ZEROS, _SIXES = np.uint64(0x3030303030303030), np.uint64(0x0606060606060606)
_HIGH_NIBBLES, _LOW_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0), np.uint64(0x0F0F0F0F0F0F0F0F)
_LANES = np.uint64(0x000000FF000000FF)
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)  # the n lowest bytes set
_SLICE = 1 << 18  # bytes scanned at a time: temporaries stay in the CPU caches and in reused heap memory
_LINES = 4096  # lines parsed at a time, for the same reason


def _words(buf: np.ndarray) -> np.ndarray:
    """Element i is the 8 bytes `buf[i : i + 8]` as a little-endian integer (unaligned, overlapping)."""
    return np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))


def _matches(words: np.ndarray, pos: np.ndarray, literal: bytes) -> bool:
    """Whether `literal` (8 bytes or more) starts at every position in `pos`."""
    offsets = [*range(0, len(literal) - 7, 8), len(literal) - 8]
    want = _words(np.frombuffer(literal, np.uint8))
    return all(bool((words[pos + o] == want[o]).all()) for o in offsets)


def _swar_value(digits: np.ndarray) -> np.ndarray:
    """The 8-digit decimal numbers whose digits (values 0-9, the first and most significant in the lowest
    byte) fill each 64-bit word, by three multiply-and-shift steps over all bytes at once."""
    v = digits * np.uint64(10) + (digits >> np.uint64(8))  # even bytes: pairs of digits, 0-99
    v = (v & _LANES) * np.uint64(100 + (1000000 << 32)) + ((v >> np.uint64(16)) & _LANES) * np.uint64(
        1 + (10000 << 32)
    )
    return (v >> np.uint64(32)).astype(np.int64)


def _non_digits(word: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each byte's digit value, a word with a nonzero byte where the byte is not an ASCII digit)."""
    digits = word ^ _ASCII_ZEROS  # "0".."9" become 0..9; anything else has a high nibble or a value > 9
    high = digits & _HIGH_NIBBLES
    return digits, high | ((digits & _LOW_NIBBLES) + _SIXES) & _HIGH_NIBBLES


def _uint_at(words: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The unsigned decimal numbers whose digits start at `pos`, and the position after each; None unless
    each has 1-7 digits (one 8-byte read; longer ones go to the regular expressions) and no leading zero."""
    digits, bad = _non_digits(words[pos])
    lowest = bad & (~bad + np.uint64(1))  # the first non-digit's lowest bit (0: eight digits)
    ndigits = (np.frexp(lowest.astype(np.float64))[1] - 1) // 8  # exact: a power of two
    if not (bad.all() and ndigits.min() >= 1):
        return None
    if ((digits & np.uint64(0xFF) == 0) & (ndigits > 1)).any():
        return None  # a leading zero
    kept = (digits & _LOW_BYTES[ndigits]) << (np.uint64(8) * (8 - ndigits).astype(np.uint64))
    return _swar_value(kept), pos + ndigits


def _uint_before(words: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The unsigned decimal numbers whose digits end just before `end`, and the position of each one's
    first digit; None unless each has 1-7 digits and no leading zero."""
    digits, bad = _non_digits(words[end - 8])
    last_bad = (np.frexp(bad.astype(np.float64))[1] - 1) // 8  # the byte of the last non-digit
    ndigits = 7 - last_bad
    if not (bad.all() and ndigits.min() >= 1):
        return None
    first = (last_bad + 1).astype(np.uint64) * np.uint64(8)
    if (((digits >> first) & np.uint64(0xFF) == 0) & (ndigits > 1)).any():
        return None  # a leading zero
    return _swar_value(digits & ~_LOW_BYTES[last_bad + 1]), end - ndigits


def _line_ends(raw: np.ndarray) -> np.ndarray | None:
    """The position of each newline, or None when the bytes hold any other control character (a tab, a CR,
    a NUL: not in a canonical line, invalid in a JSON string) or a backslash (an escape: the regular
    expressions handle those). By `_SLICE` bytes: no temporary of the file's size."""
    found = []
    for lo in range(0, len(raw), _SLICE):
        part = raw[lo : lo + _SLICE]
        odd = np.flatnonzero((part < 32) | (part == 92))
        if not (part[odd] == 10).all():
            return None
        found.append(odd + lo)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.intp)


# (episode_index, length, code of the first task per episode (-1: none), the task string of each code)
Parsed = tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]


def parse_canonical(source: bytes | BinaryIO) -> Parsed | None:
    """The episode table of a whole `meta/episodes.jsonl` given as bytes, or read from a binary file `_SLICE`
    bytes at a time (the file's bytes are never all in memory at once); None unless every line is canonical.

    Lines are parsed `_LINES` at a time: the temporaries stay small, in the CPU caches and in reused heap
    memory (a fresh page costs a kernel fault: on a 20,000-line file that was a third of the parse)."""
    parser = _Parser()
    if isinstance(source, bytes | bytearray | memoryview):
        return (
            parser.finish() if parser.feed(np.frombuffer(source, np.uint8), final=True) is not None else None
        )
    try:
        size = os.fstat(source.fileno()).st_size + 1  # one byte more: the end of the file is seen in one read
    except (AttributeError, OSError, ValueError):  # not a file on disk
        size = _SLICE
    buf = bytearray(min(_SLICE, size))
    view, kept = memoryview(buf), 0
    while True:
        filled = kept
        while filled < len(buf) and (got := source.readinto(view[filled:])):
            filled += got
        final = filled < len(buf)  # the file ended
        used = parser.feed(np.frombuffer(buf, np.uint8, count=filled), final)
        if used is None or (used == 0 and not final):
            return None  # not canonical, or one line longer than the buffer
        if final:
            return parser.finish()
        kept = filled - used
        buf[:kept] = buf[used:filled]  # the unfinished last line, to the front


class _Parser:
    """The columns of the canonical lines fed so far."""

    def __init__(self) -> None:
        self.tasks = _TaskCodes()
        self.columns: list[np.ndarray] = []  # (episode_index, length, task code) per block of lines

    def feed(self, raw: np.ndarray, final: bool) -> int | None:
        """Parse the complete lines of `raw` (and its unterminated last line if `final`); the number of bytes
        used, or None when a line is not canonical."""
        ends = _line_ends(raw)
        if ends is None:
            return None
        if final and len(raw) and raw[-1] != 10:
            ends = np.append(ends, len(raw))
        if not len(ends):
            return 0
        starts = np.concatenate(([0], ends[:-1] + 1))
        words = _words(raw) if len(raw) >= 8 else None
        for lo in range(0, len(ends), _LINES):
            block = slice(lo, lo + _LINES)
            parsed = _canonical_lines(words, raw, starts[block], ends[block])
            codes = None if parsed is None else self.tasks.add(words, raw, parsed[2], parsed[3])
            if codes is None:
                return None
            self.columns.append(np.stack((parsed[0], parsed[1], codes)))
        return int(min(ends[-1] + 1, len(raw)))

    def finish(self) -> Parsed | None:
        names = self.tasks.names()
        if names is None:
            return None
        columns = np.concatenate(self.columns, axis=1) if self.columns else np.zeros((3, 0), dtype=np.int64)
        return columns[0], columns[1], columns[2], names


class _TaskCodes:
    """Codes of task strings, numbered in order of first appearance, found by a 64-bit hash of each string
    (`_task_bytes`) and proven by comparing every string with the first one of its code, whose bytes (and
    the `_TAIL` after them) are kept here."""

    def __init__(self) -> None:
        self.digest = np.zeros(0, dtype=np.uint64)  # the hashes seen, sorted
        self.code = np.zeros(0, dtype=np.int64)  # per hash, its code
        self.first = bytearray()  # the first string of each code, each followed by `_TAIL`, in code order
        self.span = np.zeros((2, 0), dtype=np.int64)  # per hash, (start, stop) of its string in `first`

    def add(self, words, raw: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray | None:
        """The codes of the strings `raw[start:stop]`; None when two strings share a hash."""
        width = int((stop - start).max())
        mine = _task_bytes(words, start, stop, width)
        digest = _digest(mine)
        at = np.searchsorted(self.digest, digest)
        new = at == len(self.digest)
        new[~new] = self.digest[at[~new]] != digest[~new]
        if new.any():
            fresh, first = np.unique(digest[new], return_index=True)
            line = np.sort(np.flatnonzero(new)[first])  # the new strings, in order of appearance
            fresh = digest[line]
            code = np.arange(len(self.digest), len(self.digest) + len(fresh))
            span = np.empty((2, len(line)), dtype=np.int64)
            for i, j in enumerate(line):
                span[0, i] = len(self.first)
                self.first += raw[start[j] : stop[j] + len(_TAIL)].tobytes()
                span[1, i] = len(self.first) - len(_TAIL)
            order = np.argsort(np.concatenate((self.digest, fresh)))
            self.digest = np.concatenate((self.digest, fresh))[order]
            self.code = np.concatenate((self.code, code))[order]
            self.span = np.concatenate((self.span, span), axis=1)[:, order]
            at = np.searchsorted(self.digest, digest)
        kept = _words(np.frombuffer(bytes(self.first), np.uint8))
        theirs = _task_bytes(kept, self.span[0], self.span[1], width)
        if not all(np.array_equal(x, y[at]) for x, y in zip(mine, theirs, strict=True)):
            return None
        return self.code[at]

    def names(self) -> list[str] | None:
        """The decoded string of each code; None unless each is one JSON string body in UTF-8."""
        span = np.empty_like(self.span)
        span[:, self.code] = self.span
        try:
            return [json.loads(b'"' + self.first[a:b] + b'"') for a, b in span.T.tolist()]
        except ValueError:  # not UTF-8, or not one JSON string: the other parsers decide
            return None


def _canonical_lines(words, raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple | None:
    """(episode_index, length, task start, task end) of canonical lines `raw[starts:ends]`, or None.

    Reads stay inside the buffer (a line is at least `_SHORTEST` bytes), and a line passes only if the chain
    of checks covers it from its first byte to its last: the file needs no padding.
    The task is everything between `"tasks": ["` and `"], "length": `; it is one JSON string only if
    `json.loads` says so, which the caller asks of each distinct one."""
    if words is None or (ends - starts < _SHORTEST).any() or not _matches(words, starts, _HEAD):
        return None  # a blank or short line, or another first key
    number = _uint_at(words, starts + len(_HEAD))
    if number is None or not _matches(words, number[1], _MID):
        return None
    episode_index, task_from = number[0], number[1] + len(_MID)
    if not (raw[ends - 1] == ord("}")).all():
        return None  # anything after the object (more keys end in a quote, a bracket or a literal)
    number = _uint_before(words, ends - 1)  # the length, read from the line's end
    if number is None:
        return None
    length, task_to = number[0], number[1] - len(_TAIL)
    if (task_to < task_from).any() or not _matches(words, task_to, _TAIL):
        return None
    return episode_index, length, task_from, task_to


def _task_bytes(words: np.ndarray, start: np.ndarray, stop: np.ndarray, width: int) -> list[np.ndarray]:
    """The strings `raw[start:stop]` (at most `width` bytes) as their lengths, then their bytes 8 at a time.

    A read that passes a string's end takes the bytes after it, which are the same `_TAIL` in every line
    (checked): two strings of one length give equal reads exactly when their bytes are equal."""
    return [stop - start] + [words[np.minimum(start + j, stop)] for j in range(0, width, 8)]


def _digest(parts: list[np.ndarray]) -> np.ndarray:
    """A 64-bit FNV-style hash of each string given by `_task_bytes`."""
    digest = parts[0].astype(np.uint64)
    for chunk in parts[1:]:
        digest = digest * np.uint64(0x100000001B3) ^ chunk
    return digest
