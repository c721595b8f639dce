"""Quality measurement of a decoded image against its original, as stored in the metadata rows.

Levels: ``none`` (no decode), ``fast`` (decode + PSNR and PSNR-Y: a few ms, the default of
``compress``, where the round trip doubles as a check that every written stream decodes) and ``all``
(adds MS-SSIM, MS-SSIM dB, PSNR-HVS and PSNR-HVS-M: the default of ``evaluate``). A metric that is not
defined for an image (MS-SSIM below 161 px a side, PSNR-HVS below one 8x8 block) is recorded as null,
never as an error: the image was compressed fine. Lossless reconstructions give ``inf`` PSNRs (Parquet,
DuckDB and pandas all keep IEEE infinities).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LEVELS = ("none", "fast", "all")

_UNDEFINED = (ValueError, ZeroDivisionError, FloatingPointError)


def _safe(fn, *args) -> Any:
    try:
        return fn(*args)
    except _UNDEFINED:
        return None


def identical_quality(level: str) -> dict:
    """Metrics of a bit-exact reconstruction (``jpeg-transcode``, or any lossless codec)."""
    if level == "none":
        return {}
    out = {"psnr_rgb": math.inf, "psnr_y": math.inf}
    if level == "all":
        out.update({"ms_ssim": 1.0, "ms_ssim_db": math.inf, "psnr_hvs": math.inf, "psnr_hvs_m": math.inf})
    return out


def quality(original: np.ndarray, decoded: np.ndarray, level: str, ms_ssim_value: float | None = None) -> dict:
    """The metric columns for one (original, decoded) pair at ``level``.

    ``ms_ssim_value`` lets the caller pass an MS-SSIM computed in a batch (see :func:`ms_ssim_many`).
    """
    from nicbeam import metrics

    if level == "none":
        return {}
    if original.shape == decoded.shape and np.array_equal(original, decoded):
        return identical_quality(level)
    out = {"psnr_rgb": _safe(metrics.psnr, original, decoded), "psnr_y": _safe(metrics.psnr_y, original, decoded)}
    if level == "all":
        value = ms_ssim_value if ms_ssim_value is not None else _safe(metrics.ms_ssim, original, decoded)
        out["ms_ssim"] = value
        out["ms_ssim_db"] = _safe(metrics.ms_ssim_db, value) if value is not None else None
        hvs = _safe(metrics.psnr_hvs_hvsm, original, decoded)
        out["psnr_hvs"], out["psnr_hvs_m"] = hvs if hvs is not None else (None, None)
    return out


def ms_ssim_many(original: np.ndarray, decoded: list[np.ndarray]) -> list[float | None]:
    """MS-SSIM of several reconstructions of one image in one batch (they share its size); None where
    undefined (image too small) or where the reconstruction is identical (handled as lossless)."""
    from nicbeam import metrics

    todo = [i for i, d in enumerate(decoded) if d is not None and not np.array_equal(original, d)]
    values: list[float | None] = [None] * len(decoded)
    from nicbeam.metrics.msssim import MS_SSIM_MIN_SIDE

    if not todo or min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        return values
    try:
        batch = metrics.ms_ssim_batch([(original, decoded[i]) for i in todo])
    except _UNDEFINED:
        return values
    for i, v in zip(todo, batch):
        values[i] = float(v)
    return values
