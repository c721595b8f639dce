"""Multi-level CDF 9/7 wavelet (PyWavelets' ``bior4.4``, periodic extension) and MSE-balanced subband steps.

PyWavelets is used rather than our own lifting: it is maintained, vectorised C, and its ``bior4.4`` is exactly
the CDF 9/7 pair of JPEG 2000's irreversible path. With ``periodization`` every level halves the sides
(rounding up), so the band shapes follow from the image shape alone and the decoder needs no side info.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pywt

WAVELET = "bior4.4"
MODE = "periodization"
#: Orientations of a detail level in PyWavelets' order: horizontal, vertical, diagonal detail.
ORIENTATIONS = 3


def usable_levels(height: int, width: int, levels: int) -> int:
    """At most ``levels``, and no more than leave a coarsest band of at least 2 samples per side."""
    side = min(height, width)
    return max(0, min(levels, int(np.floor(np.log2(side))) - 1 if side >= 4 else 0))


def band_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Shapes of the bands from fine (index 0: level 1) to coarse (index levels-1), and LL last."""
    shapes = []
    h, w = height, width
    for _ in range(levels):
        h, w = -(-h // 2), -(-w // 2)
        shapes.append((h, w))
    return shapes + [(h, w)]


def forward(plane: np.ndarray, levels: int) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """LL band and detail levels ordered fine to coarse (each a tuple of three bands)."""
    if levels == 0:
        return plane.astype(np.float64), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "level too high" boundary warnings on small images
        coeffs = pywt.wavedec2(plane.astype(np.float64), WAVELET, mode=MODE, level=levels)
    return coeffs[0], [tuple(d) for d in reversed(coeffs[1:])]


def inverse(ll: np.ndarray, details: list[tuple[np.ndarray, ...]], height: int, width: int) -> np.ndarray:
    """Inverse of :func:`forward`, cropped to ``height x width``."""
    if not details:
        return ll[:height, :width]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plane = pywt.waverec2([ll, *reversed(details)], WAVELET, mode=MODE)
    return plane[:height, :width]


@lru_cache(maxsize=None)
def _norms(levels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """L2 norms of the 1-D synthesis functions: scaling function and wavelet at each level 1..levels."""
    n = 1 << (levels + 6)
    low, high = [], []
    for level in range(1, levels + 1):
        shapes = [n >> level] + [n >> lv for lv in range(level, 0, -1)]
        for target, out in ((0, low), (1, high)):
            coeffs = [np.zeros(s) for s in shapes]
            coeffs[target][shapes[target] // 2] = 1.0
            out.append(float(np.linalg.norm(pywt.waverec(coeffs, WAVELET, mode=MODE))))
    return tuple(low), tuple(high)


def synthesis_gains(levels: int) -> tuple[list[tuple[float, float, float]], float]:
    """Per level (fine to coarse) the gains of the H, V, D bands, and the LL gain: step = base / gain."""
    if levels == 0:
        return [], 1.0
    low, high = _norms(levels)
    details = [(low[i] * high[i], low[i] * high[i], high[i] * high[i]) for i in range(levels)]
    return details, low[-1] * low[-1]
