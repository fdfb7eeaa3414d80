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
) -> SpeedPercentiles:
    table = meta.episodes

    def population() -> SpeedPopulation:
        return SpeedPopulation(
            episode_index=table.episode_index,
            length=table.length,
            task_index=episode_task_index(meta.location, table, progress=progress, tasks=meta.tasks),
        )

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
    return dataset_percentiles(meta, cache_dir=cache_dir).labels(task_index, selected.length)
