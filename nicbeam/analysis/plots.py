"""Rate-distortion and timing plots of an RD summary, drawn with matplotlib's Agg canvas (never a display).

Figures are built with :class:`matplotlib.figure.Figure` directly, not pyplot, so nothing global is touched
and plotting is safe in workers and threads. Each curve is one line with markers through its settings'
RD points (mean bpp, mean quality), sorted by bpp; the anchor curve is dashed. A curve keeps its colour
and marker across all figures of a summary.
"""

from __future__ import annotations

import io
import itertools
import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nicbeam.analysis._io import Writer
from nicbeam.analysis.summary import LOWER_IS_BETTER, METRIC_LABELS, METRIC_UNITS, curve_labels, curve_points

#: The RD plots written by :func:`write_plots`: summary column -> file name.
RD_PLOTS: dict[str, str] = {
    "psnr_rgb": "rd_psnr_rgb.png",
    "ms_ssim_db": "rd_ms_ssim_db.png",
    "psnr_hvs_m": "rd_psnr_hvs_m.png",
    "lpips": "rd_lpips.png",  # drawn only when the run computed it (evaluate --metric lpips)
    "nima_mean": "rd_nima_mean.png",
}
#: File name of the encode/decode time plot.
TIMING_PLOT = "timing.png"

FIGSIZE = (7.5, 5.0)
DPI = 130
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")


def _metric_axis_label(metric: str) -> str:
    name = METRIC_LABELS.get(metric, metric)
    unit = METRIC_UNITS.get(metric, "")
    label = f"{name} [{unit}]" if unit else name
    return f"{label}, lower is better" if metric in LOWER_IS_BETTER else label


def curve_styles(summary: pd.DataFrame, anchor: str | None = None) -> dict[str, dict[str, Any]]:
    """Matplotlib line styles per curve label: one colour and marker each, the anchor dashed."""
    from matplotlib import colormaps

    labels = curve_labels(summary)
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    markers = itertools.cycle(_MARKERS)
    styles = {}
    for index, label in enumerate(labels):
        styles[label] = {
            "color": cmap(index % cmap.N),
            "marker": next(markers),
            "linestyle": "--" if label == anchor else "-",
            "linewidth": 2.0 if label == anchor else 1.6,
            "markersize": 5.5,
            "label": f"{label} (anchor)" if label == anchor else label,
        }
    return styles


def _new_figure(figsize: tuple[float, float] = FIGSIZE, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=True)
    return fig, axes


def rd_figure(
    summary: pd.DataFrame, metric: str = "psnr_rgb", anchor: str | None = None, title: str | None = None
) -> Any:
    """A quality-vs-bpp figure with one line per curve; None when no curve has a finite point for ``metric``."""
    styles = curve_styles(summary, anchor)
    fig, ax = _new_figure()
    drawn = 0
    for label in curve_labels(summary):
        points = curve_points(summary, label)
        x = points["bpp"].to_numpy(dtype=np.float64)
        y = points[metric].to_numpy(dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        if not keep.any():
            continue
        ax.plot(x[keep], y[keep], **styles[label])
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("Rate [bits per pixel]")
    ax.set_ylabel(_metric_axis_label(metric))
    ax.set_title(title or f"{METRIC_LABELS.get(metric, metric)} vs rate")
    ax.set_xlim(left=0)
    ax.grid(True, which="major", alpha=0.35)
    ax.minorticks_on()
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="upper right" if metric in LOWER_IS_BETTER else "lower right", fontsize="small", framealpha=0.9)
    return fig


def timing_figure(summary: pd.DataFrame, anchor: str | None = None) -> Any:
    """Mean encode and decode time per image against bpp (log time axis); lossless settings as single marks."""
    styles = curve_styles(summary, anchor)
    fig, axes = _new_figure((11.0, 4.6), ncols=2)
    drawn = 0
    for ax, kind in zip(axes, ("encode", "decode")):
        column = f"{kind}_ms_mean"
        for label in curve_labels(summary):
            points = curve_points(summary, label)
            x = points["bpp"].to_numpy(dtype=np.float64)
            y = points[column].to_numpy(dtype=np.float64)
            keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
            if keep.any():
                ax.plot(x[keep], y[keep], **styles[label])
                drawn += 1
        lossless = summary[summary["lossless"].astype(bool)]
        for index, (_, row) in enumerate(lossless.iterrows()):
            if np.isfinite(row["bpp"]) and np.isfinite(row[column]) and row[column] > 0:
                ax.plot(
                    [row["bpp"]], [row[column]], linestyle="none", marker="*", markersize=10,
                    color=str(0.15 + 0.5 * (index % 3) / 2), label=f"{row['setting']} (lossless)",
                )
                drawn += 1
        ax.set_yscale("log")
        ax.set_xscale("log")
        _plain_log_labels(ax.xaxis)
        _plain_log_labels(ax.yaxis)
        ax.set_xlabel("Rate [bits per pixel, log scale]")
        ax.set_ylabel(f"mean {kind} time per image [ms, log scale]")
        ax.set_title(f"{kind.capitalize()} time")
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        return None
    axes[1].legend(loc="best", fontsize="x-small", framealpha=0.9)
    return fig


def _plain_log_labels(axis: Any) -> None:
    """Label a log axis 0.5, 1, 2, 5, 10 ... rather than in powers-of-ten notation."""
    from matplotlib.ticker import FuncFormatter

    def major(value: float, _pos: int) -> str:
        return f"{value:g}"

    def minor(value: float, _pos: int) -> str:
        mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
        return f"{value:g}" if round(mantissa) in (2, 5) else ""

    axis.set_major_formatter(FuncFormatter(major))
    axis.set_minor_formatter(FuncFormatter(minor))


def figure_png(fig: Any, dpi: int = DPI) -> bytes:
    """The figure rendered as PNG bytes (Agg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_plots(
    summary: pd.DataFrame,
    output_dir: str | os.PathLike[str],
    anchor: str | None = None,
    metrics: Mapping[str, str] | Sequence[str] | None = None,
    timing: bool = True,
) -> dict[str, str]:
    """Write the RD plots (and the timing plot) as PNG files into ``output_dir`` (a local path or an fsspec
    URL); returns ``{metric or 'timing': file name}`` for the plots that had something to draw."""
    if metrics is None:
        names = dict(RD_PLOTS)
    elif isinstance(metrics, Mapping):
        names = dict(metrics)
    else:
        names = {m: RD_PLOTS.get(m, f"rd_{m}.png") for m in metrics}
    writer = Writer(output_dir)
    written: dict[str, str] = {}
    for metric, filename in names.items():
        fig = rd_figure(summary, metric, anchor)
        if fig is not None:
            writer.write_bytes(filename, figure_png(fig))
            written[metric] = filename
    if timing:
        fig = timing_figure(summary, anchor)
        if fig is not None:
            writer.write_bytes(TIMING_PLOT, figure_png(fig))
            written["timing"] = TIMING_PLOT
    return written
