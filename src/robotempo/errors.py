"""Typed exceptions. Every message names the file (and line, where there is one), the bad value and the fix.

This module imports nothing from the package so any layer may raise these.
"""

from __future__ import annotations

from pathlib import Path


class RobotempoError(Exception):
    """Base class of every error robotempo raises on purpose."""


class DatasetFormatError(RobotempoError, ValueError):
    """A file of the dataset does not follow the LeRobot format (bad JSON, missing key, wrong type...)."""

    def __init__(self, path: str | Path, problem: str, fix: str, line: int | None = None):
        """`path`: the file (a local path, or the URL of an object in a store)."""
        self.path = path if isinstance(path, str) and "://" in path else Path(path)  # URLs stay URLs
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}. Fix: {fix}")


class MissingFileError(DatasetFormatError, FileNotFoundError):
    """A file the metadata promises is absent."""

    def __init__(self, path: str | Path, what: str, fix: str):
        super().__init__(path, f"{what} does not exist", fix)


class UnsupportedVersionError(DatasetFormatError):
    """`codebase_version` is not one robotempo reads."""


class RowAlignmentError(DatasetFormatError):
    """The rows read from a data file are not the episodes/lengths the metadata promised."""


class SelectionError(RobotempoError, ValueError):
    """Bad `episodes=` / `excluded_episodes=` arguments."""


class DeltaTimestampsError(RobotempoError, ValueError):
    """Bad `delta_timestamps` (unknown key, offset off the frame grid)."""


class TimestampError(DatasetFormatError):
    """Frame timestamps in the data are inconsistent with `fps`."""


class FrameTimestampError(RobotempoError, ValueError):
    """No decoded video frame lies within `tolerance_s` of a query time."""


class VideoDecodeError(DatasetFormatError):
    """A video file is missing, unreadable, too short, or uses a codec the local FFmpeg cannot decode."""


class SpeedLabelError(DatasetFormatError):
    """`meta/speed_percentiles.jsonl` is malformed."""


class SpeedSettingError(RobotempoError, ValueError):
    """An evaluation-time `speed` setting that is not an int in [0, 100], multiple of the bucket step."""


class WriterError(RobotempoError, ValueError):
    """Bad input to the dataset writer."""


class ConfigError(RobotempoError, ValueError):
    """A robotempo setting (environment variable or argument) has a value robotempo cannot use."""


class StorageError(RobotempoError, OSError):
    """An object store refused or failed a request (denied credentials, unknown bucket, unreachable endpoint).

    The message names the URL and what to change; transient faults were already retried before this is raised.
    """

    def __init__(self, url: str, problem: str, fix: str):
        self.url = url
        self.problem = problem
        self.fix = fix
        super().__init__(f"{url}: {problem}. Fix: {fix}")


class MixtureError(RobotempoError, ValueError):
    """Datasets, weights or key maps given to `Mixture` that cannot make one consistent mixture."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}")


class SamplerError(RobotempoError, ValueError):
    """Bad `Sampler` arguments, or a saved sampler state that does not fit the sampler it is loaded into."""


class SplitError(RobotempoError, ValueError):
    """Bad `split_episodes` arguments (fraction, seed, a dataset with too few episodes to split)."""
