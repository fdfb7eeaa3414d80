"""Realistic synthetic LeRobot datasets, deterministic from a seed, written with `robotempo.writer`.

What a synthetic dataset holds (`SynthSpec` describes it; `write_synthetic` writes it):

* Tasks with distinct pace: task `k` has mean episode length `mean_length * pace[k]`, the paces spread
  geometrically over [0.6, 1.6] (normalised to mean 1); lengths are lognormal around that mean
  (`length_sigma`). Each task also has its own resting pose. Episode `e`'s task and length depend only on
  `(seed, e)`, so a small corpus is a prefix of a large one; tasks go round-robin in shuffled blocks
  (the first block in order, so task `k` gets task_index `k`).
* `observation.state` and `action` (float32) carry their own identity in the first three columns, exactly:
  `[:, 0] = episode_index`, `[:, 1] = frame_index`, `[:, 2] = task_index`. The other columns are smooth
  joint trajectories (sums of three sines over the episode's progress, so a slow episode is the same motion
  stretched); `action[t]` is the state target of frame `t + 1` (the last frame repeats).
* Camera frames (`observation.images.top`, `camera="image"` or `"video"`): a textured scene (gradient,
  smooth random texture, two moving blobs that follow the joints, a slow camera pan, light flicker, pixel
  noise) under a band of black and white cells: a polarity cell, then 16 bits of episode index, 16 bits of
  frame index and an 8-bit check hash, most significant bit first, row by row. On odd frames every code cell
  is inverted, so consecutive frames always differ strongly: SVT-AV1 at LeRobot's fast presets otherwise
  repeats the previous frame of a near-static scene. Cells are square, `min(H, W) / 48` rounded to a multiple
  of 4 pixels, at least 4 (4 px at 32x32 and 64x64, 8 px at 96x96, 12 px at 128x128); the code survives H.264
  and AV1 (checked from 32x32 to 240x320) and `decode_frame_identity` reads it back. Images need >= 32x32.

`SynthSpec.episode(e)` regenerates any episode's arrays, so tests can compare what a reader returns with
what was written without keeping a copy.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robotempo.writer import DatasetWriter

logger = logging.getLogger(__name__)

CAMERA_KEY = "observation.images.top"
TASK_NAMES = (
    "pick up the red block",
    "open the top drawer",
    "push the blue cup to the left",
    "stack the green cube on the yellow cube",
    "close the microwave door",
    "put the spoon in the bowl",
    "turn on the stove",
    "fold the towel in half",
)
IDENTITY_COLUMNS = ("episode_index", "frame_index", "task_index")
_ID_BITS = 16
_CHECK_BITS = 8
_CODE_BITS = 1 + 2 * _ID_BITS + _CHECK_BITS  # polarity, episode, frame, checksum
_PAN = 8  # pixels of camera pan either side


def _code_layout(height: int, width: int) -> tuple[int, int, int]:
    """(cell size, cells per row, rows) of the identity band of an image."""
    cell = max(4, 4 * round(min(height, width) / 48))  # a multiple of 4 keeps cells on codec block edges
    cols = width // cell
    rows = -(-_CODE_BITS // cols)
    if rows * cell > height:
        raise ValueError(
            f"a {height}x{width} image is too small for the identity code (needs at least 32x32)"
        )
    return cell, cols, rows


def _checksum(word: np.ndarray) -> np.ndarray:
    """An 8-bit hash of each 32-bit word (Fibonacci hashing): a damaged code passes with odds 1/256."""
    return ((word.astype(np.uint64) * np.uint64(0x9E3779B1)) >> np.uint64(24)).astype(np.int64) & 0xFF


def draw_frame_identity(frames: np.ndarray, episode_index: int, frame_index: np.ndarray) -> None:
    """Paint the identity band of `frames` (T, H, W, 3) uint8 in place."""
    if not 0 <= episode_index < 2**_ID_BITS or frame_index.max(initial=0) >= 2**_ID_BITS:
        raise ValueError(f"identity pixels hold {_ID_BITS} bits per index: episode {episode_index}")
    _, height, width, _ = frames.shape
    cell, cols, rows = _code_layout(height, width)
    word = (np.int64(episode_index) << _ID_BITS) | frame_index.astype(np.int64)
    payload = (word[:, None] >> np.arange(31, -1, -1)) & 1
    check = (_checksum(word)[:, None] >> np.arange(_CHECK_BITS - 1, -1, -1)) & 1
    polarity = (frame_index.astype(np.int64) & 1)[:, None]
    bits = np.concatenate([polarity, np.concatenate([payload, check], axis=1) ^ polarity], axis=1)
    grid = np.full((len(frames), rows * cols), 128, dtype=np.uint8)
    grid[:, :_CODE_BITS] = bits * 255
    pixels = grid.reshape(len(frames), rows, cols).repeat(cell, axis=1).repeat(cell, axis=2)
    frames[:, : rows * cell, : cols * cell, :] = pixels[..., None]


def decode_frame_identity(image: Any) -> tuple[int, int]:
    """(episode_index, frame_index) of a synthetic frame: uint8 (H, W, 3) or float (3, H, W) in [0, 1].

    Raises ValueError when the checksum does not match (the frame is not one of ours, or too damaged).
    """
    a = np.asarray(image)
    if a.ndim != 3:
        raise ValueError(f"expected one image with 3 dimensions, got shape {a.shape}")
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.moveaxis(a, 0, -1)
    gray = a.astype(np.float64).mean(axis=2)
    if a.dtype.kind == "f":
        gray = gray * 255.0
    height, width = gray.shape
    cell, cols, rows = _code_layout(height, width)
    m = cell // 4
    cells = gray[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell)[
        :, m : cell - m, :, m : cell - m
    ]
    raw = (cells.mean(axis=(1, 3)).reshape(-1)[:_CODE_BITS] > 127.5).astype(np.int64)
    polarity, bits = raw[0], raw[1:] ^ raw[0]
    word = int(bits[:32] @ (1 << np.arange(31, -1, -1, dtype=np.int64)))
    check = int(bits[32:] @ (1 << np.arange(_CHECK_BITS - 1, -1, -1, dtype=np.int64)))
    if int(_checksum(np.array([word]))[0]) != check or polarity != word & 1:
        raise ValueError(
            f"identity checksum mismatch (cells {raw.tolist()}): not a synthetic frame, or damaged"
        )
    return word >> _ID_BITS, word & (2**_ID_BITS - 1)


def _upsample(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w, C) grid to (height, width, C)."""
    h, w = a.shape[:2]
    ys, xs = np.linspace(0, h - 1, height), np.linspace(0, w - 1, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bottom = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class SynthSpec:
    n_episodes: int = 20
    n_tasks: int = 3
    mean_length: float = 150.0
    length_sigma: float = 0.25
    min_length: int = 8
    state_dim: int = 14
    action_dim: int = 14
    camera: str | None = None  # None, "image" or "video"
    image_size: tuple[int, int] = (96, 96)  # (height, width)
    fps: int | float = 10
    seed: int = 0
    pixel_noise: float = 1.5  # std of the per-frame sensor noise, in uint8 levels

    def __post_init__(self) -> None:
        if self.n_episodes < 0 or self.n_tasks < 1:
            raise ValueError(f"need n_episodes >= 0 and n_tasks >= 1, got {self.n_episodes}, {self.n_tasks}")
        if min(self.state_dim, self.action_dim) < len(IDENTITY_COLUMNS):
            raise ValueError(
                f"state_dim and action_dim must be >= 3 (identity columns), got {self.state_dim}"
            )
        if self.camera not in (None, "image", "video"):
            raise ValueError(f"camera must be None, 'image' or 'video', got {self.camera!r}")
        if self.camera is not None:
            _code_layout(*self.image_size)

    @property
    def tasks(self) -> list[str]:
        return [
            TASK_NAMES[k % len(TASK_NAMES)]
            + (f" (variant {k // len(TASK_NAMES)})" if k >= len(TASK_NAMES) else "")
            for k in range(self.n_tasks)
        ]

    @functools.cached_property
    def task_mean_lengths(self) -> np.ndarray:
        pace = np.geomspace(0.6, 1.6, self.n_tasks) if self.n_tasks > 1 else np.ones(1)
        return self.mean_length * pace / pace.mean()

    def features(self) -> dict[str, dict]:
        def vector(n: int) -> dict:
            names = list(IDENTITY_COLUMNS) + [f"joint_{i}" for i in range(len(IDENTITY_COLUMNS), n)]
            return {"dtype": "float32", "shape": [n], "names": names}

        out = {"observation.state": vector(self.state_dim), "action": vector(self.action_dim)}
        if self.camera is not None:
            out[CAMERA_KEY] = {"dtype": self.camera, "shape": [*self.image_size, 3], "names": None}
        return out

    def episode_task(self, episode_index: int) -> int:
        """Round-robin in blocks of `n_tasks` episodes, shuffled except the first: the tasks first appear in
        index order, so the writer gives task `k` the task_index `k`."""
        block, slot = divmod(episode_index, self.n_tasks)
        if block == 0:
            return slot
        return int(np.random.default_rng([self.seed, 1, block]).permutation(self.n_tasks)[slot])

    def episode_length(self, episode_index: int) -> int:
        z = np.random.default_rng([self.seed, 2, episode_index]).standard_normal()
        mean = self.task_mean_lengths[self.episode_task(episode_index)]
        return max(self.min_length, round(mean * np.exp(self.length_sigma * z - self.length_sigma**2 / 2)))

    def episode(self, episode_index: int) -> tuple[dict[str, np.ndarray], str]:
        """The arrays and task string of one episode, exactly as `write_synthetic` writes them."""
        task, length = self.episode_task(episode_index), self.episode_length(episode_index)
        rng = np.random.default_rng([self.seed, 3, episode_index])
        joints = self._joints(rng, task, length)
        identity = np.stack(
            [np.full(length, episode_index), np.arange(length), np.full(length, task)], axis=1
        )
        target = np.concatenate([joints[1:], joints[-1:]])
        n = len(IDENTITY_COLUMNS)
        out = {
            "observation.state": np.hstack([identity, joints[:, : self.state_dim - n]]).astype(np.float32),
            "action": np.hstack([identity, target[:, : self.action_dim - n]]).astype(np.float32),
        }
        if self.camera is not None:
            out[CAMERA_KEY] = self._frames(rng, episode_index, task, joints)
        return out, self.tasks[task]

    def _joints(self, rng: np.random.Generator, task: int, length: int) -> np.ndarray:
        dims = max(self.state_dim, self.action_dim) - len(IDENTITY_COLUMNS)
        rest = np.random.default_rng([self.seed, 4, task]).uniform(-0.5, 0.5, dims)
        harmonic = np.arange(1, 4)
        amplitude = rng.uniform(0.2, 0.6, (dims, 3)) / harmonic
        frequency = rng.uniform(0.5, 1.5, (dims, 3)) * harmonic
        phase = rng.uniform(0, 2 * np.pi, (dims, 3))
        progress = np.arange(length)[:, None, None] / max(length - 1, 1)
        return rest + (amplitude * np.sin(2 * np.pi * frequency * progress + phase)).sum(axis=2)

    def _frames(
        self, rng: np.random.Generator, episode_index: int, task: int, joints: np.ndarray
    ) -> np.ndarray:
        height, width = self.image_size
        length = len(joints)
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        x = np.linspace(0, 1, width + 2 * _PAN + 1, dtype=np.float32)[None, :, None]
        c0, c1 = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
        texture = _upsample(rng.normal(0, 25, (12, 14, 3)), height, width + 2 * _PAN + 1)
        scene = (c0 * (1 - y) + c1 * x * 0.5 + texture).astype(np.float32)
        # The camera pans and the light flickers a little, so consecutive frames differ everywhere.
        t = np.arange(length)
        shift = _PAN * (1 + 0.9 * np.sin(2 * np.pi * (t / 90 + rng.uniform())))
        col, frac = shift.astype(int), (shift % 1).astype(np.float32)
        gain = (1 + 0.05 * np.sin(2 * np.pi * t / 37)).astype(np.float32)
        # Two blobs follow the first four joints; their colours depend on the task.
        pos = 0.5 + 0.35 * np.tanh(np.resize(joints[:, :4].T, (4, length)))
        gy = np.exp(-((np.linspace(0, 1, height)[None, :] - pos[[0, 2], :, None]) ** 2) / 0.012)
        gx = np.exp(-((np.linspace(0, 1, width)[None, :] - pos[[1, 3], :, None]) ** 2) / 0.012)
        gy, gx = gy.astype(np.float32)[..., None, None], gx.astype(np.float32)[:, :, None, :, None]
        colors = np.random.default_rng([self.seed, 5, task]).uniform(-120, 120, (2, 3)).astype(np.float32)
        # Sensor noise from a small bank: PNG compresses each frame on its own, so a bank costs nothing there.
        bank = rng.standard_normal((16, height, width, 3), dtype=np.float32) * np.float32(self.pixel_noise)
        pick = rng.integers(0, len(bank), length)
        out = np.empty((length, height, width, 3), dtype=np.uint8)
        for i in range(length):  # one frame at a time stays in cache: faster than whole-episode temporaries
            c = col[i]
            img = scene[:, c : c + width] * ((1 - frac[i]) * gain[i])
            img += scene[:, c + 1 : c + 1 + width] * (frac[i] * gain[i])
            img += (gy[0, i] * gx[0, i]) * colors[0]
            img += (gy[1, i] * gx[1, i]) * colors[1]
            img += bank[pick[i]]
            out[i] = np.clip(img, 0, 255, out=img)
        draw_frame_identity(out, episode_index, t)
        return out


def write_synthetic(
    root: str | Path,
    version: str = "v3.0",
    n_episodes: int = 20,
    n_tasks: int = 3,
    camera: str | None = None,
    image_size: tuple[int, int] = (96, 96),
    codec: str = "h264",
    fps: int | float = 10,
    seed: int = 0,
    state_dim: int = 14,
    action_dim: int = 14,
    data_path: str | None = None,
    video_path: str | None = None,
    data_files_size_in_mb: float = 100,
    video_files_size_in_mb: float = 500,
    chunks_size: int = 1000,
    commit_every: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    mean_length: float = 150.0,
    png_compress_level: int = 1,
    resume: bool = False,
) -> Path:
    """Write a synthetic dataset (see the module docstring) and return its root.

    `commit_every=None` commits v2.1 every `n_episodes // 20` episodes (1..1000: its metadata is rewritten
    at each commit) and v3.0 at data-file rollover only. `progress(done, total)` is called per episode.
    `resume=True` continues an interrupted run of the same call (`DatasetWriter.resume`) instead of failing
    on an existing dataset.
    """
    spec = SynthSpec(
        n_episodes=n_episodes,
        n_tasks=n_tasks,
        mean_length=mean_length,
        state_dim=state_dim,
        action_dim=action_dim,
        camera=camera,
        image_size=tuple(image_size),
        fps=fps,
        seed=seed,
    )
    if commit_every is None and version == "v2.1":
        commit_every = min(1000, max(1, n_episodes // 20))
    root = Path(root)
    if resume and (root / "meta" / "info.json").exists():
        writer = DatasetWriter.resume(root, commit_every=commit_every, png_compress_level=png_compress_level)
        if list(writer.features.specs) != list(spec.features()) or writer.fps != fps:
            writer.abort()
            raise ValueError(f"{root} holds a different synthetic dataset; resume it with the same arguments")
    else:
        writer = DatasetWriter(
            root,
            fps=fps,
            features=spec.features(),
            version=version,
            robot_type="synthetic",
            video_codec=codec,
            data_path=data_path,
            video_path=video_path,
            chunks_size=chunks_size,
            data_files_size_in_mb=data_files_size_in_mb,
            video_files_size_in_mb=video_files_size_in_mb,
            commit_every=commit_every,
            png_compress_level=png_compress_level,
        )
    with writer:
        for e in range(writer.num_episodes, n_episodes):
            arrays, task = spec.episode(e)
            writer.add_episode(arrays, task=task)
            if progress is not None:
                progress(e + 1, n_episodes)
    logger.info("synthetic dataset %s: %d episodes, %d frames", root, writer.num_episodes, writer.num_frames)
    return root
