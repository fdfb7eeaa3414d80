"""uint8 -> float32 / 255 of one 480x640 plane, three ways (issue 11: what caps float32 at 480x640).

    .venv/bin/python benchmarks/profile_float_conversion.py

Prints microseconds per plane for numpy's one-pass divide (what `video/pixels.py` does), a 256-entry lookup
table (np.take) and torch's div into a float32 tensor, and checks the three give the same values.
"""

import time

import numpy as np
import torch

rng = np.random.default_rng(0)
H, W = 480, 640
src = rng.integers(0, 256, (H, W), dtype=np.uint8)
out = np.empty((H, W), np.float32)
lut = (np.arange(256, dtype=np.float32) / np.float32(255)).astype(np.float32)
S = np.float32(255)


def t(f, n=300):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


print("divide", t(lambda: np.divide(src, S, out=out, dtype=np.float32)))
print("take", t(lambda: np.take(lut, src, out=out)))
ts = torch.from_numpy(src)
to = torch.from_numpy(out)
print("torch div", t(lambda: torch.div(ts, 255, out=to)))
a = np.divide(src, S, dtype=np.float32)
b = np.take(lut, src)
c = (torch.from_numpy(src).to(torch.float32) / 255).numpy()
print((a == b).all(), (a == c).all())
