"""Per-task speed labels: pure arithmetic (`labels`) and the file `meta/speed_percentiles.jsonl` (`store`)."""

from robotempo.speed.labels import (
    MIN_DISTINCT_LENGTHS,
    SPARSE_TASK_BUCKET,
    SPEED_BUCKET_LABELS,
    SPEED_BUCKET_STEP,
    SPEED_PERCENTILES,
    bucket_episode_length,
    compute_percentiles_by_task,
    compute_task_percentiles,
    label_episodes,
)
from robotempo.speed.store import (
    SPEED_PERCENTILES_FILE,
    MetadataView,
    PercentileRow,
    PercentilesFile,
    SpeedPercentiles,
    SpeedPopulation,
    Warner,
    cache_file_for,
    load_or_compute_percentiles,
    read_percentiles_file,
    write_percentiles_file,
)

__all__ = [
    "MIN_DISTINCT_LENGTHS",
    "SPARSE_TASK_BUCKET",
    "SPEED_BUCKET_LABELS",
    "SPEED_BUCKET_STEP",
    "SPEED_PERCENTILES",
    "SPEED_PERCENTILES_FILE",
    "MetadataView",
    "PercentileRow",
    "PercentilesFile",
    "SpeedPercentiles",
    "SpeedPopulation",
    "Warner",
    "bucket_episode_length",
    "cache_file_for",
    "compute_percentiles_by_task",
    "compute_task_percentiles",
    "label_episodes",
    "load_or_compute_percentiles",
    "read_percentiles_file",
    "write_percentiles_file",
]
