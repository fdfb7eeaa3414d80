"""The columnar parse of `meta/episodes.jsonl` (v2.x) for files whose every line is canonical, the layout
LeRobot, OpenTau and robotempo's writer make: `{"episode_index": E, "tasks": ["T"], "length": L}`.

numpy over the whole file instead of a parser per line: opening one episode of a 20,000-episode dataset must
cost little more than of 1,000 (P3). Every byte of every line is checked (literals compared 8 bytes at a time,
numbers read as 8-byte words, each distinct task decoded by `json.loads` and every other string compared byte
for byte with it); anything else returns None and `format/v21.py` falls back to its other parsers.
"""

from __future__ import annotations

import json

import numpy as np

_HEAD, _MID, _TAIL = b'{"episode_index": ', b', "tasks": ["', b'"], "length": '
_SHORTEST = len(_HEAD) + 1 + len(_MID) + len(_TAIL) + 8  # a 1-digit episode, the length's 8-byte word
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
    """The position of each newline, or None when the bytes hold any other control character (a tab, a NUL:
    not in a canonical line, invalid in a JSON string). By `_SLICE` bytes: no temporary of the file size."""
    found = []
    for lo in range(0, len(raw), _SLICE):
        part = raw[lo : lo + _SLICE]
        newlines = np.flatnonzero(part == 10)
        if np.count_nonzero(part < 32) != len(newlines):
            return None
        found.append(newlines + lo)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.intp)


def parse_canonical(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
    """The episode table by numpy over the whole file, for files whose every line is canonical (one task, the
    writers' key order and spacing, no escape, no control character): one pass over the bytes and a few
    over the lines, so that opening one episode of 20,000 costs little more than one of 1,000 (P3).

    None for anything else: `format/v21.py` then tries regular expressions and its strict parser. Lines are
    parsed `_LINES` at a time: the temporaries stay small, in the CPU caches and in reused heap memory (a
    fresh page costs a kernel fault: on a 20,000-line file that was a third of the parse)."""
    if b"\\" in data or b"\r" in data:
        return None  # escapes and CRLF lines are rare: the regular expressions handle them
    raw = np.frombuffer(data, np.uint8)
    ends = _line_ends(raw)
    if ends is None:
        return None
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(raw))
    starts = np.concatenate(([0], ends[:-1] + 1))
    words = _words(raw) if len(raw) >= 8 else None
    columns = np.empty((4, len(ends)), dtype=np.int64)  # episode_index, length, task start, task end
    codes = np.empty(len(ends), dtype=np.int64)
    tasks = _TaskCodes()
    for lo in range(0, len(ends), _LINES):
        block = slice(lo, lo + _LINES)
        parsed = _canonical_lines(words, raw, starts[block], ends[block])
        if parsed is None:
            return None
        columns[:, block] = parsed
        found = tasks.add(words, columns[2:], lo, parsed[2], parsed[3])
        if found is None:
            return None
        codes[block] = found
    names = tasks.names(data, columns[2:])
    return None if names is None else (columns[0], columns[1], codes, names)


class _TaskCodes:
    """Codes of task strings, numbered in order of first appearance, found by a 64-bit hash of each string
    (`_task_bytes`) and proven by comparing every string with the first one of its code."""

    def __init__(self) -> None:
        self.digest = np.zeros(0, dtype=np.uint64)  # the hashes seen, sorted
        self.line = np.zeros(0, dtype=np.int64)  # per hash, the line of its first string
        self.code = np.zeros(0, dtype=np.int64)  # per hash, its code

    def add(
        self, words, spans: np.ndarray, lo: int, start: np.ndarray, stop: np.ndarray
    ) -> np.ndarray | None:
        """The codes of lines `lo...` (strings `start:stop`); None when two strings share a hash.
        `spans` holds every line's (start, stop) so far."""
        width = int((stop - start).max())
        mine = _task_bytes(words, start, stop, width)
        digest = _digest(mine)
        at = np.searchsorted(self.digest, digest)
        new = at == len(self.digest)
        new[~new] = self.digest[at[~new]] != digest[~new]
        if new.any():
            fresh, first = np.unique(digest[new], return_index=True)
            line = lo + np.flatnonzero(new)[first]
            code = np.empty(len(fresh), dtype=np.int64)
            code[np.argsort(line)] = np.arange(len(self.digest), len(self.digest) + len(fresh))
            digests = np.concatenate((self.digest, fresh))
            order = np.argsort(digests)
            self.digest = digests[order]
            self.line = np.concatenate((self.line, line))[order]
            self.code = np.concatenate((self.code, code))[order]
            at = np.searchsorted(self.digest, digest)
        theirs = _task_bytes(words, spans[0, self.line], spans[1, self.line], width)
        if not all(np.array_equal(x, y[at]) for x, y in zip(mine, theirs, strict=True)):
            return None
        return self.code[at]

    def names(self, data: bytes, spans: np.ndarray) -> list[str] | None:
        """The decoded string of each code; None unless each is one JSON string body in UTF-8."""
        line = np.empty(len(self.line), dtype=np.int64)
        line[self.code] = self.line
        try:
            return [json.loads(b'"' + data[spans[0, i] : spans[1, i]] + b'"') for i in line]
        except ValueError:  # not UTF-8, or not one JSON string: the other parsers decide
            return None


def _canonical_lines(words, raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple | None:
    """(episode_index, length, task start, task end) of canonical lines `raw[starts:ends]`, or None.

    Every read stays inside its line (a line is at least `_SHORTEST` bytes): the file needs no padding.
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
