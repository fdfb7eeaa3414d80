"""Embedded images read page by page through the parquet page index (store/pages.py, store/heavy.py): the same
bytes as pyarrow's row-group read on real files, a fallback for every layout the page reader does not handle,
and a typed error (never other pixels) for a damaged page or page index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from robotempo.dataset import LeRobotDataset
from robotempo.errors import DatasetFormatError
from robotempo.fs import as_file
from robotempo.store.heavy import HeavyCache, read_group_rows
from robotempo.store.pages import chunk_pages, offset_indexes
from robotempo.store.parquet import leaf_index, open_parquet
from robotempo.synth import CAMERA_KEY, decode_frame_identity, write_synthetic

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def image_dataset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param.replace(".", "")) / "ds"
    return write_synthetic(
        root, version=request.param, n_episodes=4, n_tasks=2, camera="image", image_size=(64, 64),
        fps=10, seed=5, mean_length=30.0, state_dim=4, action_dim=3,
    )  # fmt: skip


def _pyarrow_bytes(path, key: str) -> list:
    pf = pq.ParquetFile(path)
    cells = [
        c for g in range(pf.num_row_groups) for c in pf.read_row_group(g, columns=[key]).column(0).to_pylist()
    ]
    return [c["bytes"] if c else None for c in cells]


def test_a_cache_with_room_keeps_whole_columns_then_reads_pages(tmp_path):
    path = _write(tmp_path / "t.parquet", _image_table(np.random.default_rng(4), nulls=False))
    pf, ref = open_parquet(path), as_file(path)
    chunk = pf.metadata.row_group(0).column(0).total_compressed_size
    cache = HeavyCache(int(chunk * 1.5 * 8 / 7))  # room for one row group's column, not two
    for group in (0, 1):
        read_group_rows(cache, ("f", 0), pf, ref, group, "cam", np.array([3]), True)
    kinds = [(len(k), k[1]) for k in cache._lru.get().items]
    assert kinds == [(3, 0), (4, 1)]  # group 0 whole while there was room, then group 1's page
    pf.close()


def test_columns_kept_in_the_cache_live_outside_arrows_default_pool(image_dataset):
    """mimalloc, pyarrow's default pool, kept the pages of each read's temporaries beside the kept columns
    (~40 MB more per DataLoader worker on P9's mixture): kept columns are copied to the system allocator."""
    ds = LeRobotDataset("t", root=image_dataset, speed_labels=False, heavy_cache_mb=64)
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    items = [ds[i][CAMERA_KEY] for i in range(len(ds))]
    cache = ds.frames.heavy_cache
    assert _cache_kinds(cache) == {"column"} and cache.nbytes > 100_000
    grown = pool.bytes_allocated() - before
    assert grown < cache.nbytes / 20, (grown, cache.nbytes)
    again = LeRobotDataset("t", root=image_dataset, speed_labels=False, heavy_cache_mb=0.05)
    assert all(torch.equal(a, again[i][CAMERA_KEY]) for i, a in enumerate(items))  # the page path agrees


def test_a_files_page_index_is_parsed_once_whatever_the_cache_budget(tmp_path, monkeypatch):
    """The file-level table of OffsetIndex locations (96 B per column chunk: 4.3 MB for a file of 5,000
    image episodes) once sat in the cache's small index LRU, where the page plans pushed it out: with a
    small budget, every item re-parsed the footer in Python (1.5 s each for that file). It lives with the
    open handle now."""
    from robotempo.store import pages

    calls = []
    parse = pages.offset_indexes
    monkeypatch.setattr(pages, "offset_indexes", lambda source: calls.append(1) or parse(source))
    root = write_synthetic(
        tmp_path / "ds", version="v3.0", n_episodes=24, n_tasks=2, camera="image", image_size=(64, 64),
        fps=10, seed=6, mean_length=30.0, state_dim=4, action_dim=3,
    )  # fmt: skip
    ds = LeRobotDataset("p", root=root, heavy_cache_mb=0.05, speed_labels=False)  # index LRU: 6 KB
    for i in np.random.default_rng(0).permutation(len(ds))[:80].tolist():
        ds[i]
    assert "page" in _cache_kinds(ds.frames.heavy_cache)  # the page path ran
    assert len(calls) == len({p for p in (root / "data").rglob("*.parquet")}), len(calls)


def _cache_kinds(cache: HeavyCache) -> set[str]:
    """'page' / 'column' entries held by a cache (a page key ends with the page number)."""
    kinds = set()
    for key in cache._lru.get().items:
        if len(key) == 4 and isinstance(key[3], int):
            kinds.add("page")
        elif len(key) == 3:
            kinds.add("column")
    return kinds


def test_writer_makes_small_pages_and_a_page_index(image_dataset):
    for path in sorted((image_dataset / "data").rglob("*.parquet")):
        pf = open_parquet(path)
        leaf = leaf_index(pf, f"{CAMERA_KEY}.bytes")
        index = offset_indexes(pf.source)
        for g in range(pf.metadata.num_row_groups):
            chunk = pf.metadata.row_group(g).column(leaf)
            span = (chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size)
            pages = chunk_pages(
                pf.source, index.locations[(g, leaf)], pf.metadata.row_group(g).num_rows, span
            )
            assert len(pages.offsets) >= 4  # several pages per row group: the page path has something to skip
            assert pages.sizes.max() < 0.5 * chunk.total_compressed_size
        pf.close()


def test_items_read_page_by_page_equal_the_row_group_read(image_dataset):
    # a cache smaller than one row group's column: while a cache has room, whole columns are read and kept
    by_page = LeRobotDataset("t", root=image_dataset, speed_labels=False, heavy_cache_mb=0.05)
    by_group = LeRobotDataset("t", root=image_dataset, speed_labels=False, heavy_cache_mb=64)
    n = len(by_page)
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    singles = {int(i): by_page[int(i)][CAMERA_KEY] for i in order}  # one row at a time: pages
    assert _cache_kinds(by_page.frames.heavy_cache) == {"page"}
    whole = by_group.__getitems__(list(range(n)))  # every row of every group at once: whole columns
    assert _cache_kinds(by_group.frames.heavy_cache) == {"column"}
    for i in range(n):
        assert torch.equal(singles[i], whole[i][CAMERA_KEY]), i
        frame = (singles[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        assert decode_frame_identity(frame)[:2] == (
            int(whole[i]["episode_index"]),
            int(whole[i]["frame_index"]),
        )
    # the raw bytes, against pyarrow reading the files on its own
    served = by_page.frames.read_heavy(CAMERA_KEY, order)
    assert [served[j] for j in np.argsort(order)] == _expected_bytes(by_page)


def _expected_bytes(ds) -> list:
    """Every table row's image bytes, read by pyarrow from the row's file on its own."""
    f, files, out = ds.frames, {}, []
    for row in range(f.num_rows):
        e = int(f.episode_of(np.array([row]))[0])
        path = Path(f.root) / f.episodes.data_files[int(f.episodes.data_file[e])]
        if path not in files:
            files[path] = _pyarrow_bytes(path, CAMERA_KEY)
        out.append(files[path][int(f.row_from[e] + row - f.ep_from[e])])
    return out


def _write(path, table, **options):
    defaults = dict(compression="snappy", use_dictionary=False, write_page_index=True, write_batch_size=1,
                    data_page_size=2048, write_page_checksum=True)  # fmt: skip
    pq.write_table(table, path, row_group_size=40, **{**defaults, **options})
    return path


def _image_table(rng, n=100, nulls=True) -> pa.Table:
    cells = []
    for i in range(n):
        blob = rng.bytes(int(rng.integers(0, 3000)))
        if nulls and i % 7 == 3:
            cells.append(None)  # a null struct
        elif nulls and i % 11 == 5:
            cells.append({"bytes": None, "path": f"img_{i}.png"})  # a null leaf in a present struct
        else:
            cells.append({"bytes": blob, "path": None})
    return pa.table({"cam": pa.array(cells, IMAGE), "n": pa.array(np.arange(n))})


def _read_each_row(path) -> tuple[list, HeavyCache]:
    pf, cache = open_parquet(path), HeavyCache(20_000)  # full after a page or two: pages are read
    ref, offsets = (
        as_file(path),
        np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]),
    )
    out = []
    for row in range(pf.metadata.num_rows):
        g = int(np.searchsorted(offsets, row, side="right") - 1)
        out += read_group_rows(cache, ("f", 0), pf, ref, g, "cam", np.array([row - offsets[g]]), True)
    pf.close()
    return out, cache


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression": "zstd"},
        {"compression": "gzip"},
        {"compression": "none"},
        {"compression": "lz4"},
        {"data_page_version": "2.0"},
        {"data_page_version": "2.0", "compression": "zstd"},
        {"write_page_checksum": False},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "snappy-v1",
)
def test_page_reader_equals_pyarrow_with_nulls_codecs_and_page_versions(tmp_path, options):
    path = _write(tmp_path / "t.parquet", _image_table(np.random.default_rng(1)), **options)
    served, cache = _read_each_row(path)
    assert served == _pyarrow_bytes(path, "cam")
    assert _cache_kinds(cache) == {"page"}


@pytest.mark.parametrize(
    "options",
    [
        {"write_page_index": False},  # where the pages are is unknown without reading every header
        {"use_dictionary": True, "data_page_size": 1 << 20},  # what LeRobot's and OpenTau's writers make
        {"write_batch_size": None, "data_page_size": 1 << 20},  # one page per row group
    ],
    ids=["no-index", "dictionary", "one-page"],
)
def test_layouts_without_a_cheaper_page_read_use_the_row_group(tmp_path, options):
    """Files as other writers make them (and a cache with room) read the row group's whole column."""
    path = _write(tmp_path / "t.parquet", _image_table(np.random.default_rng(2)), **options)
    served, cache = _read_each_row(path)
    assert served == _pyarrow_bytes(path, "cam")
    assert _cache_kinds(cache) == {"column"}


def _image_pages(path):
    pf = open_parquet(path)
    leaf = leaf_index(pf, f"{CAMERA_KEY}.bytes")
    location = offset_indexes(pf.source).locations[(0, leaf)]
    chunk = pf.metadata.row_group(0).column(leaf)
    span = (chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size)
    pages = chunk_pages(pf.source, location, pf.metadata.row_group(0).num_rows, span)
    pf.close()
    return location, pages


def _flip(path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    return original


def test_damaged_pages_and_page_index_never_serve_other_bytes(image_dataset, tmp_path):
    """Every byte of one image page's header, a sample of its body and every byte of the chunk's page
    index, flipped in turn: each read of every row, page by page, serves the written bytes or raises a typed
    error. (pyarrow's own row-group read checks the body's checksum but not the header.)"""
    source = sorted((image_dataset / "data").rglob("*.parquet"))[0]
    path = tmp_path / "d.parquet"
    path.write_bytes(source.read_bytes())
    expected = _pyarrow_bytes(path, CAMERA_KEY)
    (index_at, index_len), pages = _image_pages(path)
    page, size = int(pages.offsets[1]), int(pages.sizes[1])
    rng = np.random.default_rng(3)
    spots = [*range(page, page + 24), *rng.integers(page + 24, page + size, 12).tolist()]
    spots += rng.choice(np.arange(index_at, index_at + index_len), 24, replace=False).tolist()
    errors = 0
    for spot in spots:
        original = _flip(path, spot)
        pf, cache, ref = open_parquet(path), HeavyCache(20_000), as_file(path)
        for row in range(int(pages.first_rows[3])):  # the rows of the first three pages
            try:
                got = read_group_rows(cache, ("f", spot), pf, ref, 0, CAMERA_KEY, np.array([row]), True)
            except DatasetFormatError as e:
                assert str(path) in str(e)
                errors += 1
                continue
            assert got == [expected[row]], (spot, row)
        pf.close()
        path.write_bytes(original)
    assert errors  # the body's flips are caught by the page checksum


def test_a_damaged_image_page_is_a_typed_error_through_the_dataset(image_dataset, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(image_dataset, root)
    path = sorted((root / "data").rglob("*.parquet"))[0]
    _, pages = _image_pages(path)
    _flip(path, int(pages.offsets[2] + pages.sizes[2] // 2))
    ds = LeRobotDataset("t", root=root, speed_labels=False, heavy_cache_mb=0.05)
    row = int(pages.first_rows[2])  # episode 0 is the first rows of the first file
    with pytest.raises(DatasetFormatError, match="checksum|CRC"):
        ds[row]
    with pytest.raises(DatasetFormatError, match="checksum|CRC"):
        ds.__getitems__(list(range(int(ds.frames.ep_to[0]))))  # the whole row group
