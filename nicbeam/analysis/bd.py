"""Curve comparisons of an RD summary: BD-rate against an anchor curve, area under the curves, lossless table.

The numbers come from :func:`nicbeam.metrics.bd_rate`, :func:`nicbeam.metrics.bd_psnr` and
:func:`nicbeam.metrics.auc` applied to the curves' RD points (mean per-image bpp and mean per-image quality,
see :mod:`nicbeam.analysis.summary`). Comparisons that cannot be made (too few points, curves that do not
overlap, a non-monotonic curve, infinite quality) give NaN and a note saying why; they never raise.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nicbeam.analysis.summary import (
    LOWER_IS_BETTER,
    METRIC_LABELS,
    QUALITY_COLUMNS,
    _norm_value,
    codec_defaults,
    curve_labels,
    curve_points,
    parse_setting_label,
)
from nicbeam.metrics import auc, bd_psnr, bd_rate

#: Metrics compared by default in :func:`bd_table` (summary columns; higher is better for all).
BD_METRICS: tuple[str, ...] = ("psnr_rgb", "psnr_y", "ms_ssim_db", "psnr_hvs", "psnr_hvs_m")
#: Metrics integrated by default in :func:`auc_table` (Toderici et al. 2017 use MS-SSIM and PSNR-HVS).
AUC_METRICS: tuple[str, ...] = ("psnr_rgb", "ms_ssim", "psnr_hvs", "psnr_hvs_m")
#: Points a curve needs for BD-rate: the four rate points of the JVET/JCT-VC common test conditions.
MIN_BD_POINTS = 4
#: Summary columns BD-rate can be computed on, and short names accepted for them (``--bd-metric``).
BD_METRIC_CHOICES: tuple[str, ...] = (*QUALITY_COLUMNS, "ms_ssim_db", "ms_ssim_db_mean")
BD_METRIC_ALIASES: dict[str, str] = {"psnr": "psnr_rgb", "ms-ssim": "ms_ssim_db", "psnr-hvs": "psnr_hvs",
                                     "psnr-hvs-m": "psnr_hvs_m", "nima": "nima_mean"}


def resolve_bd_metrics(names: Sequence[str]) -> tuple[str, ...]:
    """Summary columns for metric names or aliases, in order, without repeats; ValueError for unknown ones."""
    resolved = []
    for name in names:
        column = BD_METRIC_ALIASES.get(name.strip().lower(), name.strip())
        if column not in BD_METRIC_CHOICES:
            raise ValueError(f"unknown BD-rate metric {name!r}; choose from {', '.join(BD_METRIC_CHOICES)} "
                             f"or {', '.join(BD_METRIC_ALIASES)}")
        if column not in resolved:
            resolved.append(column)
    return tuple(resolved)


def default_bd_metrics(summary: pd.DataFrame) -> tuple[str, ...]:
    """:data:`BD_METRICS`, plus ``lpips`` when the run computed it (some finite value in the summary)."""
    has_lpips = "lpips" in summary.columns and bool(np.isfinite(summary["lpips"].to_numpy(np.float64)).any())
    return (*BD_METRICS, "lpips") if has_lpips else BD_METRICS


# --------------------------------------------------------------------------------------------- anchor
def default_anchor(summary: pd.DataFrame) -> str:
    """The first ``jpeg`` curve with 4:2:0 chroma subsampling if there is one, else the first curve."""
    labels = curve_labels(summary)
    if not labels:
        raise ValueError("the summary has no lossy curves to compare")
    jpeg = [label for label in labels if _curve_row(summary, label)["codec"] == "jpeg"]
    for label in jpeg:
        fixed = _fixed_params(summary, label)
        if fixed.get("subsampling", fixed.get("chroma_subsampling")) in ("420", "4:2:0"):
            return label
    for label in jpeg:
        fixed = _fixed_params(summary, label)
        if "subsampling" not in fixed and "chroma_subsampling" not in fixed:
            return label
    return labels[0]


def resolve_anchor(summary: pd.DataFrame, anchor: str | None = None) -> str:
    """The label of the curve named by ``anchor``: None (see :func:`default_anchor`), a curve label such as
    ``jpeg (subsampling=444)``, or a codec spec such as ``jpeg``, ``jpeg:subsampling=444`` or
    ``jpeg:quality=30,50,70,90:subsampling=420``, matched by codec name and the curve's fixed parameters
    (the swept parameter in a spec is ignored). When a spec matches several curves, the one with the codec's
    default values for the unnamed parameters is preferred, else the first. Raises ValueError if none match.
    """
    if anchor is None:
        return default_anchor(summary)
    labels = curve_labels(summary)
    if anchor in labels:
        return anchor
    codec, given = parse_setting_label(anchor)
    candidates = [label for label in labels if _curve_row(summary, label)["codec"] == codec]
    matches = []
    for label in candidates:
        row = _curve_row(summary, label)
        fixed = _fixed_params(summary, label)
        ok = True
        for key, value in given.items():
            if key == row["swept_param"]:
                continue
            wanted = {_norm_value(v) for v in value.split(",") if v.strip()}
            if fixed.get(key) not in wanted:
                ok = False
                break
        if ok:
            matches.append(label)
    if not matches:
        raise ValueError(f"anchor {anchor!r} matches no curve; curves: {', '.join(labels) or 'none'}")
    if len(matches) > 1:
        defaults = codec_defaults(codec)
        preferred = [
            label
            for label in matches
            if all(_fixed_params(summary, label).get(k, v) == v for k, v in defaults.items() if k not in given)
        ]
        if preferred:
            return preferred[0]
    return matches[0]


def _curve_row(summary: pd.DataFrame, label: str) -> pd.Series:
    return summary[summary["curve"] == label].iloc[0]


def _fixed_params(summary: pd.DataFrame, label: str) -> dict[str, str]:
    text = _curve_row(summary, label)["curve_params"]
    return json.loads(text) if isinstance(text, str) else {}


# --------------------------------------------------------------------------------------------- BD-rate
def _finite_points(points: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
    rate = points["bpp"].to_numpy(dtype=np.float64)
    quality = points[metric].to_numpy(dtype=np.float64)
    keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
    return rate[keep], quality[keep], int((~keep).sum())


def _compare(
    anchor: pd.DataFrame, test: pd.DataFrame, metric: str, min_points: int
) -> tuple[float, float, str]:
    """(BD-rate %, BD-quality, reason it is NaN or '') of ``test`` against ``anchor`` for one metric."""
    if metric not in test.columns:
        return math.nan, math.nan, "not in the summary"
    ra, qa, dropped_a = _finite_points(anchor, metric)
    rt, qt, dropped_t = _finite_points(test, metric)
    for who, count, dropped in (("anchor", ra.size, dropped_a), ("curve", rt.size, dropped_t)):
        if count < min_points:
            extra = f" ({dropped} without a finite value)" if dropped else ""
            return math.nan, math.nan, f"{who} has {count} usable point(s){extra}; BD-rate needs at least {min_points}"
    if max(qa.min(), qt.min()) >= min(qa.max(), qt.max()):
        return (
            math.nan,
            math.nan,
            f"no quality overlap (anchor {qa.min():.4g}..{qa.max():.4g}, curve {qt.min():.4g}..{qt.max():.4g})",
        )
    higher = metric not in LOWER_IS_BETTER
    try:
        rate_pct = bd_rate(ra, qa, rt, qt, min_points=min_points, higher_is_better=higher)
    except ValueError as err:
        return math.nan, math.nan, str(err)
    try:
        quality_delta = bd_psnr(ra, qa, rt, qt, min_points=min_points, higher_is_better=higher)
    except ValueError:
        quality_delta = math.nan  # rate ranges do not overlap; the BD-rate above still stands
    return rate_pct, quality_delta, ""


def _join_notes(reasons: Sequence[tuple[str, str]]) -> str:
    """``[(metric, reason), ...]`` as one note, metrics sharing a reason listed together."""
    grouped: dict[str, list[str]] = {}
    for metric, reason in reasons:
        if reason:
            grouped.setdefault(reason, []).append(METRIC_LABELS.get(metric, metric))
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in grouped.items())


def bd_table(
    summary: pd.DataFrame,
    anchor_curve: str | None = None,
    metrics: Sequence[str] = BD_METRICS,
    *,
    min_points: int = MIN_BD_POINTS,
) -> pd.DataFrame:
    """BD-rate of every curve against ``anchor_curve`` (resolved by :func:`resolve_anchor`), per metric.

    One row per curve (the anchor included, at 0 %), columns ``curve``, ``codec``, ``anchor``,
    ``n_points``, then for each metric ``bd_rate_<metric>`` (percent; negative = the curve needs fewer
    bits than the anchor for the same quality) and ``bd_<metric>`` (mean quality difference at equal
    rate, in the metric's unit: BD-PSNR for PSNR; for :data:`LOWER_IS_BETTER` metrics such as LPIPS the
    curves are compared on negated values and a negative ``bd_<metric>`` means better), and ``note``
    explaining each NaN. Rates are the mean
    per-image bpp of each setting; a curve needs ``min_points`` points with finite values.
    """
    anchor_label = resolve_anchor(summary, anchor_curve)
    anchor_points = curve_points(summary, anchor_label)
    rows = []
    for label in curve_labels(summary):
        points = curve_points(summary, label)
        row: dict[str, Any] = {
            "curve": label,
            "codec": points["codec"].iloc[0],
            "anchor": anchor_label,
            "n_points": int(len(points)),
        }
        reasons = []
        for metric in metrics:
            rate_pct, quality_delta, reason = _compare(anchor_points, points, metric, min_points)
            row[f"bd_rate_{metric}"] = rate_pct
            row[f"bd_{metric}"] = quality_delta
            reasons.append((metric, reason))
        row["note"] = _join_notes(reasons)
        rows.append(row)
    columns = ["curve", "codec", "anchor", "n_points"]
    columns += [f"bd_rate_{m}" for m in metrics] + [f"bd_{m}" for m in metrics] + ["note"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------- AUC
def common_bpp_range(summary: pd.DataFrame) -> tuple[float, float] | None:
    """The intersection of the bpp ranges of all curves with at least 2 points; None if it is empty."""
    lows, highs = [], []
    for label in curve_labels(summary):
        rate = curve_points(summary, label)["bpp"].to_numpy(dtype=np.float64)
        rate = rate[np.isfinite(rate)]
        if rate.size >= 2:
            lows.append(rate.min())
            highs.append(rate.max())
    if not lows:
        return None
    low, high = float(max(lows)), float(min(highs))
    return (low, high) if low < high else None


def auc_table(
    summary: pd.DataFrame,
    bpp_range: tuple[float, float] | None = None,
    metrics: Sequence[str] = AUC_METRICS,
) -> pd.DataFrame:
    """Area under each curve's quality-vs-bpp line over one bpp interval, per metric.

    The interval is ``bpp_range`` or, by default, the intersection of the bpp ranges of all curves with at
    least two points (:func:`common_bpp_range`), so every curve is integrated over the same rates and the
    areas compare directly. Points are joined linearly (:func:`nicbeam.metrics.auc`). Columns: ``curve``,
    ``codec``, ``bpp_min``, ``bpp_max``, ``auc_<metric>`` (quality x bpp), ``mean_<metric>`` (the area
    divided by the interval width: the curve's average quality over it) and ``note`` for each NaN (a curve
    that does not span the interval, has fewer than two points, or no common interval exists).
    """
    interval = tuple(bpp_range) if bpp_range is not None else common_bpp_range(summary)
    rows = []
    for label in curve_labels(summary):
        points = curve_points(summary, label)
        row: dict[str, Any] = {
            "curve": label,
            "codec": points["codec"].iloc[0],
            "bpp_min": interval[0] if interval else math.nan,
            "bpp_max": interval[1] if interval else math.nan,
        }
        reasons = []
        for metric in metrics:
            value = math.nan
            if interval is None:
                reasons.append((metric, "the curves' bpp ranges have no common interval"))
            elif metric not in points.columns:
                reasons.append((metric, "not in the summary"))
            else:
                rate, quality, _ = _finite_points(points, metric)
                if rate.size < 2:
                    reasons.append((metric, f"{rate.size} usable point(s), AUC needs at least 2"))
                else:
                    try:
                        value = auc(rate, quality, float(interval[0]), float(interval[1]))
                    except ValueError as err:
                        reasons.append((metric, str(err)))
            row[f"auc_{metric}"] = value
            width = (interval[1] - interval[0]) if interval else math.nan
            row[f"mean_{metric}"] = value / width if interval and width > 0 else math.nan
        row["note"] = _join_notes(reasons)
        rows.append(row)
    columns = ["curve", "codec", "bpp_min", "bpp_max"]
    columns += [f"auc_{m}" for m in metrics] + [f"mean_{m}" for m in metrics] + ["note"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------- lossless
def lossless_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The lossless settings: rate (mean and aggregate bpp), whether every image came back exact, timings."""
    rows = summary[summary["lossless"].astype(bool)]
    table = rows[
        [
            "codec",
            "setting",
            "n_images",
            "bpp",
            "bpp_aggregate",
            "encode_ms_mean",
            "decode_ms_mean",
            "encode_mpix_per_s",
            "decode_mpix_per_s",
        ]
    ].copy()
    # psnr_rgb is +inf for an exact reconstruction; the mean is +inf only if every image was exact.
    psnr_values = rows["psnr_rgb"].to_numpy(dtype=np.float64)
    exact = [None if math.isnan(v) else bool(np.isposinf(v)) for v in psnr_values]
    table.insert(5, "exact", pd.Series(exact, index=table.index, dtype=object))
    return table.sort_values(["bpp", "setting"], kind="stable").reset_index(drop=True)
