"""Rate-distortion curve comparisons: Bjontegaard delta rate and quality, and area under the curve.

BD-rate and BD-quality follow G. Bjontegaard, "Calculation of average PSNR differences between RD-curves"
(VCEG-M33, 2001) with the piecewise cubic Hermite interpolation (PCHIP) of the JCT-VC/JVET common test
conditions spreadsheets (JCTVC-L1100, JVET-T2010), as implemented by the ``bjontegaard`` package
(FAU-LMS, method ``'pchip'``): interpolate log-rate as a function of quality (or quality as a function
of log-rate), integrate both curves over the interval where they overlap and average the difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

#: Points per curve required by default: the four QPs/quality settings of the JVET/JCT-VC test conditions.
MIN_POINTS = 4


def _curve(
    rates: Sequence[float], qualities: Sequence[float], name: str, min_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the curve's (rates, qualities) as float64 arrays sorted by rate, after checking them."""
    if min_points < 2:
        raise ValueError(f"min_points must be >= 2 (PCHIP needs two points), got {min_points}")
    rate = np.asarray(rates, dtype=np.float64)
    quality = np.asarray(qualities, dtype=np.float64)
    if rate.ndim != 1 or quality.ndim != 1 or rate.shape != quality.shape:
        raise ValueError(f"{name}: rates and qualities must be 1-D sequences of the same length")
    if rate.size < min_points:
        raise ValueError(f"{name}: need at least {min_points} rate-quality points, got {rate.size}")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(quality))):
        raise ValueError(f"{name}: rates and qualities must be finite")
    if np.any(rate <= 0):
        raise ValueError(f"{name}: rates must be positive (they are compared on a log scale)")
    order = np.argsort(rate, kind="stable")
    rate, quality = rate[order], quality[order]
    if np.any(np.diff(rate) <= 0) or np.any(np.diff(quality) <= 0):
        raise ValueError(
            f"{name}: the curve must be strictly monotonic (quality rising with rate, no repeated values); "
            f"rates {rate.tolist()}, qualities {quality.tolist()}"
        )
    return rate, quality


def _oriented(qualities: Sequence[float], higher_is_better: bool) -> np.ndarray:
    """Qualities as given, or negated for a lower-is-better distance, so curves rise with rate either way."""
    values = np.asarray(qualities, dtype=np.float64)
    return values if higher_is_better else -values


def _overlap(x_anchor: np.ndarray, x_test: np.ndarray, axis: str) -> tuple[float, float]:
    """Return the interval of ``axis`` values covered by both curves, or raise if they do not overlap."""
    low = max(x_anchor[0], x_test[0])
    high = min(x_anchor[-1], x_test[-1])
    if high <= low:
        raise ValueError(
            f"the curves' {axis} ranges do not overlap: anchor [{x_anchor[0]:g}, {x_anchor[-1]:g}], "
            f"test [{x_test[0]:g}, {x_test[-1]:g}]"
        )
    return float(low), float(high)


def _mean_difference(
    x_anchor: np.ndarray, y_anchor: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, axis: str
) -> float:
    """Return the mean of ``y_test(x) - y_anchor(x)`` over the common x interval, both PCHIP-interpolated."""
    low, high = _overlap(x_anchor, x_test, axis)
    area_anchor = PchipInterpolator(x_anchor, y_anchor).integrate(low, high)
    area_test = PchipInterpolator(x_test, y_test).integrate(low, high)
    return float((area_test - area_anchor) / (high - low))


def bd_rate(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    min_points: int = MIN_POINTS,
    *,
    higher_is_better: bool = True,
) -> float:
    """Return the BD-rate in percent: the test's mean rate change at equal quality (negative = fewer bits).

    ``dist_*`` are qualities where higher is better (PSNR, MS-SSIM dB, ...); rates in any positive unit.
    For a distance where lower is better (LPIPS) pass ``higher_is_better=False``: the curves are compared
    on the negated values, so the sign convention of the result stays the same.
    """
    rate_a, qual_a = _curve(rate_anchor, _oriented(dist_anchor, higher_is_better), "anchor", min_points)
    rate_t, qual_t = _curve(rate_test, _oriented(dist_test, higher_is_better), "test", min_points)
    mean_log_ratio = _mean_difference(qual_a, np.log10(rate_a), qual_t, np.log10(rate_t), "quality")
    return float((10.0**mean_log_ratio - 1.0) * 100.0)


def bd_psnr(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    min_points: int = MIN_POINTS,
    *,
    higher_is_better: bool = True,
) -> float:
    """Return the BD-quality (BD-PSNR for PSNR): the test's mean quality difference at equal rate, in its
    units (test minus anchor; for ``higher_is_better=False`` a negative value means the test is better)."""
    rate_a, qual_a = _curve(rate_anchor, _oriented(dist_anchor, higher_is_better), "anchor", min_points)
    rate_t, qual_t = _curve(rate_test, _oriented(dist_test, higher_is_better), "test", min_points)
    delta = _mean_difference(np.log10(rate_a), qual_a, np.log10(rate_t), qual_t, "log-rate")
    return delta if higher_is_better else -delta


def auc(rates: Sequence[float], qualities: Sequence[float], bpp_min: float, bpp_max: float) -> float:
    """Return the area under the quality-vs-bpp curve on [bpp_min, bpp_max], linear between measured points.

    Toderici et al. 2017 ("Full resolution image compression with recurrent neural networks") compare codecs
    by this area under their MS-SSIM and PSNR-HVS curves; the interval must lie within the measured rates.
    """
    rate = np.asarray(rates, dtype=np.float64)
    quality = np.asarray(qualities, dtype=np.float64)
    if rate.ndim != 1 or quality.ndim != 1 or rate.shape != quality.shape:
        raise ValueError("rates and qualities must be 1-D sequences of the same length")
    if rate.size < 2:
        raise ValueError(f"need at least 2 rate-quality points, got {rate.size}")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(quality))):
        raise ValueError("rates and qualities must be finite")
    if not bpp_min < bpp_max:
        raise ValueError(f"need bpp_min < bpp_max, got [{bpp_min}, {bpp_max}]")
    order = np.argsort(rate, kind="stable")
    rate, quality = rate[order], quality[order]
    if np.any(np.diff(rate) == 0):
        raise ValueError(f"rates must be distinct, got {rate.tolist()}")
    if bpp_min < rate[0] or bpp_max > rate[-1]:
        raise ValueError(
            f"interval [{bpp_min:g}, {bpp_max:g}] bpp is not covered by the measured rates "
            f"[{rate[0]:g}, {rate[-1]:g}]"
        )
    inside = (rate > bpp_min) & (rate < bpp_max)
    x = np.concatenate(([bpp_min], rate[inside], [bpp_max]))
    y = np.interp(x, rate, quality)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
