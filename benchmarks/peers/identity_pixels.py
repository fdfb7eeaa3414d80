"""Camera frames whose pixels encode their own (episode_index, frame_index).

Shared by the peer dataset generators in this folder. They run inside the peer virtual environments
(/tmp/peers/venv, /tmp/peers/venv_tau); nothing in robotempo imports this module. Only numpy is needed.

Layout of an H x W x 3 uint8 frame (default 96 x 96):

* rows [0, H/4):     ``BITS`` blocks of the episode index in reflected Gray code, most significant bit first,
                     each ``(5/6 W) // BITS`` pixels wide (10 at W = 96), centred with a black margin of
                     >= W/12 on each side; a set bit is white (255), a clear bit black (0).
* rows [H/4, H/2):   the same for the frame index.
* rows [H/2, H):     a smooth colour texture (sinusoids) that drifts with the frame and the episode, so
                     consecutive frames differ everywhere and the codec has real work to do.

Why Gray code: with plain binary the lowest bit flips on every frame, a one-frame "flash" of a 12x24 block
(first layout).
LeRobot 0.6.1's encoder (PyAV libsvtav1, preset 12 -> M10, crf 30, g=2) under-codes such flashes on the
non-key frames (measured on lr_video: the block decodes to ~0.3 instead of 1.0 on 43 of 2486 frames, so
the frame read as its predecessor). Gray code (a bit never flashes for one frame) and a side margin (the
right-most block was the one hit) cut that to 2 of 2486; the last ones are caught by ``decode_identity``,
which checks the bit reading against the texture of the neighbouring frame indices (``read_bits`` gives the
raw reading). The texture moves by a tenth of its period per frame, so a neighbouring frame is several
times farther (mean abs ~0.1) than the codec error (~0.02).
"""

from __future__ import annotations

import numpy as np

BITS = 8  # episode and frame indices up to 255


def _block_geometry(width: int) -> tuple[int, int]:
    """(block width, x of the first block): the blocks keep a margin of >= 1/12 of the width on each side."""
    bw = (width * 5 // 6) // BITS
    return bw, (width - bw * BITS) // 2


def identity_frame(episode_index: int, frame_index: int, height: int = 96, width: int = 96) -> np.ndarray:
    if not (0 <= episode_index < 2**BITS and 0 <= frame_index < 2**BITS):
        raise ValueError(f"identity pixels hold {BITS} bits: episode {episode_index}, frame {frame_index}")
    if height % 4 or width < 4 * BITS:
        raise ValueError(f"height must be a multiple of 4 and width >= {4 * BITS}, got {height}x{width}")
    img = np.zeros((height, width, 3), dtype=np.uint8)
    bw, x0 = _block_geometry(width)
    bh = height // 4
    for row, value in ((0, episode_index), (1, frame_index)):
        value ^= value >> 1  # binary -> Gray
        for b in range(BITS):
            if (value >> (BITS - 1 - b)) & 1:
                img[row * bh : (row + 1) * bh, x0 + b * bw : x0 + (b + 1) * bw, :] = 255
    th = height - 2 * bh
    y = np.arange(th, dtype=np.float64)[:, None] / th
    x = np.arange(width, dtype=np.float64)[None, :] / width
    phase = frame_index / 10.0 + episode_index / 7.0
    r = 0.5 + 0.4 * np.sin(2 * np.pi * (x + phase))
    g = 0.5 + 0.4 * np.sin(2 * np.pi * (1.5 * y - 0.5 * phase))
    b = 0.5 + 0.4 * np.sin(2 * np.pi * (x + y + 0.3 * episode_index / 11.0))
    tex = np.stack(np.broadcast_arrays(r, g, b), axis=-1)
    img[2 * bh :, :, :] = np.clip(np.round(tex * 255.0), 0, 255).astype(np.uint8)
    return img


def _as_hwc_unit(frame) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim != 3:
        raise ValueError(f"expected one frame (3 dims), got shape {a.shape}")
    if a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    a = a.astype(np.float64)
    return a / 255.0 if a.max() > 1.5 else a


def read_bits(frame) -> tuple[int, int]:
    """(episode_index, frame_index) as read from the bit blocks alone (no texture check)."""
    a = _as_hwc_unit(frame)
    height, width = a.shape[:2]
    bw, x0 = _block_geometry(width)
    bh = height // 4
    out = []
    for row in (0, 1):
        value = 0
        for b in range(BITS):
            x = x0 + b * bw
            block = a[row * bh + bh // 4 : row * bh + 3 * bh // 4, x + bw // 4 : x + 3 * bw // 4]
            value = (value << 1) | int(block.mean() > 0.5)
        shift = value >> 1
        while shift:  # Gray -> binary
            value ^= shift
            shift >>= 1
        out.append(value)
    return out[0], out[1]


def identity_error(frame, episode_index: int, frame_index: int) -> float:
    """Mean absolute difference, in [0, 1], between a decoded frame and the frame written for (e, f)."""
    a = _as_hwc_unit(frame)
    ref = identity_frame(episode_index, frame_index, a.shape[0], a.shape[1]).astype(np.float64) / 255.0
    return float(np.abs(a - ref).mean())


def decode_identity(frame, search: int = 2) -> tuple[int, int]:
    """(episode_index, frame_index) of a decoded frame.

    Reads the bit blocks, then keeps, among the frame indices within ``search`` of that reading, the one whose
    written frame is nearest (mean absolute difference over the whole image, texture included). This
    corrects the rare non-key frames in which the encoder leaves a bit block half updated (see module doc).
    Accepts HWC or CHW, uint8 in [0, 255] or float in [0, 1] (numpy array or torch tensor).
    """
    e, f = read_bits(frame)
    cands = [c for c in range(f - search, f + search + 1) if 0 <= c < 2**BITS]
    return e, min(cands, key=lambda c: identity_error(frame, e, c))
