"""Mean squared error and PSNR of 8-bit RGB images, over RGB (all channels) or over BT.601 luma only."""

from __future__ import annotations

import math

import numpy as np

from nicbeam.metrics._checks import check_peak, check_rgb_pair
from nicbeam.metrics.luma import rgb_to_y


def mse_to_psnr(mse_value: float, peak: float = 255.0) -> float:
    """Return ``10 log10(peak^2 / mse)`` in dB; ``math.inf`` when the error is zero."""
    peak = check_peak(peak)
    if mse_value < 0 or math.isnan(mse_value):
        raise ValueError(f"mse must be >= 0, got {mse_value!r}")
    if mse_value == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse_value)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Return the MSE over all pixels and all three channels of two RGB uint8 images, computed in float64."""
    check_rgb_pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Return the RGB PSNR in dB (MSE pooled over channels and pixels); ``math.inf`` for identical images."""
    return mse_to_psnr(mse(a, b), peak)


def psnr_y(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Return the PSNR in dB of the float64 BT.601 luma ``Y = 0.299R + 0.587G + 0.114B`` of two RGB images."""
    check_rgb_pair(a, b)
    diff = rgb_to_y(a) - rgb_to_y(b)
    return mse_to_psnr(float(np.mean(diff * diff)), peak)
