"""`BlockFile`: a seekable file object over a random-access store file, for FFmpeg (PyAV) to read."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import pyarrow as pa

from robotempo.env import env_int
from robotempo.fs.store import classify

BLOCK_KB_ENV = "ROBOTEMPO_REMOTE_BLOCK_KB"
BLOCKS_ENV = "ROBOTEMPO_REMOTE_BLOCKS"
DEFAULT_BLOCK_KB = 64
DEFAULT_BLOCKS = 128


class BlockFile(io.RawIOBase):
    """A read-only, seekable file object over a random-access store file, fetched in aligned blocks.

    FFmpeg reads in small pieces (32 KB) and seeks back and forth around keyframes. A read fetches its
    missing blocks in one ranged request; reads that continue where the previous one ended (the MP4 index
    at open, a long forward decode) double a read-ahead up to half the cache, so a sequential stretch costs
    a logarithmic number of requests, while a random seek fetches one small block (a training sample's
    cluster, not megabytes around it). The last `ROBOTEMPO_REMOTE_BLOCKS` blocks (default 128 of
    `ROBOTEMPO_REMOTE_BLOCK_KB`, default 64 KB: 8 MB per open file) are kept.
    """

    def __init__(
        self,
        source: pa.NativeFile,
        name: Path | str,
        block_size: int | None = None,
        blocks: int | None = None,
    ):
        super().__init__()
        self._source = source
        self.name = str(name)
        self._size = source.size()
        self._block = block_size or env_int(BLOCK_KB_ENV, DEFAULT_BLOCK_KB) * 1024
        self._max_blocks = blocks or env_int(BLOCKS_ENV, DEFAULT_BLOCKS)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self._last_end = -1  # where the previous read ended
        self._ahead = 1  # blocks a missing read fetches from its first block on

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"unsupported whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        first, last = self._pos // self._block, (end - 1) // self._block
        sequential = self._pos == self._last_end
        self._ahead = min(self._ahead * 2, max(1, self._max_blocks // 2)) if sequential else 1
        missing = [b for b in range(first, last + 1) if b not in self._blocks]
        if missing:
            stop = min(max(last, first + self._ahead - 1), (self._size - 1) // self._block)
            self._fetch(missing[0], stop)
        parts = []
        for b in range(first, last + 1):
            data = self._blocks[b]
            self._blocks.move_to_end(b)
            lo = max(self._pos - b * self._block, 0)
            hi = min(end - b * self._block, len(data))
            parts.append(data[lo:hi])
        out = b"".join(parts) if len(parts) > 1 else parts[0]
        self._pos += len(out)
        self._last_end = self._pos
        while len(self._blocks) > max(self._max_blocks, last - first + 1):
            self._blocks.popitem(last=False)
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _fetch(self, first: int, last: int) -> None:
        """Blocks `first..last` in one ranged read (a round trip costs more than re-reading a few cached
        blocks among them)."""
        lo = first * self._block
        hi = min((last + 1) * self._block, self._size)
        try:
            data = self._source.read_at(hi - lo, lo)
        except OSError as e:
            raise classify(e, self.name) from None
        for b in range(first, last + 1):
            at = (b - first) * self._block
            self._blocks[b] = data[at : at + self._block]

    def close(self) -> None:
        if not self.closed:
            self._blocks.clear()
            self._source.close()
        super().close()
