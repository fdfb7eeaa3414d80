"""Speed labels of a dataset's selected episodes: the glue between the metadata, the frame data and the store.

The percentiles come from the whole dataset (every episode, membership by the frame data's `task_index`), so a
label never depends on which episodes a run selected. The whole-dataset read happens only when the percentile
file has to be computed; with the file present only metadata is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from robotempo.format import DatasetMeta, EpisodeTable
from robotempo.speed.store import MetadataView, SpeedPercentiles, SpeedPopulation, load_or_compute_percentiles
from robotempo.store.population import episode_task_index


def dataset_percentiles(
    meta: DatasetMeta,
    *,
    recompute: bool = False,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    task_index: np.ndarray | None = None,
) -> SpeedPercentiles:
    """The dataset's speed percentiles, read from its file, else computed (and written once).

    `task_index`, if given, is every episode's first-frame task already read from the frame data, in the
    order of `meta.episodes` (an open of every episode has it): computing then reads no data file again.
    """
    table = meta.episodes

    def population() -> SpeedPopulation:
        tasks = task_index
        if tasks is None:
            tasks = episode_task_index(meta.location, table, progress=progress, tasks=meta.tasks)
        return SpeedPopulation(episode_index=table.episode_index, length=table.length, task_index=tasks)

    view = MetadataView(episode_index=table.episode_index, length=table.length, task_index=table.task_index)
    return load_or_compute_percentiles(
        meta.location,
        meta.tasks,
        population,
        view,
        recompute=recompute,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
    )


def selected_speed_labels(
    meta: DatasetMeta, selected: EpisodeTable, task_index: np.ndarray, *, cache_dir: str | Path | None = None
) -> np.ndarray:
    """int64 label per selected episode; `task_index` is each selected episode's first frame's task."""
    whole = np.array_equal(selected.episode_index, meta.episodes.episode_index)
    percentiles = dataset_percentiles(meta, cache_dir=cache_dir, task_index=task_index if whole else None)
    return percentiles.labels(task_index, selected.length)
