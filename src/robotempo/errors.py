"""Typed exceptions. Every message names the file (and line, where there is one), the bad value and the fix.

This module imports nothing from the package so any layer may raise these.

Every class can be rebuilt from its message alone (`cls(message)`) and pickles with all its attributes: a
DataLoader worker re-raises an error in the training loop as `type(error)(text)` with one string argument
(torch's `ExceptionWrapper.reraise`), and with these classes the loop gets the same typed exception with the
full message instead of a generic RuntimeError.
"""

from __future__ import annotations

from pathlib import Path


def _rebuild(cls: type, message: str, state: dict) -> RobotempoError:
    error = cls(message)
    error.__dict__.update(state)
    return error


class RobotempoError(Exception):
    """Base class of every error robotempo raises on purpose."""

    def __reduce__(self):
        return _rebuild, (type(self), str(self), self.__dict__)


class DatasetFormatError(RobotempoError, ValueError):
    """A file of the dataset does not follow the LeRobot format (bad JSON, missing key, wrong type...).

    `DatasetFormatError(path, problem, fix, line=None)`; `path` is the file (a local path, or the URL of an
    object in a store). `DatasetFormatError(message)` (one argument, as a DataLoader worker re-raises it)
    keeps the message and leaves `path`, `problem`, `fix` and `line` None.
    """

    def __init__(
        self, path: str | Path, problem: str | None = None, fix: str | None = None, line: int | None = None
    ):
        if problem is None:
            self.path = self.problem = self.fix = self.line = None
            super().__init__(str(path))
            return
        self.path = path if isinstance(path, str) and "://" in path else Path(path)  # URLs stay URLs
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}. Fix: {fix}")


class MissingFileError(DatasetFormatError, FileNotFoundError):
    """A file the metadata promises is absent."""

    def __init__(self, path: str | Path, what: str | None = None, fix: str | None = None):
        if what is None:
            super().__init__(path)
        else:
            super().__init__(path, f"{what} does not exist", fix)


class UnsupportedVersionError(DatasetFormatError):
    """`codebase_version` is not one robotempo reads."""


class UnsupportedFeatureError(DatasetFormatError):
    """A feature robotempo cannot serve as LeRobot does (a depth image in a mode LeRobot serves otherwise):
    refused rather than served differently."""


class RowAlignmentError(DatasetFormatError):
    """The rows read from a data file are not the episodes/lengths the metadata promised."""


class FeatureMismatchError(DatasetFormatError):
    """A data column disagrees with its feature in info.json: dtype, shape per row, kind, or it is absent."""


class UnknownTaskError(DatasetFormatError):
    """A frame's `task_index` is not in the task table."""


class TaskMismatchError(DatasetFormatError):
    """An episode's task in the episode metadata is not among its frames' `task_index` (the frames decide)."""


class NonFiniteValueError(DatasetFormatError):
    """A float feature holds NaN or infinity and the loader was asked to refuse them (`check_finite=True`)."""


class UnsafePathError(DatasetFormatError):
    """A path of the dataset resolves outside its root, or names a FIFO, device, directory or symlink loop."""


class SelectionError(RobotempoError, ValueError):
    """Bad `episodes=` / `excluded_episodes=` arguments."""


class DeltaTimestampsError(RobotempoError, ValueError):
    """Bad `delta_timestamps` (unknown key, offset off the frame grid)."""


class ArgumentError(RobotempoError, ValueError):
    """A bad loader argument: a tolerance, cache size or probability that is not a finite number in range."""


class TimestampError(DatasetFormatError):
    """Frame timestamps in the data are inconsistent with `fps`."""


class FrameTimestampError(RobotempoError, ValueError):
    """No decoded video frame lies within `tolerance_s` of a query time."""


class VideoDecodeError(DatasetFormatError):
    """A video file is missing, unreadable, too short, or uses a codec the local FFmpeg cannot decode."""


class MissingVideoError(VideoDecodeError, MissingFileError):
    """A video file the metadata promises is absent: a `VideoDecodeError` and a `MissingFileError` (like any
    other missing file of the dataset, catchable as `FileNotFoundError`)."""


class VideoMismatchError(VideoDecodeError):
    """A video's stream (frame rate, frame count, duration, size) disagrees with the dataset's metadata."""


class SpeedLabelError(DatasetFormatError):
    """`meta/speed_percentiles.jsonl` is malformed."""


class SpeedSettingError(RobotempoError, ValueError):
    """An evaluation-time `speed` setting that is not an int in [0, 100], multiple of the bucket step."""


class WriterError(RobotempoError, ValueError):
    """Bad input to the dataset writer."""


class ConfigError(RobotempoError, ValueError):
    """A robotempo setting (environment variable or argument) has a value robotempo cannot use."""


class StorageError(RobotempoError, OSError):
    """Storage refused or failed a request, the data being fine: an object store (denied credentials, unknown
    bucket, unreachable endpoint), or a local file this user may not read or this process has no descriptor
    left to open.

    The message names the URL and what to change; transient faults were already retried before this is raised.
    """

    def __init__(self, url: str, problem: str | None = None, fix: str | None = None):
        if problem is None:  # rebuilt from its message alone (see the module docstring)
            self.url = self.problem = self.fix = None
            super().__init__(url)
            return
        self.url = url
        self.problem = problem
        self.fix = fix
        super().__init__(f"{url}: {problem}. Fix: {fix}")


class MixtureError(RobotempoError, ValueError):
    """Datasets, weights or key maps given to `Mixture` that cannot make one consistent mixture."""

    def __init__(self, problem: str, fix: str | None = None):
        if fix is None:  # rebuilt from its message alone (see the module docstring)
            self.problem = self.fix = None
            super().__init__(problem)
            return
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}")


class SamplerError(RobotempoError, ValueError):
    """Bad `Sampler` arguments, or a saved sampler state that does not fit the sampler it is loaded into."""


class DistributedError(RobotempoError, RuntimeError):
    """Ranks that could not hand an opened dataset over (`open_once`): a rank that did not answer in time, or
    ranks that called it from different places."""


class SplitError(RobotempoError, ValueError):
    """Bad `split_episodes` arguments (fraction, seed, a dataset with too few episodes to split)."""
