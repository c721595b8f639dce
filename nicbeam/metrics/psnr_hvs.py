"""PSNR-HVS and PSNR-HVS-M: PSNR of 8x8 DCT errors weighted by the contrast sensitivity function (CSF),
with between-coefficient contrast masking for PSNR-HVS-M.

References:

- K. Egiazarian, J. Astola, N. Ponomarenko, V. Lukin, F. Battisti, M. Carli, "New full-reference quality
  metrics based on HVS", Proc. 2nd Int. Workshop on Video Processing and Quality Metrics (VPQM), 2006
  (PSNR-HVS).
- N. Ponomarenko, F. Silvestri, K. Egiazarian, M. Carli, J. Astola, V. Lukin, "On between-coefficient
  contrast masking of DCT basis functions", Proc. 3rd VPQM, 2007 (PSNR-HVS-M).

This is a vectorised port of the authors' reference MATLAB code ``psnrhvsm.m`` (N. Ponomarenko, 2006,
http://ponomarenko.info/psnrhvsm.htm): orthonormal 8x8 DCT-II (MATLAB ``dct2``) of each block, the
``CSFCof`` and ``MaskCof`` tables, the ``maskeff``/``vari`` masking threshold (the larger of the two
images' thresholds), the DC coefficient left unmasked, errors averaged over all coefficients of all
blocks, peak 255. Blocks start every ``step`` pixels (8 by default: non-overlapping); like the MATLAB
loop, a border narrower than 8 pixels at the bottom or right is not covered. Two deliberate
differences: identical (or, for PSNR-HVS-M, visually indistinguishable) images give ``math.inf`` where
the MATLAB code returns 100000, and the computation is float64 numpy rather than a loop over blocks.

The metrics are defined on one grey channel. A 2-D array is used as it is (values on the 0..``peak``
scale); an RGB uint8 (H, W, 3) image is first reduced to its full-range BT.601 luma
``Y = 0.299 R + 0.587 G + 0.114 B`` (JPEG/JFIF), in float64 without rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dctn

from nicbeam.metrics._checks import check_peak
from nicbeam.metrics.luma import rgb_to_y
from nicbeam.metrics.psnr import mse_to_psnr

BLOCK = 8

#: Contrast sensitivity weights of the 8x8 DCT coefficients (``CSFCof`` in psnrhvsm.m).
CSF = np.array(
    [
        [1.608443, 2.339554, 2.573509, 1.608443, 1.072295, 0.643377, 0.504610, 0.421887],
        [2.144591, 2.144591, 1.838221, 1.354478, 0.989811, 0.443708, 0.428918, 0.467911],
        [1.838221, 1.979622, 1.608443, 1.072295, 0.643377, 0.451493, 0.372972, 0.459555],
        [1.838221, 1.513829, 1.169777, 0.887417, 0.504610, 0.295806, 0.321689, 0.415082],
        [1.429727, 1.169777, 0.695543, 0.459555, 0.378457, 0.236102, 0.249855, 0.334222],
        [1.072295, 0.735288, 0.467911, 0.402111, 0.317717, 0.247453, 0.227744, 0.279729],
        [0.525206, 0.402111, 0.329937, 0.295806, 0.249855, 0.212687, 0.214459, 0.254803],
        [0.357432, 0.279729, 0.270896, 0.262603, 0.229778, 0.257351, 0.249855, 0.259950],
    ]
)
CSF.setflags(write=False)

#: Masking weights of the 8x8 DCT coefficients (``MaskCof`` in psnrhvsm.m).
MASK = np.array(
    [
        [0.390625, 0.826446, 1.000000, 0.390625, 0.173611, 0.062500, 0.038447, 0.026874],
        [0.694444, 0.694444, 0.510204, 0.277008, 0.147929, 0.029727, 0.027778, 0.033058],
        [0.510204, 0.591716, 0.390625, 0.173611, 0.062500, 0.030779, 0.021004, 0.031888],
        [0.510204, 0.346021, 0.206612, 0.118906, 0.038447, 0.013212, 0.015625, 0.026015],
        [0.308642, 0.206612, 0.073046, 0.031888, 0.021626, 0.008417, 0.009426, 0.016866],
        [0.173611, 0.081633, 0.033058, 0.024414, 0.015242, 0.009246, 0.007831, 0.011815],
        [0.041649, 0.024414, 0.016437, 0.013212, 0.009426, 0.006830, 0.006944, 0.009803],
        [0.019290, 0.011815, 0.011080, 0.010412, 0.007972, 0.010000, 0.009426, 0.010203],
    ]
)
MASK.setflags(write=False)

_CSF_SQ = CSF * CSF
_MASK_AC = MASK.copy()
_MASK_AC[0, 0] = 0.0  # maskeff sums the AC coefficients only
_INV_MASK = 1.0 / MASK
# Blocks handled per vectorised batch: bounds memory (about 0.5 MB per 1000 blocks and array).
_CHUNK_BLOCKS = 1 << 15


def _to_gray(image: Any, name: str) -> np.ndarray:
    """Return a float64 (H, W) grey image: a real 2-D array as is, an RGB uint8 image as its BT.601 luma."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3:
        if image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"{name}: a 3-D image must be RGB uint8 of shape (H, W, 3), got {image.dtype} {image.shape}"
            )
        return rgb_to_y(image)
    if image.ndim != 2:
        raise ValueError(f"{name} must be (H, W) grey or (H, W, 3) RGB uint8, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"{name} must have an integer or float dtype, got {image.dtype}")
    gray = image.astype(np.float64)
    if not np.all(np.isfinite(gray)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return gray


def _vari(x: np.ndarray) -> np.ndarray:
    """Per-block ``var(x(:)) * numel(x)`` with MATLAB's unbiased variance, over the last two axes."""
    return np.var(x, axis=(-2, -1), ddof=1) * (x.shape[-2] * x.shape[-1])


def _masking(blocks: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Per-block masking threshold (``maskeff`` in psnrhvsm.m): AC energy times a sub-block variance ratio."""
    energy = np.einsum("nij,ij->n", coeffs * coeffs, _MASK_AC)
    half = BLOCK // 2
    quarters = (
        _vari(blocks[:, :half, :half])
        + _vari(blocks[:, :half, half:])
        + _vari(blocks[:, half:, half:])
        + _vari(blocks[:, half:, :half])
    )
    whole = _vari(blocks)
    ratio = np.divide(quarters, whole, out=np.zeros_like(whole), where=whole != 0)
    return np.sqrt(energy * ratio) / 32.0


def _block_error_sums(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Return CSF-weighted squared DCT errors, unmasked and masked, summed over blocks, and their count."""
    dct_a = dctn(a, axes=(-2, -1), norm="ortho")
    dct_b = dctn(b, axes=(-2, -1), norm="ortho")
    diff = np.abs(dct_a - dct_b)
    sum_hvs = float(np.einsum("nij,ij->", diff * diff, _CSF_SQ))

    mask = np.maximum(_masking(a, dct_a), _masking(b, dct_b))
    masked = np.maximum(diff - mask[:, None, None] * _INV_MASK, 0.0)
    masked[:, 0, 0] = diff[:, 0, 0]  # the DC coefficient is not masked (eq. 3 of Ponomarenko et al.)
    sum_hvsm = float(np.einsum("nij,ij->", masked * masked, _CSF_SQ))
    return sum_hvs, sum_hvsm, diff.size


def hvs_mse(a: np.ndarray, b: np.ndarray, step: int = BLOCK) -> tuple[float, float]:
    """Return the (PSNR-HVS, PSNR-HVS-M) mean squared errors of two grey or RGB images, before the dB step."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    gray_a = _to_gray(a, "a")
    gray_b = _to_gray(b, "b")
    if gray_a.shape != gray_b.shape or np.shape(a) != np.shape(b):
        raise ValueError(f"images must have the same shape, got {np.shape(a)} and {np.shape(b)}")
    if min(gray_a.shape) < BLOCK:
        height, width = gray_a.shape
        raise ValueError(f"PSNR-HVS needs both image sides >= {BLOCK} pixels, got {height}x{width}")

    windows_a = sliding_window_view(gray_a, (BLOCK, BLOCK))[::step, ::step]
    windows_b = sliding_window_view(gray_b, (BLOCK, BLOCK))[::step, ::step]
    rows, cols = windows_a.shape[:2]
    rows_per_chunk = max(1, _CHUNK_BLOCKS // cols)
    sum_hvs = sum_hvsm = 0.0
    count = 0
    for top in range(0, rows, rows_per_chunk):
        chunk_a = windows_a[top : top + rows_per_chunk].reshape(-1, BLOCK, BLOCK)
        chunk_b = windows_b[top : top + rows_per_chunk].reshape(-1, BLOCK, BLOCK)
        part_hvs, part_hvsm, part_count = _block_error_sums(chunk_a, chunk_b)
        sum_hvs += part_hvs
        sum_hvsm += part_hvsm
        count += part_count
    return sum_hvs / count, sum_hvsm / count


def psnr_hvs_hvsm(
    a: np.ndarray, b: np.ndarray, step: int = BLOCK, peak: float = 255.0
) -> tuple[float, float]:
    """Return ``(PSNR-HVS, PSNR-HVS-M)`` in dB from one pass over the blocks; ``math.inf`` for zero error."""
    peak = check_peak(peak)
    err_hvs, err_hvsm = hvs_mse(a, b, step)
    return mse_to_psnr(err_hvs, peak), mse_to_psnr(err_hvsm, peak)


def psnr_hvs(a: np.ndarray, b: np.ndarray, step: int = BLOCK, peak: float = 255.0) -> float:
    """Return PSNR-HVS in dB: PSNR of CSF-weighted 8x8 DCT errors (Egiazarian et al. 2006)."""
    return psnr_hvs_hvsm(a, b, step, peak)[0]


def psnr_hvs_m(a: np.ndarray, b: np.ndarray, step: int = BLOCK, peak: float = 255.0) -> float:
    """Return PSNR-HVS-M in dB: PSNR-HVS with contrast masking of the AC errors (Ponomarenko et al. 2007)."""
    return psnr_hvs_hvsm(a, b, step, peak)[1]
