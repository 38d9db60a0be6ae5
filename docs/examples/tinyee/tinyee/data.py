"""A seeded 'bars' dataset: 16x16 grayscale images of one bar, its orientation is the class.

``python -m tinyee.data bars.npz`` writes it as an ``.npz`` with arrays ``x`` (N, 16, 16, uint8)
and ``y`` (N,); :func:`load` returns the same arrays (the ``ddnnsim.datasets`` entry point).
"""

from __future__ import annotations

import sys

import numpy as np

CLASSES = ("horizontal", "vertical", "diagonal", "antidiagonal")


def load(n: int = 1200, size: int = 16, noise: float = 0.35, seed: int = 0):
    """``(x, y)``: ``n`` noisy images of one bar; class = its orientation (4 classes)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    rng.shuffle(y)
    x = np.zeros((n, size, size), dtype=np.float64)
    idx = np.arange(size)
    for i, k in enumerate(y):
        off = rng.integers(-size // 3, size // 3 + 1)
        pos = size // 2 + off
        if k == 0:
            x[i, pos, :] = 1.0
        elif k == 1:
            x[i, :, pos] = 1.0
        else:
            cols = (idx + off) % size if k == 2 else (size - 1 - idx + off) % size
            x[i, idx, cols] = 1.0
    x += rng.normal(0.0, noise, x.shape)
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8), y.astype(np.int64)


def write_npz(path, **kwargs) -> None:
    """Write :func:`load`'s arrays to ``path`` as ``x`` and ``y``."""
    x, y = load(**kwargs)
    np.savez_compressed(path, x=x, y=y)


if __name__ == "__main__":
    write_npz(sys.argv[1] if len(sys.argv) > 1 else "bars.npz")
