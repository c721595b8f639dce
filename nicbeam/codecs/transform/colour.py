"""JPEG's full-range YCbCr (ITU-T T.871) and 2x2 chroma resampling, in float32."""

from __future__ import annotations

import numpy as np

_FORWARD = np.array([[0.299, 0.587, 0.114],
                     [-0.168735892, -0.331264108, 0.5],
                     [0.5, -0.418687589, -0.081312411]], dtype=np.float64)
_INVERSE = np.linalg.inv(_FORWARD)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 RGB to three float32 planes ``(3, H, W)``, chroma centred on 0 and luma on 0 (-128)."""
    planes = np.tensordot(_FORWARD.astype(np.float32), rgb.astype(np.float32), axes=([1], [2]))
    planes[0] -= 128.0
    return planes


def ycbcr_to_rgb(planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, rounded and clipped to uint8 ``H x W x 3``."""
    shifted = planes.astype(np.float32, copy=True)
    shifted[0] += 128.0
    rgb = np.tensordot(shifted, _INVERSE.astype(np.float32), axes=([0], [1]))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def downsample2(plane: np.ndarray) -> np.ndarray:
    """2x2 box average of a plane with even sides."""
    h, w = plane.shape
    return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3), dtype=np.float32)


def _upsample_axis(plane: np.ndarray, axis: int) -> np.ndarray:
    """Double one axis with the triangle filter (3/4 nearest, 1/4 next), edges replicated: libjpeg's 'fancy'."""
    n = plane.shape[axis]
    prev = np.take(plane, np.r_[0, np.arange(n - 1)], axis=axis)
    nxt = np.take(plane, np.r_[np.arange(1, n), n - 1], axis=axis)
    out = np.stack([0.75 * plane + 0.25 * prev, 0.75 * plane + 0.25 * nxt], axis=axis + 1)
    shape = list(plane.shape)
    shape[axis] *= 2
    return out.reshape(shape)


def upsample2(plane: np.ndarray) -> np.ndarray:
    """Twice the size in both directions (inverse of :func:`downsample2` up to smoothing)."""
    return _upsample_axis(_upsample_axis(plane, 0), 1)


def rgb_error_gains() -> np.ndarray:
    """RGB error per unit error of Y, Cb, Cr (column norms of the inverse matrix), relative to luma's."""
    norms = np.linalg.norm(_INVERSE, axis=0)
    return norms / norms[0]
