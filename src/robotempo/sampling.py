"""`Sampler`: the order of a dataset or a `Mixture` as a pure function of (seed, epoch, global position).

An epoch is a sequence of `num_samples` global positions. Position `p` of epoch `e` holds one index, computed
on demand from (seed, e, p) by keyed bijections (`robotempo.permutation`): nothing is materialised, no global
random state is read, and every rank computes the same order without talking to the others.

How a position becomes an index:

1. Slots. Each dataset `d` of a mixture gets exactly `count[d]` slots per epoch: the largest-remainder
   apportionment of `num_samples` by the weights (ties to the lower dataset index; a zero weight gets none;
   a positive weight that would get none is a `SamplerError`). With `weights=None` the counts are the dataset
   lengths. Slots are laid out dataset after dataset; position `p` maps to slot `outer(p)`, where `outer` is
   a keyed permutation of [0, num_samples) (`shuffle=True`), a locality-preserving one
   (`shuffle="locality"`), or the identity (`shuffle=False`).
2. Frames. Dataset `d` serves its slots from an endless stream of cycles over its frames, continued across
   epochs: slot `j` of epoch `e` is stream position `e * count[d] + j`, i.e. cycle `k`, offset `r`. A cycle
   is a keyed permutation of the dataset's frames (the identity when each epoch holds whole cycles, since
   `outer` already shuffles). So after E epochs every frame of dataset `d` has been drawn
   floor(E * count[d] / len[d]) or ceil(...) times, whether the dataset is drawn more (cycling) or less
   (a different subset each epoch) than its length.

Ranks. Positions are dealt round-robin: rank `r` of `W` serves positions `start + r + W * i`. A step in which
every rank takes a batch of B therefore consumes the contiguous global positions [g, g + B * W), which is what
makes an elastic resume exact. A pass from position `start` gives every rank `ceil((num_samples - start) / W)`
indices; positions past the end of the epoch wrap to its first positions (like `DistributedSampler` with
`drop_last=False`): at most W - 1 indices repeat per pass, and they are the epoch's first ones.

Ranks agree. A Sampler that takes its rank from a live process group (rank and world_size left None) checks
once, at construction, that it was built over the same datasets and settings as rank 0's: it posts its
fingerprint to the group's key-value store and compares it with rank 0's (rank 0 only posts). Ranks that
opened a dataset on either side of an append, or a node with another manifest, would otherwise serve
overlapping positions and different numbers of batches (a DDP job then blocks in its next collective);
they get a `SamplerError` naming the dataset. Build such a Sampler on every rank, in the same order; pass
rank= and world_size= to build one alone.

Resume. `state_dict(consumed=n)` records the global position `start + n * W` (all ranks consume in lockstep,
so any rank's state is the job's state). A sampler with any other world size, after `load_state_dict`, serves
exactly the positions from there on: nothing lost, nothing repeated except the wrap of its own last round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
import time
from collections.abc import Iterator, Sized

import numpy as np
import torch

from robotempo.distributed import default_store, process_info
from robotempo.errors import SamplerError
from robotempo.hashing import GOLDEN, derive_key
from robotempo.permutation import locality_permute, permute

logger = logging.getLogger(__name__)

STATE_FORMAT = "robotempo.Sampler/1"
_CHUNK = 4096  # positions per vectorised call: amortises numpy call overhead; buffers stay < 1 MB
_OUTER, _INNER = 1, 2  # key domains


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder apportionment of `total` by non-negative `weights` (ties to the lower index)."""
    quota = weights / weights.sum() * total
    counts = np.floor(quota).astype(np.int64)
    remainder = np.where(weights > 0, quota - counts, -np.inf)
    order = np.lexsort((np.arange(len(weights)), -remainder))
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def _sources(dataset: Sized) -> tuple[np.ndarray, np.ndarray | None]:
    """(lengths per source dataset, weights or None) of a Mixture (duck-typed) or a plain dataset."""
    if hasattr(dataset, "dataset_lengths") and hasattr(dataset, "offsets"):
        lengths = np.asarray(dataset.dataset_lengths, dtype=np.int64)
        weights = getattr(dataset, "weights", None)
        return lengths, None if weights is None else np.asarray(weights, dtype=np.float64)
    return np.asarray([len(dataset)], dtype=np.int64), None


def _source_names(dataset: Sized) -> list[str] | None:
    """What tells the sources of an order apart beyond their lengths: each source dataset's name and a digest
    of its selected episodes (a Mixture's `names` and `datasets`, a dataset's `repo_id` and `episodes`);
    None for a dataset that has neither."""
    parts = getattr(dataset, "datasets", None) if hasattr(dataset, "dataset_lengths") else [dataset]
    names = getattr(dataset, "names", None) if hasattr(dataset, "dataset_lengths") else None
    if parts is None:
        return None
    out = []
    for i, part in enumerate(parts):
        name = names[i] if names is not None else getattr(part, "repo_id", None)
        episodes = getattr(part, "episodes", None)
        if name is None or episodes is None:
            return None
        digest = hashlib.sha256(np.asarray(episodes, dtype=np.int64).tobytes()).hexdigest()[:16]
        out.append(f"{name}:{len(episodes)}:{digest}")
    return out


def _source_contents(dataset: Sized) -> list[str] | None:
    """A digest per source dataset of what its positions hold: each selected episode's length, and every
    resident column's values at its first and last frame. A dataset re-converted with its episodes in
    another order (same names, episode numbers and total frames) or with episodes swapped for others of the
    same total length maps the same positions onto other frames: a state saved before must not resume on it.
    None for a dataset without resident columns (any map-style dataset)."""
    parts = getattr(dataset, "datasets", None) if hasattr(dataset, "dataset_lengths") else [dataset]
    if parts is None:
        return None
    out = []
    for part in parts:
        frames = getattr(part, "frames", None)
        if frames is None or not hasattr(frames, "columns") or not hasattr(frames, "ep_from"):
            return None
        digest = hashlib.sha256(np.asarray(frames.ep_to - frames.ep_from, dtype=np.int64).tobytes())
        ends = np.concatenate([frames.ep_from, frames.ep_to - 1]).astype(np.int64)
        for name in sorted(frames.columns):
            column = frames.columns[name]
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(column[ends[(ends >= 0) & (ends < len(column))]]).tobytes())
        out.append(digest.hexdigest()[:16])
    return out


def _check_int(name: str, value, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SamplerError(f"{name} must be an int, got {value!r}")
    if low is not None and value < low:
        raise SamplerError(f"{name} must be >= {low}, got {value}")
    return int(value)


class Sampler(torch.utils.data.Sampler):
    """A resumable, rank-disjoint, elastic sampler for a map-style dataset or a `Mixture` (module docstring).

    Args:
        dataset: a `LeRobotDataset`, a `Mixture` (its `dataset_lengths`, `offsets` and `weights` are used), or
            any map-style dataset with `len()`.
        seed: the order is a pure function of (seed, epoch, position); every rank must pass the same seed.
        shuffle: True (keyed permutation of the epoch), False (positions in index order, dataset after
            dataset) or "locality" (runs of `block_size` consecutive frames, laid out in keyed order and
            shuffled within windows of `window` positions: a batch touches few row groups and video clusters).
        rank, world_size: this process's place in the job; None reads them from torch.distributed, else from
            the launcher's environment (RANK / WORLD_SIZE, SLURM_*), else a lone process.
        num_samples: positions per epoch; default the dataset's length (a mixture's: the sum of the lengths
            of its datasets of weight > 0).
        block_size: frames per block in `shuffle="locality"` (ignored otherwise).
        window: positions per shuffle window in `shuffle="locality"`; <= 1 keeps whole blocks in sequence.
            The defaults (32, 512) measured 2.5x full random's samples/s on a 332 MB PNG-in-parquet corpus
            read through a 64 MB image cache per process, at 17 distinct episodes per batch of 64 (full
            random: 54); P11 in docs/benchmarks.md. Larger windows shuffle better and read more.
    """

    def __init__(
        self,
        dataset: Sized,
        seed: int = 0,
        shuffle: bool | str = True,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        num_samples: int | None = None,
        block_size: int = 32,
        window: int = 512,
    ):
        self.dataset = dataset
        self.seed = _check_int("seed", seed)
        if isinstance(shuffle, np.bool_):
            shuffle = bool(shuffle)
        if not (isinstance(shuffle, bool) or (isinstance(shuffle, str) and shuffle == "locality")):
            # 0 == False: an int would pass `in (True, False)` and then be taken for a shuffled order
            raise SamplerError(f"shuffle must be True, False or 'locality', got {shuffle!r}")
        self.shuffle = shuffle
        self.block_size = _check_int("block_size", block_size, 1)
        self.window = _check_int("window", window, 0)
        from_group = rank is None and world_size is None
        info = process_info() if rank is None or world_size is None else None
        self.world_size = _check_int("world_size", info.world_size if world_size is None else world_size, 1)
        self.rank = _check_int("rank", info.rank if rank is None else rank, 0)
        if self.rank >= self.world_size:
            raise SamplerError(f"rank {self.rank} is out of range for world_size {self.world_size}")
        self.lengths, weights = _sources(dataset)
        self._sources_names = _source_names(dataset)
        self._contents = _source_contents(dataset)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        total = int(self.offsets[-1])
        if num_samples is None and weights is not None:  # datasets of weight 0 are never drawn: not counted
            total = int(self.lengths[np.asarray(weights) > 0].sum()) or total
        self.num_samples = total if num_samples is None else _check_int("num_samples", num_samples, 1)
        self.counts = self._counts(weights)
        self.slot_from = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._inner_key = derive_key(self.seed, _INNER)
        self.epoch = 0
        self._next_start = 0  # global position the next pass starts from (set by load_state_dict)
        self._pass: tuple[int, int] | None = None  # (start position, length) of the current pass
        self._chunk: tuple[int, Iterator[int]] | None = None  # (positions up to its end, its iterator)
        if from_group and self.world_size > 1:
            self._check_same_as_rank_zero()

    def _counts(self, weights: np.ndarray | None) -> np.ndarray:
        if self.offsets[-1] == 0:
            raise SamplerError(f"cannot sample from an empty dataset (lengths {self.lengths.tolist()})")
        if weights is None:
            weights = self.lengths.astype(np.float64)
        if len(weights) != len(self.lengths) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise SamplerError(
                f"mixture weights must be {len(self.lengths)} finite non-negative numbers, "
                f"got {weights.tolist()}"
            )
        if weights.sum() <= 0:
            raise SamplerError(f"mixture weights sum to 0 ({weights.tolist()}); give some dataset a weight")
        total = int(self.offsets[-1])
        proportional = np.allclose(weights / weights.sum() * total, self.lengths, rtol=0, atol=1e-3)
        if proportional and self.num_samples == total:
            return self.lengths.copy()  # every frame once per epoch, exactly
        counts = apportion(weights, self.num_samples)
        starved = np.flatnonzero((weights > 0) & ((counts == 0) | (self.lengths == 0)))
        if starved.size:
            d = int(starved[0])
            # enough for every weighted dataset at once, not only the first one named
            need = max(math.ceil(weights.sum() / weights[i]) for i in np.flatnonzero(weights > 0).tolist())
            more = f" (and {starved.size - 1} more)" if starved.size > 1 else ""
            raise SamplerError(
                f"dataset {d} of the mixture (length {int(self.lengths[d])}, weight {weights[d]:.3g}){more} "
                f"would never be sampled with num_samples={self.num_samples}; raise num_samples to at least "
                f"{need} or give such datasets weight 0"
            )
        return counts

    # -- epochs and passes -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (also on the dataset, for its seeded speed-label dropout).

        Setting the epoch a loaded state is in keeps that state's position, so the usual
        `for epoch in range(start, n): sampler.set_epoch(epoch)` loop resumes mid-epoch; any other epoch
        starts at position 0.
        """
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self._next_start, self._pass, self._chunk = 0, None, None
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def _pass_length(self, start: int) -> int:
        return max(0, -(-(self.num_samples - start) // self.world_size))

    def __len__(self) -> int:
        """Indices this rank's next pass yields (after a resume: the rest of the epoch, padded)."""
        return self._pass_length(self._next_start)

    def __iter__(self) -> Iterator[int]:
        """A pass from the position reached (a loaded state's, else 0). Every pass of the epoch starts there
        until one runs to its end: a pass left early (a peek at one batch) does not use up a resume."""
        return self._start_pass()

    def _start_pass(self) -> Iterator[int]:
        # A loaded position holds until a pass from it runs to its end (or another epoch is set): a pass
        # abandoned early, e.g. `next(iter(loader))` to see the shapes, must not spend the resume, or the
        # loop after it would serve the epoch's first positions again.
        start = self._next_start
        length = self._pass_length(start)
        token = self._pass = (start, length)
        self._chunk = None
        yield from self._serve(start, length, self.epoch)
        if self._pass is token:
            self._next_start = 0

    def _serve(self, start: int, length: int, epoch: int) -> Iterator[int]:
        for lo in range(0, length, _CHUNK):
            step = np.arange(lo, min(length, lo + _CHUNK), dtype=np.int64)
            positions = (start + self.rank + self.world_size * step) % self.num_samples
            chunk = iter(self.indices(positions, epoch).tolist())
            self._chunk = (lo + len(step), chunk)
            yield from chunk

    def _yielded(self) -> int:
        if self._chunk is None:
            return 0
        end, chunk = self._chunk
        return end - operator.length_hint(chunk)

    # -- the order ---------------------------------------------------------------------------------------
    def indices(self, positions, epoch: int) -> np.ndarray:
        """The indices at global `positions` (ints in [0, num_samples)) of `epoch`: the whole order, pure."""
        p = np.asarray(positions, dtype=np.int64)
        slots = self._outer(p, epoch)
        if len(self.counts) == 1:
            d = np.zeros(len(p), dtype=np.int64)
        else:
            d = np.searchsorted(self.slot_from, slots, side="right") - 1
        stream = epoch * self.counts[d] + slots - self.slot_from[d]
        length = self.lengths[d]
        cycle, offset = np.divmod(stream, length)
        local = offset.copy()
        reshuffle = (self.counts[d] % length != 0) & (self.shuffle is not False)
        if reshuffle.any():
            at = np.flatnonzero(reshuffle)
            local[at] = self._cycles(offset[at], length[at], d[at], cycle[at])
        return self.offsets[d] + local

    def _cycles(self, offset: np.ndarray, length: np.ndarray, d: np.ndarray, cycle: np.ndarray) -> np.ndarray:
        """`offset` through the keyed permutation of its own (dataset, cycle), all in one vectorised call."""
        with np.errstate(over="ignore"):  # one hash of (d, cycle): d * GOLDEN + cycle, wrapping
            pair = d.astype(np.uint64) * GOLDEN + cycle.astype(np.uint64)
        distinct, group = np.unique(pair, return_inverse=True)  # a chunk holds few distinct pairs
        key = derive_key(self._inner_key, distinct)[group.reshape(-1)]
        if self.shuffle == "locality":
            return locality_permute(offset, length, self.block_size, 0, key)
        return permute(offset, length, key)

    def _outer(self, p: np.ndarray, epoch: int) -> np.ndarray:
        if self.shuffle is False:
            return p
        key = derive_key(self.seed, _OUTER, epoch)
        if self.shuffle == "locality":
            return locality_permute(p, self.num_samples, self.block_size, self.window, key)
        return permute(p, self.num_samples, key)

    def _check_same_as_rank_zero(self) -> None:
        """Compare this sampler's fingerprint with rank 0's through the process group's store (module
        docstring, "Ranks agree"). Each process's n-th group-built Sampler is compared with rank 0's n-th."""
        global _GROUP_SAMPLERS
        store = default_store()
        if store is None:
            return
        key = f"robotempo/sampler/{_GROUP_SAMPLERS}"
        _GROUP_SAMPLERS += 1
        mine = self._fingerprint()
        if self.rank == 0:
            store.set(key, json.dumps(mine))
            return
        waited = time.monotonic()
        try:
            store.wait([key], _timedelta(RANK_CHECK_TIMEOUT_S))
            theirs = json.loads(store.get(key))
            if store.add(f"{key}/read", 1) == self.world_size - 1:  # the last reader: keep the store small
                store.delete_key(key)
                store.delete_key(f"{key}/read")
        except (RuntimeError, ValueError) as e:  # the store's timeout is a RuntimeError (DistStoreError)
            raise SamplerError(
                f"rank {self.rank}: rank 0 built no Sampler from the process group within "
                f"{time.monotonic() - waited:.0f} s ({type(e).__name__}: {e}). Fix: build the Sampler on "
                "every rank in the same order, or pass rank= and world_size= to build one on some ranks only"
            ) from None
        differs = _mismatch(theirs, mine, theirs.get("sources") or self._sources_names, _RANKS)
        if differs is not None:
            raise SamplerError(
                f"rank {self.rank}'s Sampler differs from rank 0's in {differs}. The ranks opened different "
                "data (a dataset changed between their opens: episodes appended while the job started?), "
                "their dataset lists or settings differ, or rank 0 built a Sampler from the process group "
                "that this rank did not (each rank's n-th is compared with rank 0's n-th). Fix: give every "
                "rank the same datasets, selections, weights and sampler settings and build its Samplers in "
                "the same order; a Sampler on some ranks only (a validation pass on rank 0) takes rank= and "
                "world_size= (rank=0, world_size=1 serves it all); restart once no writer is appending"
            )

    # -- resumable state ---------------------------------------------------------------------------------
    def _fingerprint(self) -> dict:
        return {
            "dataset_lengths": self.lengths.tolist(),
            "num_samples": self.num_samples,
            "counts": self.counts.tolist(),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "block_size": self.block_size,
            "window": self.window,
            "sources": self._sources_names,
            "contents": self._contents,
        }

    def state_dict(self, consumed: int | None = None) -> dict:
        """JSON-serialisable state: epoch and the global position reached, plus what the order depends on.

        Args:
            consumed: how many indices of the current pass this rank's training loop has actually used (e.g.
                batches consumed x batch size since `iter(loader)`). A DataLoader runs ahead of the loop
                (prefetching), so pass this when saving from a training loop; None means every index the
                iterator has yielded so far.
        """
        if self._pass is None:
            if consumed not in (None, 0):
                raise SamplerError(f"consumed={consumed!r} but no pass has started since the last set_epoch")
            position = self._next_start
        else:
            start, length = self._pass
            used = self._yielded() if consumed is None else _check_int("consumed", consumed, 0)
            if used > length:
                raise SamplerError(
                    f"consumed={used} exceeds the {length} indices of this rank's pass; count the samples "
                    "this rank's loop used since iter(loader)"
                )
            position = min(self.num_samples, start + used * self.world_size)
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "position": position,
            "world_size": self.world_size,
            **self._fingerprint(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (saved with any world size): the next `iter()` starts at its position."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise SamplerError(f"not a robotempo Sampler state (format {got!r}, expected {STATE_FORMAT!r})")
        mine = self._fingerprint()
        for name in ("sources", "contents"):  # a state saved before they were recorded has no such field
            if name not in state:
                del mine[name]
        differs = _mismatch(state, mine, state.get("sources") or self._sources_names)
        if differs is not None and differs.startswith("contents"):
            raise SamplerError(
                f"the saved sampler state was made on other data: {differs}. The dataset's episodes were "
                "rewritten since (re-converted in another order, episodes deleted and others added, frames "
                "edited), so the state's positions would now serve other frames: some twice, some never. "
                "Fix: resume on the data the state was saved on, or start this epoch afresh without the state"
            )
        if differs is not None:
            raise SamplerError(
                f"the saved sampler state differs from this sampler in {differs}; resume with the same "
                "dataset selection, mixture weights, num_samples, seed and shuffle settings, or start a "
                "fresh epoch without the state"
            )
        epoch = _check_int("state epoch", state.get("epoch"), 0)
        position = _check_int("state position", state.get("position"), 0)
        if position > self.num_samples:
            raise SamplerError(f"state position {position} is past the epoch's {self.num_samples} samples")
        self.set_epoch(epoch)
        self._next_start, self._pass, self._chunk = position, None, None
        logger.info(
            "sampler resumed at epoch %d position %d/%d (saved by %s ranks, now %d)",
            epoch,
            position,
            self.num_samples,
            state.get("world_size"),
            self.world_size,
        )


_RANKS = ("rank 0 has", "this rank")
RANK_CHECK_TIMEOUT_S = 600.0  # how long a rank waits for rank 0's Sampler ("Ranks agree")
_GROUP_SAMPLERS = 0  # Samplers this process built from the process group: the key of the next one's check


def _timedelta(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _mismatch(other: dict, mine: dict, sources: list[str] | None, words=("saved", "now")) -> str | None:
    """`<field>: <difference>` for the first fingerprint field where `other` and `mine` differ, else None."""
    for name, value in mine.items():
        if other.get(name) != value:
            return f"{name}: {_difference(other.get(name), value, sources, words)}"
    return None


def _difference(saved, mine, sources: list[str] | None, words: tuple[str, str] = ("saved", "now")) -> str:
    """Where a saved per-dataset list and this sampler's differ: the first differing dataset, named, and how
    many differ (truncated whole lists of 30 datasets read the same)."""
    if not (isinstance(saved, list) and isinstance(mine, list)):
        return f"{words[0]} {_short(saved)}, {words[1]} {_short(mine)}"
    differ = [i for i in range(min(len(saved), len(mine))) if saved[i] != mine[i]]
    parts = []
    if len(saved) != len(mine):
        parts.append(f"{words[0]} for {len(saved)} datasets, {words[1]} {len(mine)}")
    if differ:
        i = differ[0]
        name = f" ({sources[i]})" if sources is not None and i < len(sources) else ""
        more = f", and {len(differ) - 1} more datasets differ" if len(differ) > 1 else ""
        parts.append(f"dataset {i}{name}: {words[0]} {_short(saved[i])}, {words[1]} {_short(mine[i])}{more}")
    elif len(saved) != len(mine):
        longer, extra = (saved, f"{words[0]} only") if len(saved) > len(mine) else (mine, f"{words[1]} only")
        parts.append(f"{extra}: {_short(longer[min(len(saved), len(mine)) :])}")
    return "; ".join(parts)
