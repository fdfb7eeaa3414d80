"""The speed prompt ("Speed: 40"), the evaluation-side speed setting, and seeded per-sample speed dropout."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from robotempo.errors import SpeedSettingError
from robotempo.hashing import GOLDEN, as_uint64, mix64
from robotempo.speed.labels import SPEED_BUCKET_LABELS, SPEED_BUCKET_STEP

_MAX_SPEED = SPEED_BUCKET_LABELS[-1]


def _plain(value: Any, name: str = "speed") -> Any:
    """A one-element tensor / numpy array / numpy scalar as the Python value it holds; anything else as is."""
    if hasattr(value, "item") and not isinstance(value, (int, float, bool, str)):
        n = value.numel() if hasattr(value, "numel") else getattr(value, "size", 1)  # torch / numpy
        if n != 1:
            raise SpeedSettingError(
                f"{name} must be a single value, got {n} values: {value!r}. Fix: format one item's prompt "
                "(batch['speed'][i], batch['speed_is_pad'][i]), not a batch's"
            )
        return value.item()
    return value


def validate_speed_setting(value: Any) -> int:
    """`value` as a plain int, if it is one of the speed labels: an int (not a bool) in [0, 100], step 10.

    0 is valid (it asks for the fastest style). Numpy integers and one-element integer tensors are accepted.
    """
    plain = _plain(value)
    if isinstance(plain, bool) or not isinstance(plain, int):
        hint = f"; use {int(plain)}" if isinstance(plain, float) and plain.is_integer() else ""
        got = f"{type(plain).__name__} {plain!r}{hint}"
        raise SpeedSettingError(f"speed must be an int, one of {list(SPEED_BUCKET_LABELS)}; got {got}")
    if not 0 <= plain <= _MAX_SPEED or plain % SPEED_BUCKET_STEP:
        raise SpeedSettingError(
            f"speed must be in [0, {_MAX_SPEED}] and a multiple of {SPEED_BUCKET_STEP} "
            f"(one of {list(SPEED_BUCKET_LABELS)}); got {plain}"
        )
    return plain


def format_speed_prompt(speed: Any, speed_is_pad: Any) -> str:
    """``"Speed: 40"`` (always an integer), or ``""`` when the label is padded (dropped or turned off)."""
    if bool(_plain(speed_is_pad, "speed_is_pad")):
        return ""
    return f"Speed: {validate_speed_setting(speed)}"


@dataclass(frozen=True)
class SpeedDropout:
    """Drops the speed label of a fraction `p` of samples, as a pure function of (seed, sample index, epoch).

    No global random state: the same (seed, index, epoch) gives the same decision in every process, worker and
    rank, and a resumed run makes the same decisions as an uninterrupted one.
    """

    p: float
    seed: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.p, (bool, np.bool_))
            or not isinstance(self.p, numbers.Real)
            or not 0 <= self.p <= 1
        ):
            raise SpeedSettingError(f"speed dropout probability must be a number in [0, 1], got {self.p!r}")
        object.__setattr__(self, "p", float(self.p))  # numpy floats too (np.float32(0.1) was refused)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise SpeedSettingError(f"speed dropout seed must be an int, got {self.seed!r}")

    def uniforms(self, indices: Any, epoch: int = 0) -> np.ndarray:
        """A float64 in [0, 1) per sample index, a hash of (seed, epoch, index)."""
        given = np.asarray(indices)
        if given.dtype.kind not in "iu" and not (given.size == 0 and given.dtype.kind == "f"):
            raise SpeedSettingError(
                f"speed dropout takes integer sample indices, got {given.dtype} values {given.ravel()[:5]!r}"
            )  # 1.5 was truncated to sample 1
        if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)):
            raise SpeedSettingError(f"speed dropout epoch must be an int, got {epoch!r}")
        idx = given.astype(np.int64).astype(np.uint64)
        with np.errstate(over="ignore"):
            key = mix64(mix64(as_uint64(int(self.seed)) + GOLDEN) ^ as_uint64(int(epoch)))
            h = mix64((idx * GOLDEN) ^ key)
        return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def drop_many(self, indices: Any, epoch: int = 0) -> np.ndarray:
        """bool per sample index: True where the label is dropped (`speed_is_pad`)."""
        return self.uniforms(indices, epoch) < self.p

    def drop(self, index: int, epoch: int = 0) -> bool:
        return bool(self.drop_many([index], epoch)[0])
