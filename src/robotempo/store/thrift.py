"""A reader of Thrift's compact protocol, the encoding of parquet footers, page headers and page indexes.

Structs decode into `{field id: value}` dicts (lists into lists, binary into bytes, booleans into bool); only
what `store/pages.py` asks for is ever looked at, the rest is walked over. Malformed input raises
`ThriftError`; callers turn it into a typed error naming the file, or fall back to pyarrow's own reader.
"""

from __future__ import annotations

import struct

_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
MAX_DEPTH = 32  # parquet's structs nest 5 deep; deeper input is corrupt


class ThriftError(ValueError):
    """Bytes that are not a well-formed compact-protocol struct."""


def read_struct(buf: bytes | memoryview, pos: int = 0) -> tuple[dict[int, object], int]:
    """The struct starting at `buf[pos]` and the position just after it."""
    try:
        return _struct(memoryview(buf), pos, 0)
    except (IndexError, struct.error):
        raise ThriftError(f"truncated struct (started at byte {pos})") from None


def varint(buf: memoryview, pos: int, max_bytes: int = 10) -> tuple[int, int]:
    """The unsigned LEB128 integer at `buf[pos]` and the position after it (also RLE run headers)."""
    out = shift = 0
    for _ in range(max_bytes):
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, pos
        shift += 7
    raise ThriftError(f"varint longer than {max_bytes} bytes at byte {pos}")


def _zigzag(buf: memoryview, pos: int) -> tuple[int, int]:
    n, pos = varint(buf, pos)
    return (n >> 1) ^ -(n & 1), pos


def _value(buf: memoryview, pos: int, kind: int, depth: int) -> tuple[object, int]:
    if kind in (_I16, _I32, _I64):
        return _zigzag(buf, pos)
    if kind == _BINARY:
        n, pos = varint(buf, pos)
        if pos + n > len(buf):
            raise ThriftError(f"binary of {n} bytes runs past the end at byte {pos}")
        return bytes(buf[pos : pos + n]), pos + n
    if kind == _STRUCT:
        return _struct(buf, pos, depth + 1)
    if kind in (_LIST, _SET):
        if depth > MAX_DEPTH:  # lists of lists nest like structs (3,000 of them made a RecursionError)
            raise ThriftError(f"lists nested deeper than {MAX_DEPTH}")
        head = buf[pos]
        pos += 1
        size, elem = head >> 4, head & 0x0F
        if size == 15:
            size, pos = varint(buf, pos)
        if size > len(buf) - pos and elem not in (_TRUE, _FALSE):
            raise ThriftError(f"list of {size} elements cannot fit the {len(buf) - pos} bytes left")
        items = []
        for _ in range(size):
            item, pos = _value(buf, pos, elem, depth + 1)
            items.append(item)
        return items, pos
    if kind in (_TRUE, _FALSE):  # an element of a list: one byte
        return buf[pos] == 1, pos + 1
    if kind == _BYTE:
        return buf[pos], pos + 1
    if kind == _DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if kind == _MAP:
        size, pos = varint(buf, pos)
        out = {}
        if size:
            types = buf[pos]
            pos += 1
            for _ in range(size):
                k, pos = _value(buf, pos, types >> 4, depth + 1)
                v, pos = _value(buf, pos, types & 0x0F, depth + 1)
                out[k if not isinstance(k, list) else tuple(k)] = v
        return out, pos
    raise ThriftError(f"unknown field type {kind} at byte {pos}")


def _struct(buf: memoryview, pos: int, depth: int) -> tuple[dict[int, object], int]:
    if depth > MAX_DEPTH:
        raise ThriftError(f"structs nested deeper than {MAX_DEPTH}")
    out: dict[int, object] = {}
    field = 0
    while True:
        head = buf[pos]
        pos += 1
        kind = head & 0x0F
        if kind == _STOP:
            return out, pos
        delta = head >> 4
        if delta:
            field += delta
        else:
            field, pos = _zigzag(buf, pos)
        if kind in (_TRUE, _FALSE):
            out[field] = kind == _TRUE
        else:
            out[field], pos = _value(buf, pos, kind, depth)
