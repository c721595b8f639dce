"""8x8 block DCT-II (orthonormal, JPEG's scaling) of whole planes and the zigzag order of its coefficients."""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn, idctn

BLOCK = 8


def _zigzag() -> np.ndarray:
    order = sorted(((u, v) for u in range(BLOCK) for v in range(BLOCK)),
                   key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else -p[0]))
    return np.array([u * BLOCK + v for u, v in order], dtype=np.int64)


#: ZIGZAG[k] is the raster index (row * 8 + column) of the k-th coefficient in JPEG's zigzag order.
ZIGZAG = _zigzag()
#: Zigzag index of each raster position.
ZIGZAG_INVERSE = np.argsort(ZIGZAG)


def _frequency_neighbours() -> tuple[np.ndarray, np.ndarray]:
    """For each zigzag index, the zigzag indices of the next-lower horizontal and vertical frequencies (64: none)."""
    left = np.full(64, 64, dtype=np.int64)
    up = np.full(64, 64, dtype=np.int64)
    for k, raster in enumerate(ZIGZAG):
        u, v = divmod(int(raster), BLOCK)
        if v > 0:
            left[k] = ZIGZAG_INVERSE[u * BLOCK + v - 1]
        if u > 0:
            up[k] = ZIGZAG_INVERSE[(u - 1) * BLOCK + v]
    return left, up


#: Both always precede k in zigzag order, so they are decoded before it.
FREQ_LEFT, FREQ_UP = _frequency_neighbours()


def forward(plane: np.ndarray) -> np.ndarray:
    """A plane with sides multiple of 8 to coefficients ``(rows, cols, 64)`` in zigzag order."""
    h, w = plane.shape
    blocks = plane.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 2, 1, 3)
    coefs = dctn(blocks, axes=(2, 3), norm="ortho", workers=1)
    return coefs.reshape(h // BLOCK, w // BLOCK, 64)[:, :, ZIGZAG]


def inverse(coefs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`forward`: ``(rows, cols, 64)`` zigzag coefficients to a float32 plane."""
    rows, cols, _ = coefs.shape
    raster = coefs[:, :, ZIGZAG_INVERSE].reshape(rows, cols, BLOCK, BLOCK)
    blocks = idctn(raster, axes=(2, 3), norm="ortho", workers=1)
    return blocks.transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK).astype(np.float32)
