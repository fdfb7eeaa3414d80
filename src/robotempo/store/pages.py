"""Single pages of an embedded-image column, located through the parquet page index.

A file written with a page index (robotempo's writer writes one; `write_page_index=True` in pyarrow) records,
per column chunk, where each data page starts and which row it starts at (the OffsetIndex). Reading one image
then costs its page (one image or a few) instead of the row group's whole column (megabytes). This module
reads that index and decodes one page of a flat BYTE_ARRAY leaf (an image struct's `bytes`): PLAIN values,
definition levels, data page v1 or v2, any codec pyarrow's `Codec` knows. A layout it does not handle
(dictionary pages, repetition levels, another encoding) is `PageUnsupported`; a page that contradicts its
header or index (checksum, sizes, counts, trailing bytes) is `PageCorrupt`. Callers read the row group with
pyarrow on the first and raise a typed error on the second, so a page is served only when it decodes exactly.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from robotempo.store.thrift import ThriftError, read_struct, varint

FOOTER_TAIL = 8  # footer length (int32) + "PAR1"
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_PLAIN, _RLE = 0, 3
# pyarrow's name of a column chunk's codec -> its `Codec` (pyarrow reports parquet's LZ4_RAW as "LZ4";
# Hadoop-framed LZ4 is "LZ4_HADOOP", not handled)
CODECS = {"UNCOMPRESSED": None, "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd",
          "LZ4": "lz4_raw", "LZ4_RAW": "lz4_raw"}  # fmt: skip


class PageUnsupported(Exception):
    """A layout this reader does not decode; pyarrow reads the row group instead."""


class PageCorrupt(Exception):
    """A page or page index that contradicts itself (or its checksum): a damaged file."""


@dataclass(frozen=True)
class OffsetIndexes:
    """Where each column chunk's OffsetIndex is in the file: (row group, leaf column) -> (offset, length).
    Empty when the file has no page index."""

    locations: dict[tuple[int, int], tuple[int, int]]

    @property
    def nbytes(self) -> int:
        return 64 + 96 * len(self.locations)  # a dict entry of small ints, for the cache's byte budget


@dataclass(frozen=True)
class ChunkPages:
    """The data pages of one column chunk: file offset and size (header included) of each, and the first
    row of each within the row group, plus the row group's row count at the end."""

    offsets: np.ndarray
    sizes: np.ndarray
    first_rows: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.sizes.nbytes + self.first_rows.nbytes

    def pages_of(self, rows: np.ndarray) -> np.ndarray:
        """The page holding each row (rows within the row group)."""
        return np.searchsorted(self.first_rows, rows, side="right") - 1


def offset_indexes(source: pa.NativeFile) -> OffsetIndexes:
    """Parse the footer for the location of every column chunk's OffsetIndex (fields 4 and 5 of
    ColumnChunk). A footer that does not parse has no usable index (pyarrow already read it at open)."""
    size = source.size()
    if size < 2 * FOOTER_TAIL:
        return OffsetIndexes({})
    tail = source.read_at(FOOTER_TAIL, size - FOOTER_TAIL)
    length = struct.unpack("<i", tail[:4])[0]
    if tail[4:] != b"PAR1" or not 0 < length <= size - FOOTER_TAIL - 4:
        return OffsetIndexes({})  # encrypted footer ("PARE") or not parquet
    try:
        meta, _ = read_struct(source.read_at(length, size - FOOTER_TAIL - length))
    except ThriftError:
        return OffsetIndexes({})
    out = {}
    for g, group in enumerate(meta.get(4) or []):
        for c, chunk in enumerate(group.get(1) or []):
            if isinstance(chunk.get(4), int) and isinstance(chunk.get(5), int):
                out[(g, c)] = (chunk[4], chunk[5])
    return OffsetIndexes(out)


def chunk_pages(source: pa.NativeFile, location: tuple[int, int], num_rows: int, chunk: tuple[int, int]):
    """The OffsetIndex at `location` (offset, length) of a column chunk holding `num_rows` rows whose pages
    lie within `chunk` (start, end) in the file, checked for consistency."""
    offset, length = location
    try:
        index, end = read_struct(source.read_at(length, offset))
        if end != length:
            raise ThriftError(f"{length - end} bytes after the OffsetIndex")
        pages = [(p[1], p[2], p[3]) for p in index[1]]
    except (ThriftError, KeyError, TypeError) as e:
        raise PageCorrupt(f"the page index at byte {offset} does not parse ({e})") from None
    if not pages:
        raise PageCorrupt(f"the page index at byte {offset} lists no pages")
    offsets, sizes, first = (np.array(v, dtype=np.int64) for v in zip(*pages))
    first_rows = np.append(first, num_rows)
    if (
        first[0] != 0
        or np.any(np.diff(first_rows) <= 0)
        or np.any(sizes <= 0)
        or offsets[0] < chunk[0]
        or np.any(offsets[1:] < offsets[:-1] + sizes[:-1])
        or offsets[-1] + sizes[-1] > chunk[1]
    ):
        raise PageCorrupt(f"the page index at byte {offset} disagrees with its column chunk")
    return ChunkPages(offsets, sizes, first_rows)


def decode_page(
    raw: bytes, compression: str, max_def: int, rows: int, max_bytes: int | None = None
) -> list[bytes | None]:
    """The values of one data page (`raw`: header + body, as the OffsetIndex delimits it) of a flat
    BYTE_ARRAY leaf with `max_def` definition levels, PLAIN-encoded: bytes, or None where undefined.
    `max_bytes` bounds what the header may say the page expands to (a decompression bomb is refused first)."""
    view = memoryview(raw)
    try:
        header, pos = read_struct(view)
    except ThriftError as e:
        raise PageCorrupt(f"the page header does not parse ({e})") from None
    kind, size, stored = header.get(1), header.get(2), header.get(3)
    if kind == _DICTIONARY_PAGE or kind not in (_DATA_PAGE, _DATA_PAGE_V2):
        raise PageUnsupported(f"page type {kind}")
    if not isinstance(size, int) or not isinstance(stored, int) or pos + stored != len(raw) or size < 0:
        raise PageCorrupt(f"the header's page size {stored} disagrees with the page index ({len(raw)} bytes)")
    if max_bytes is not None and size > max_bytes:
        raise PageCorrupt(f"the page header says it expands to {size:,} bytes, beyond what {rows} rows hold")
    body = view[pos:]
    crc = header.get(4)
    if isinstance(crc, int) and zlib.crc32(body) != crc & 0xFFFFFFFF:
        raise PageCorrupt("the page's checksum does not match its bytes")
    codec = _codec(compression)
    if kind == _DATA_PAGE:
        data = _decompress(codec, body, size)
        fields = header.get(5) or {}
        count, encoding = fields.get(1), fields.get(2)
        levels, pos = _levels_v1(data, 0, max_def, fields.get(3), count)
    else:
        fields = header.get(8) or {}
        count, encoding = fields.get(1), fields.get(4)
        rep, dfn = fields.get(6, 0), fields.get(5, 0)
        if rep:
            raise PageUnsupported("repetition levels")
        if not isinstance(dfn, int) or not 0 <= dfn <= len(body):
            raise PageCorrupt(f"definition levels of {dfn!r} bytes in a page of {len(body)}")
        levels = _hybrid(body, 0, dfn, max_def.bit_length(), count) if max_def else None
        values = body[dfn:]
        data = bytes(values) if fields.get(7) is False else _decompress(codec, values, size - dfn)
        pos = 0
    if encoding != _PLAIN:
        raise PageUnsupported(f"value encoding {encoding}")
    if count != rows:
        raise PageCorrupt(f"the page holds {count} values; its index gives it {rows} rows")
    return _plain_byte_arrays(data, pos, levels, max_def, rows)


def codec_of(compression: str) -> str:
    """Check that a column chunk's codec (pyarrow's name for it) is one this reader decompresses."""
    if compression not in CODECS:
        raise PageUnsupported(f"codec {compression}")
    return compression


@functools.cache
def _codec(compression: str) -> pa.Codec | None:
    name = CODECS[codec_of(compression)]
    return pa.Codec(name) if name else None


def _decompress(codec: pa.Codec | None, body, size: int) -> bytes:
    if codec is None:
        if len(body) != size:
            raise PageCorrupt(f"an uncompressed page of {len(body)} bytes declares {size}")
        return bytes(body)
    try:
        out = codec.decompress(body, decompressed_size=size, asbytes=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise PageCorrupt(f"the page does not decompress ({e})") from None
    if len(out) != size:
        raise PageCorrupt(f"the page decompresses to {len(out)} bytes, not the {size} its header declares")
    return out


def _levels_v1(data: bytes, pos: int, max_def: int, encoding, count) -> tuple[np.ndarray | None, int]:
    if not max_def:
        return None, pos
    if encoding != _RLE:
        raise PageUnsupported(f"definition-level encoding {encoding}")
    pos, end = _length_prefixed(data, pos, "the definition levels")
    return _hybrid(data, pos, end, max_def.bit_length(), count), end


def _length_prefixed(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Start and end of the bytes after the u32 length at `data[pos]`, checked against the page's end."""
    if pos + 4 > len(data):
        raise PageCorrupt(f"the page ends before {what}")
    n = struct.unpack_from("<I", data, pos)[0]
    if pos + 4 + n > len(data):
        raise PageCorrupt(f"{what} run past the end of the page")
    return pos + 4, pos + 4 + n


def _hybrid(data, pos: int, end: int, width: int, count) -> np.ndarray:
    """`count` values of the RLE / bit-packed hybrid encoding in data[pos:end]."""
    if not isinstance(count, int) or count < 0:
        raise PageCorrupt(f"bad value count {count!r}")
    out = np.empty(count, dtype=np.int64)
    filled = 0
    view = memoryview(data)
    try:
        while filled < count:
            if pos >= end:
                raise PageCorrupt(f"the levels end after {filled} of {count} values")
            head, pos = _uvarint(view, pos)
            if head & 1:
                n = (head >> 1) * width
                bits = np.unpackbits(np.frombuffer(view[pos : pos + n], np.uint8), bitorder="little")
                if len(bits) != n * 8:
                    raise PageCorrupt("a bit-packed run runs past the levels")
                got = bits.reshape(-1, width) @ (1 << np.arange(width))
                take = min(len(got), count - filled)
                out[filled : filled + take] = got[:take]
                pos += n
            else:
                nbytes = (width + 7) // 8
                value = int.from_bytes(view[pos : pos + nbytes], "little")
                take = min(head >> 1, count - filled)
                out[filled : filled + take] = value
                pos += nbytes
            filled += take
    except IndexError:
        raise PageCorrupt("the levels are truncated") from None
    if pos > end:
        raise PageCorrupt("the levels run past their declared length")
    return out


def _uvarint(view: memoryview, pos: int) -> tuple[int, int]:
    try:
        return varint(view, pos, max_bytes=5)
    except ThriftError:
        raise PageCorrupt("a run header longer than 5 bytes") from None


def _plain_byte_arrays(data: bytes, pos: int, levels, max_def: int, rows: int) -> list[bytes | None]:
    if levels is not None and np.any((levels < 0) | (levels > max_def)):
        raise PageCorrupt(f"a definition level above the column's maximum {max_def}")
    defined = np.ones(rows, dtype=bool) if levels is None else levels == max_def
    out: list[bytes | None] = [None] * rows
    view = memoryview(data)
    for i in np.flatnonzero(defined).tolist():
        start, pos = _length_prefixed(data, pos, f"value {i}")
        out[i] = bytes(view[start:pos])
    if pos != len(data):
        raise PageCorrupt(f"{len(data) - pos} bytes after the page's last value")
    return out
