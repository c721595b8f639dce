"""RGB to luma conversion used by the luma-only metrics (PSNR-Y, PSNR-HVS, PSNR-HVS-M).

The formula is the full-range BT.601 luma of JPEG/JFIF (ITU-T T.871):
``Y = 0.299 R + 0.587 G + 0.114 B`` on the 0..255 scale, computed in float64 and not rounded, so
metrics measure the codec's error and not an extra 8-bit quantisation of Y.
"""

from __future__ import annotations

import numpy as np

from nicbeam.metrics._checks import check_rgb

#: BT.601 luma weights for R, G and B (JPEG/JFIF full range).
BT601_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Return the float64 (H, W) BT.601 full-range luma, on the 0..255 scale, of an RGB uint8 image."""
    check_rgb(image)
    rgb = image.astype(np.float64)
    wr, wg, wb = BT601_WEIGHTS
    return wr * rgb[..., 0] + wg * rgb[..., 1] + wb * rgb[..., 2]
