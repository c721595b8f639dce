"""JPEG's perceptual quantisation matrices scaled by an IJG quality, and dead-zone quantisation.

The matrices are ITU-T T.81 Annex K's (the ones libjpeg uses), scaled exactly as libjpeg scales them, so a
``dct`` quality q quantises with the same steps as ``jpeg`` at quality q. What differs is the rounding: AC
coefficients are rounded with a dead zone (offset ``AC_ROUNDING`` < 1/2, a cheap stand-in for RDO
quantisation: small values cost many bits for little distortion) and reconstructed slightly towards zero
(``AC_RECONSTRUCTION_BIAS``, nearer the centroid of the Laplacian-like coefficient distribution).
"""

from __future__ import annotations

import numpy as np

from nicbeam.codecs.transform.blocks import ZIGZAG

_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99], dtype=np.int64)

#: Rounding offset of AC coefficients (1/2 = plain rounding); DC is rounded plainly.
AC_ROUNDING = 0.36
#: Non-zero AC levels are reconstructed at ``(|q| - bias) * step``.
AC_RECONSTRUCTION_BIAS = 0.0


def quant_tables(quality: int, transposed: bool = False) -> np.ndarray:
    """Luma and chroma steps ``(2, 64)`` in zigzag order for an IJG quality 1..100 (libjpeg's scaling).

    ``transposed`` swaps horizontal and vertical frequencies, for an image coded transposed.
    """
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = np.stack([_LUMA, _CHROMA])
    tables = np.clip((tables * scale + 50) // 100, 1, 255)
    if transposed:
        tables = tables.reshape(2, 8, 8).transpose(0, 2, 1).reshape(2, 64)
    return tables[:, ZIGZAG].astype(np.float64)


def quantize(coefs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Zigzag coefficients ``(..., 64)`` to int64 levels: plain rounding for DC, dead zone for AC."""
    scaled = coefs / steps
    offset = np.full(64, AC_ROUNDING)
    offset[0] = 0.5
    return (np.sign(scaled) * np.floor(np.abs(scaled) + offset)).astype(np.int64)


def dequantize(levels: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Levels back to coefficients, non-zero AC levels pulled towards zero by the reconstruction bias."""
    bias = np.full(64, AC_RECONSTRUCTION_BIAS)
    bias[0] = 0.0
    mags = np.abs(levels).astype(np.float64)
    return np.sign(levels) * np.where(mags > 0, mags - bias, 0.0) * steps
