"""Write LeRobot datasets, format v2.1 or v3.0: tabular features, PNG images in the parquet, MP4 video.

    with DatasetWriter(root, fps=30, features={...}, version="v3.0") as w:
        w.add_episode({"observation.state": state, "observation.images.top": frames}, task="pick the cube")

Durability contract
-------------------
* A commit publishes every episode added so far. Its order is: data and video files are moved into place,
  then `meta/tasks.*`, `meta/stats.json`, the episode metadata, and `meta/info.json` last. `info.json` is the
  commit marker: its totals describe exactly the last completed commit.
* Every file appears atomically: it is written under a hidden temp name (`.{name}.{uuid}.tmp`, invisible to
  `*.parquet` / `*.mp4` globs) and renamed into place with `os.replace` after an fsync. No reader ever sees a
  partial file; parquet and MP4 files that are still being appended stay hidden until their commit.
* Commit points. v2.1: every `commit_every` episodes (default 1), `commit()`, `finalize()`.
  v3.0: when the data parquet rolls over (`data_files_size_in_mb`), every `commit_every` episodes if set,
  `commit()`, `finalize()`. A v3.0 commit closes the files being appended, so the next episodes start new
  files; between commits each camera's MP4 rolls over on its own size (`video_files_size_in_mb`).
* After a SIGKILL the dataset is its last commit: every file the metadata references is complete, and no
  visible file holds an uncommitted episode; only hidden temp files are left behind. The one exception is a
  kill inside a commit (a few milliseconds of renames and metadata writes): then the files of the episodes
  being committed may already be visible and the episode metadata may already list them (those files are
  complete), while `info.json` still holds the previous totals. Readers should trust `info.json`;
  `resume()` reconciles.
* An exception while writing aborts: the uncommitted episodes' temp files are deleted and the dataset stays
  at its last commit (`abort()`, also on leaving a `with` block by an exception). Bad input is rejected with
  `WriterError` before anything is written, and leaves the writer usable.
* `DatasetWriter.resume(root)` reopens such a dataset to append to it: it adopts every episode its metadata
  lists, deletes the hidden temp files and any data/video file no metadata references, and commits so that
  `info.json` matches again. One writer per dataset at a time: a writer holds an exclusive lock on the
  folder (flock on `.robotempo-writer.lock`, removed when it finalizes or aborts, released by the OS if the
  process dies), and a second writer or resume is a `WriterError`.
* A commit that fails after publishing its files (a full disk while writing the metadata) takes them back.
* v2.1 rewrites its JSON-lines metadata in full at each commit, so commit cost grows with the dataset: write
  large v2.1 datasets with `commit_every` in the hundreds.

Format details: vector features are fixed-size list columns, shape-(1,) features plain columns, images a
struct `{bytes: PNG, path}`; the parquet schema carries the HF `datasets` feature JSON (key `huggingface`) so
LeRobot and OpenTau load the files; v3.0 writes row groups of whole episodes, each closed at the first
episode that takes it past ~1 MB (`v30.ROW_GROUP_BYTES`; LeRobot writes one per episode, whose footer a reader
parses on every open; files with embedded images past 96 KB, `v30.IMAGE_ROW_GROUP_BYTES`), and
`meta/tasks.parquet` with the pandas metadata that restores its "task" index. Stats cover every feature and
the five default columns.
Video sizes for rollover count the bytes of the muxed packets; data file sizes count the rows still waiting
for their row group at their in-memory size.
"""

from robotempo.writer.core import DatasetWriter

__all__ = ["DatasetWriter"]
