"""Video frames at timestamps, for the dataset layer: one decode pass per file, several files in parallel.

`decode_frames` reads every frame one call needs from one file: it sorts the query times, groups them into
clusters (a new seek only where seeking is cheaper than decoding forward, see `robotempo.video.seek_plan`),
and per cluster makes one seek and one forward decode pass, converting to RGB only the frames it returns.
`VideoDecoderCache` keeps files open (and their decoder positions) between calls; `FrameFetcher` decodes
several files (cameras) in parallel threads, as PyAV releases the GIL while it decodes; `fetch_into` has
them write straight into the caller's arrays (the batch's final tensors), channels first.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from robotempo.env import node_sharers, process_cores
from robotempo.errors import FrameTimestampError
from robotempo.forksafe import ProcessLocal, singleton_lock
from robotempo.fs import FileRef
from robotempo.video.cache import VideoDecoderCache, cache_key
from robotempo.video.reader import VideoReader

__all__ = ["FrameFetcher", "VideoDecoderCache", "decode_frames", "default_fetcher"]

DEFAULT_TOLERANCE_S = 1e-4


def decode_frames(
    path: str | Path | FileRef,
    timestamps: np.ndarray | Sequence[float],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    cache: VideoDecoderCache | None = None,
) -> np.ndarray:
    """Frames of the video at `path` nearest to `timestamps` (seconds in the file; any order, repeats too).

    Returns uint8 `(N, H, W, 3)` RGB in the order of `timestamps`. A frame counts when its presentation time
    is within `tolerance_s` of the query, else `FrameTimestampError`; a missing, unreadable or too short
    file, or a codec the local FFmpeg cannot decode, raises `VideoDecodeError`. Without a `cache` the file
    is opened and closed within the call.
    """
    query = _as_query(path, timestamps, tolerance_s)
    if cache is None:
        reader = VideoReader(path)
        try:
            return reader.frames_at(query, tolerance_s)
        finally:
            reader.close()
    with cache.reader(path) as reader:
        return reader.frames_at(query, tolerance_s)


def _as_query(path: str | Path, timestamps: np.ndarray | Sequence[float], tolerance_s: float) -> np.ndarray:
    if not (isinstance(tolerance_s, (int, float)) and math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise FrameTimestampError(f"{path}: tolerance_s must be a finite number >= 0, got {tolerance_s!r}")
    query = np.asarray(timestamps, dtype=np.float64)
    if query.ndim != 1:
        raise FrameTimestampError(f"{path}: timestamps must be one-dimensional, got shape {query.shape}")
    return query


class FrameFetcher:
    """Decodes the frames of several files (e.g. one per camera) in a persistent pool of threads.

    Each request is `(path, timestamps)`; requests on the same file are merged into one decode pass. Fork- and
    pickle-safe like `VideoDecoderCache`: a child process starts its own threads and an empty cache.

    Args:
        max_workers: decode threads per process; None (default): `decode_threads()`, the process's share of
            the node's cores, decided in each process that decodes (1 decodes in the calling thread).
        cache_size: open files kept (`VideoDecoderCache`).
    """

    def __init__(self, max_workers: int | None = None, cache_size: int | None = None):
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"FrameFetcher max_workers must be a positive int, got {max_workers!r}")
        self.max_workers = max_workers  # None: `decode_threads()`, decided in each process that decodes
        self.cache = VideoDecoderCache(cache_size)
        self._pool: ProcessLocal[_Pool] = ProcessLocal(lambda: _Pool(self.max_workers or decode_threads()))

    def __getstate__(self) -> dict:
        return {"max_workers": self.max_workers, "cache_size": self.cache.max_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_workers"], state["cache_size"])  # type: ignore[misc]

    def __enter__(self) -> FrameFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads and close the cached files."""
        pool = self._pool.mine()
        if pool is not None:
            pool.shutdown()
        self.cache.clear()

    def fetch(
        self,
        requests: Sequence[tuple[str | Path | FileRef, np.ndarray]],
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> list[np.ndarray]:
        """One uint8 `(N_i, H, W, 3)` array per request, as `decode_frames` would return it."""
        groups: dict[str, list[int]] = {}
        queries = []
        for i, (path, timestamps) in enumerate(requests):
            queries.append(_as_query(path, timestamps, tolerance_s))
            groups.setdefault(cache_key(path), []).append(i)
        jobs = [(requests[members[0]][0], [queries[i] for i in members]) for members in groups.values()]
        threads = self._pool.get()
        if len(jobs) <= 1 or threads.max_workers == 1:
            decoded = [self._decode(path, parts, tolerance_s) for path, parts in jobs]
        else:
            pool = threads.executor()
            futures = [pool.submit(self._decode, path, parts, tolerance_s) for path, parts in jobs]
            decoded = _results_in_order(futures)
        results: list[np.ndarray] = [None] * len(requests)  # type: ignore[list-item]
        for members, arrays in zip(groups.values(), decoded):
            for i, array in zip(members, arrays):
                results[i] = array
        return results

    def fetch_into(
        self,
        requests: Sequence[tuple[str | Path | FileRef, np.ndarray, np.ndarray, np.ndarray]],
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        """Decode `(path, timestamps, out, rows)` requests in place: each frame into its `out[rows[i]]` as
        `VideoReader.frames_into` writes it ((3, H, W) RGB, uint8, or float32 in [0, 1]). Files are decoded in
        parallel; requests on the same file run one after another in one thread."""
        groups: dict[str, list[tuple]] = {}
        for path, timestamps, out, rows in requests:
            query = _as_query(path, timestamps, tolerance_s)
            groups.setdefault(cache_key(path), []).append((path, query, out, rows))
        jobs = list(groups.values())
        threads = self._pool.get()
        if len(jobs) <= 1 or threads.max_workers == 1:
            for parts in jobs:
                self._decode_into(parts, tolerance_s)
            return
        pool = threads.executor()
        _results_in_order([pool.submit(self._decode_into, parts, tolerance_s) for parts in jobs])

    def _decode_into(self, parts: list[tuple], tolerance_s: float) -> None:
        with self.cache.reader(parts[0][0]) as reader:
            for _, query, out, rows in parts:
                reader.frames_into(query, tolerance_s, out, rows)

    def _decode(self, path: str | Path, parts: list[np.ndarray], tolerance_s: float) -> list[np.ndarray]:
        if len(parts) == 1:
            return [decode_frames(path, parts[0], tolerance_s, self.cache)]
        frames = decode_frames(path, np.concatenate(parts), tolerance_s, self.cache)
        return np.split(frames, np.cumsum([len(p) for p in parts[:-1]]))


def decode_threads() -> int:
    """Decode threads of a `FrameFetcher` left to choose (`max_workers=None`), decided in the process that
    decodes: this process's share of the node's cores, from 1 to 4. The cores (this process's affinity mask)
    are shared by `LOCAL_WORLD_SIZE` ranks (torchrun's variable, 1 when unset) and, in a DataLoader worker, by
    the loader's `num_workers` workers: a worker whose share is one core decodes its files one after another.

    Measured (`benchmarks/bench_vla.py` corpora, 2 workers on 2 cores, batch 32, 3 cameras, float32): 1 thread
    per worker instead of 2 gave +3.3% samples per CPU-second and +4% samples/s on 224x224 AV1 (3 pairs), the
    threads' hand-offs and GIL switches being pure cost when the worker has no core of its own to give them
    (docs/benchmarks.md, "Decode threads per worker"). The mask is always divided among the node's ranks: in a
    container whose cpuset all ranks share that is their share; where a launcher pins each rank to cores of
    its own it undercounts, which costs only parallel wall time in workers that have cores to spare, never
    the CPU that too many threads cost."""
    return max(1, min(4, process_cores() // node_sharers()))


class _Pool:
    """A thread pool started on first use (a pool inherited through fork has no threads in the child)."""

    def __init__(self, max_workers: int):
        self.max_workers = max_workers
        self.lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="robotempo-video")
            return self.pool

    def shutdown(self) -> None:
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True)


_default_fetcher: FrameFetcher | None = None


def default_fetcher() -> FrameFetcher:
    """The process's one `FrameFetcher` (its threads and its cache of `ROBOTEMPO_VIDEO_CACHE_SIZE` open
    files), shared by every dataset opened without `video_cache_size`: the budget is per process, not per
    dataset."""
    global _default_fetcher
    if _default_fetcher is None:
        with singleton_lock():
            if _default_fetcher is None:
                _default_fetcher = FrameFetcher()
    return _default_fetcher


def _results_in_order(futures: list[Future]) -> list:
    """Every future's result; after all finished, the first failure (in request order) is raised."""
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]
