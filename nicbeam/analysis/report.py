"""The evaluation report: summary tables, BD-rate and AUC, plots and a Markdown page, written to a folder.

>>> from nicbeam.analysis import write_report
>>> write_report("gs://bucket/eval/metadata/", "gs://bucket/eval/report/")   # doctest: +SKIP

``output_dir`` is a local folder or an fsspec URL (``gs://``, ``s3://``, ``memory://``); files are
written through :func:`fsspec.open` for URLs. Written files:

* ``summary.csv`` / ``summary.parquet`` -- one row per codec setting (:func:`~nicbeam.analysis.rd_summary`)
* ``bd_rate.csv`` -- BD-rate of every curve vs the anchor (:func:`~nicbeam.analysis.bd_table`)
* ``auc.csv`` -- area under each curve over the common bpp interval (:func:`~nicbeam.analysis.auc_table`)
* ``rd_psnr_rgb.png``, ``rd_ms_ssim_db.png``, ``rd_psnr_hvs_m.png``, ``timing.png`` -- plots
* ``report.md`` -- all of the above for a person, plots embedded by relative path
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from nicbeam.analysis._io import Writer
from nicbeam.analysis.bd import (
    AUC_METRICS,
    default_bd_metrics,
    MIN_BD_POINTS,
    auc_table,
    bd_table,
    lossless_table,
    resolve_anchor,
)
from nicbeam.analysis.summary import (
    METRIC_LABELS,
    corpus_stats,
    curve_labels,
    curve_points,
    load_metadata,
    rd_summary,
)

REPORT_FILE = "report.md"


# --------------------------------------------------------------------------------------------- formatting
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value: Any, decimals: int = 2) -> str:
    """A number with fixed decimals; '–' for missing, '∞' for infinite."""
    if _missing(value):
        return "–"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.{decimals}f}"


def _bpp(value: Any) -> str:
    if _missing(value) or math.isinf(float(value)):
        return _num(value)
    return _num(value, 3 if abs(float(value)) >= 0.1 else 4)


def _pct(value: Any) -> str:
    if _missing(value):
        return "–"
    value = float(value)
    if abs(value) < 0.005:
        value = 0.0
    return f"{value:+.2f} %" if value else "0.00 %"


def _delta(value: Any, unit: str = "dB") -> str:
    if _missing(value):
        return "–"
    value = float(value)
    if abs(value) < 0.0005:
        value = 0.0
    return f"{value:+.3f} {unit}" if value else f"0.000 {unit}"


def _ms(value: Any) -> str:
    if _missing(value):
        return "–"
    value = float(value)
    return _num(value, 2 if value < 10 else 1 if value < 100 else 0)


def _count(value: Any) -> str:
    return "–" if _missing(value) else f"{int(value):,}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` has one of 'l', 'r', 'c' per column (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _megapixels(pixels: int) -> str:
    return f"{pixels:,} ({pixels / 1e6:,.2f} MP)"


# --------------------------------------------------------------------------------------------- sections
_PERCEPTUAL_HEADERS = {"lpips": "LPIPS (lower = closer)", "nima_mean": "NIMA mean"}


def _rd_points_section(summary: pd.DataFrame) -> list[str]:
    out = ["## RD points per curve", ""]
    out.append(
        "Each row is one codec setting: mean bits per pixel and mean per-image quality over its images. "
        "MS-SSIM dB is `-10·log10(1 − mean MS-SSIM)`."
    )
    out.append("")
    for label in curve_labels(summary):
        points = curve_points(summary, label)
        swept = points["swept_param"].iloc[0]
        out += [f"### {label}", ""]
        perceptual = [c for c in ("lpips", "nima_mean") if c in points and points[c].notna().any()]
        header = ["Setting"] + ([str(swept)] if swept else []) + [
            "bpp", "PSNR (dB)", "PSNR-Y (dB)", "MS-SSIM", "MS-SSIM (dB)", "PSNR-HVS (dB)", "PSNR-HVS-M (dB)",
            *(_PERCEPTUAL_HEADERS[c] for c in perceptual), "Images",
        ]
        rows = []
        for _, r in points.iterrows():
            rows.append(
                [f"`{r['setting']}`"]
                + ([r["swept_value"] if r["swept_value"] is not None else "–"] if swept else [])
                + [
                    _bpp(r["bpp"]), _num(r["psnr_rgb"]), _num(r["psnr_y"]), _num(r["ms_ssim"], 4),
                    _num(r["ms_ssim_db"]), _num(r["psnr_hvs"]), _num(r["psnr_hvs_m"]),
                    *(_num(r[c], 4 if c == "lpips" else 3) for c in perceptual), _count(r["n_images"]),
                ]
            )
        out += [_md_table(header, rows), ""]
    return out


def _bd_section(bd: pd.DataFrame, anchor: str, metrics: Sequence[str]) -> list[str]:
    out = [f"## BD-rate vs `{anchor}`", ""]
    out.append(
        "Bjøntegaard delta rate: the average change in bits a curve needs for the same quality as the anchor. "
        "**Negative = the curve saves bits compared with the anchor; positive = it needs more bits.** "
        "BD-PSNR is the average PSNR gain at the same rate (positive = better)."
    )
    out.append("")
    header = ["Curve", "Points"] + [METRIC_LABELS.get(m, m) for m in metrics]
    with_psnr = "psnr_rgb" in metrics
    if with_psnr:
        header.append("BD-PSNR")
    rows = []
    for _, r in bd.iterrows():
        name = f"**{r['curve']}** (anchor)" if r["curve"] == anchor else r["curve"]
        row = [name, _count(r["n_points"])] + [_pct(r[f"bd_rate_{m}"]) for m in metrics]
        if with_psnr:
            row.append(_delta(r["bd_psnr_rgb"]))
        rows.append(row)
    out += [_md_table(header, rows), ""]
    notes = [(r["curve"], r["note"]) for _, r in bd.iterrows() if r["note"]]
    if notes:
        out += ["Not computed (–):", ""]
        out += [f"- {curve}: {note}" for curve, note in notes]
        out.append("")
    return out


def _auc_section(auc: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    out = ["## Area under the RD curves", ""]
    if auc.empty:
        return out + ["_No lossy curves._", ""]
    low, high = auc["bpp_min"].iloc[0], auc["bpp_max"].iloc[0]
    if _missing(low):
        out.append("_The curves' bpp ranges have no interval in common, so no areas were computed._")
    else:
        out.append(
            f"Area under each quality-vs-bpp curve (points joined by straight lines) over **{_bpp(low)} – "
            f"{_bpp(high)} bpp**, the rate interval every curve covers. Higher is better. In brackets: the "
            "area divided by the interval width, i.e. the curve's average quality over it."
        )
    out.append("")
    header = ["Curve"] + [METRIC_LABELS.get(m, m) for m in metrics]
    rows = []
    for _, r in auc.iterrows():
        cells = [r["curve"]]
        for m in metrics:
            decimals = 4 if m == "ms_ssim" else 2
            area, mean = r[f"auc_{m}"], r[f"mean_{m}"]
            cells.append("–" if _missing(area) else f"{_num(area, decimals)} ({_num(mean, decimals)})")
        rows.append(cells)
    out += [_md_table(header, rows), ""]
    notes = [(r["curve"], r["note"]) for _, r in auc.iterrows() if r["note"]]
    if notes and not _missing(low):
        out += ["Not computed (–):", ""] + [f"- {curve}: {note}" for curve, note in notes] + [""]
    return out


def _lossless_section(lossless: pd.DataFrame) -> list[str]:
    out = ["## Lossless settings", ""]
    if lossless.empty:
        return out + ["_No lossless settings in this run._", ""]
    out.append("Lossless settings are not RD curves; they are compared by rate alone (lower is better).")
    out.append("")
    header = ["Setting", "Images", "Mean bpp", "Aggregate bpp", "Exact", "Encode ms", "Decode ms"]
    rows = []
    for _, r in lossless.iterrows():
        exact = "–" if r["exact"] is None else ("yes" if r["exact"] else "**no**")
        rows.append(
            [f"`{r['setting']}`", _count(r["n_images"]), _bpp(r["bpp"]), _bpp(r["bpp_aggregate"]), exact,
             _ms(r["encode_ms_mean"]), _ms(r["decode_ms_mean"])]
        )
    out += [_md_table(header, rows, "lrrrcrr"), ""]
    return out


def _timing_section(summary: pd.DataFrame, plot: str | None) -> list[str]:
    out = ["## Timing", ""]
    out.append(
        "Per-image wall-clock times recorded by the job (milliseconds), and throughput as total pixels over "
        "total time. Times depend on the worker machine and load; compare settings from the same run."
    )
    out.append("")
    if plot:
        out += [f"![Encode and decode time vs rate]({plot})", ""]
    header = ["Setting", "Encode mean", "Encode median", "Decode mean", "Decode median", "Encode MP/s",
              "Decode MP/s"]
    rows = []
    for _, r in summary.iterrows():
        rows.append(
            [f"`{r['setting']}`", _ms(r["encode_ms_mean"]), _ms(r["encode_ms_median"]), _ms(r["decode_ms_mean"]),
             _ms(r["decode_ms_median"]), _num(r["encode_mpix_per_s"], 1), _num(r["decode_mpix_per_s"], 1)]
        )
    out += [_md_table(header, rows), ""]
    return out


def _method_section(anchor: str | None, bd_written: bool) -> list[str]:
    return [
        "## How these numbers were computed",
        "",
        "- **RD point** of a setting: mean per-image bpp and mean per-image quality over the images "
        "(CompressAI's convention). MS-SSIM in dB is taken of the mean MS-SSIM. *Aggregate bpp* (total bits / "
        "total pixels) is in `summary.csv` next to the mean.",
        "- **Curves**: the lossy settings of one codec that differ only in the swept (quality-like) parameter.",
        f"- **BD-rate**: Bjøntegaard (VCEG-M33) with piecewise cubic (PCHIP) interpolation of log-rate over "
        f"the quality range both curves cover; a curve needs at least {MIN_BD_POINTS} points with finite "
        "quality, otherwise it is left out with a note.",
        "- **AUC**: trapezoidal area under the quality-vs-bpp line over the bpp interval common to all curves.",
        "- Files: `summary.csv`, `summary.parquet`"
        + (", `bd_rate.csv`" if bd_written else "")
        + ", `auc.csv`, the PNG plots and this page.",
        "",
    ]


def _perceptual_models(frame: pd.DataFrame) -> list[str]:
    """Which LPIPS / NIMA networks (trunk and weights SHA-256) produced the perceptual columns, if any."""
    out = []
    for column, name in (("lpips_model", "LPIPS"), ("nima_model", "NIMA")):
        if column in frame.columns:
            models = sorted(str(m) for m in frame[column].dropna().unique())
            if models:
                out.append(f"- **{name}** network (trunk:weights SHA-256): " + ", ".join(f"`{m}`" for m in models)
                           + ". The scores are only as meaningful as these weights (see docs/perceptual.md).")
    return out + [""] if out else []


# --------------------------------------------------------------------------------------------- entry point
def write_report(
    metadata: Any,
    output_dir: str | os.PathLike[str],
    anchor: str | None = None,
    *,
    compare_to: Sequence[str] = (),
    title: str = "Image compression report",
    bd_metrics: Sequence[str] | None = None,
    auc_metrics: Sequence[str] = AUC_METRICS,
) -> Path | str:
    """Summarise evaluate-job metadata into tables, plots and ``report.md`` under ``output_dir``.

    ``metadata`` is anything :func:`~nicbeam.analysis.load_metadata` accepts (Parquet path, dir, glob or URL,
    pyarrow Table, pandas DataFrame). ``anchor`` names the BD-rate reference curve: a curve label
    (``jpeg (subsampling=420)``) or a codec spec (``jpeg:subsampling=420``); by default the 4:2:0 JPEG curve,
    else the first curve. ``compare_to``: further anchors (same forms), each adding a BD-rate section and its
    rows to ``bd_rate.csv``; one that matches no curve is noted in the report, not raised. ``bd_metrics``:
    summary columns to compute BD-rate on (default :func:`~nicbeam.analysis.bd.default_bd_metrics`). Returns the path
    of ``report.md``: a :class:`pathlib.Path` for a local folder, the URL string for an fsspec URL.
    """
    from nicbeam.analysis.plots import RD_PLOTS, write_plots

    frame = load_metadata(metadata)
    summary = rd_summary(frame)
    stats = corpus_stats(frame)
    bd_metrics = default_bd_metrics(summary) if bd_metrics is None else tuple(bd_metrics)
    writer = Writer(output_dir)

    writer.write_text("summary.csv", summary.to_csv(index=False))
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(summary, preserve_index=False), buffer)
    writer.write_bytes("summary.parquet", buffer.getvalue())

    curves = curve_labels(summary)
    anchor_label = resolve_anchor(summary, anchor) if curves else None
    bd = bd_table(summary, anchor_label, bd_metrics) if anchor_label else None
    extra_bd: list[tuple[str, pd.DataFrame]] = []
    missing: list[str] = []
    for spec in compare_to if curves else ():
        try:
            label = resolve_anchor(summary, spec)
        except ValueError:
            missing.append(spec)
            continue
        if label != anchor_label and label not in [lab for lab, _ in extra_bd]:
            extra_bd.append((label, bd_table(summary, label, bd_metrics)))
    if bd is not None:
        writer.write_text("bd_rate.csv", pd.concat([bd, *(t for _, t in extra_bd)]).to_csv(index=False))
    else:
        writer.write_text("bd_rate.csv", "curve,anchor,note\n")
    auc = auc_table(summary, metrics=auc_metrics)
    writer.write_text("auc.csv", auc.to_csv(index=False))
    lossless = lossless_table(summary)
    plots = write_plots(summary, output_dir, anchor_label, RD_PLOTS)

    n_lossless = int(summary["lossless"].astype(bool).sum())
    lines = [f"# {title}", ""]
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(
        f"*{_plural(stats['n_images'], 'image')} · {_plural(len(summary), 'codec setting')} "
        f"({_plural(len(curves), 'RD curve')}, {n_lossless} lossless)" + (f" · BD-rate anchor `{anchor_label}`" if anchor_label else "")
        + f" · generated {created}*"
    )
    lines += ["", "## Corpus", ""]
    sizes = stats["sizes"]
    size_text = ", ".join(f"{w}×{h}" for w, h in sizes[:6]) + (f" and {len(sizes) - 6} more" if len(sizes) > 6 else "")
    corpus_rows = [
        ["Images", f"{stats['n_images']:,}"],
        ["Total pixels", _megapixels(stats["total_pixels"])],
        ["Image sizes (w×h)", size_text or "–"],
        ["Codec settings", f"{stats['n_settings']} ({len(curves)} curves, {n_lossless} lossless)"],
        ["Metadata rows", f"{stats['n_rows']:,}"],
    ]
    if stats["runs"]:
        corpus_rows.append(["Runs", ", ".join(f"`{r}`" for r in stats["runs"])])
    lines += [_md_table(["", ""], corpus_rows, "lr"), ""]
    short = summary[summary["n_images"] < stats["n_images"]]
    if not short.empty:
        lines.append(
            "**Note:** some settings cover fewer images than the corpus (failed or missing rows), so their "
            "means are over a different image set: "
            + ", ".join(f"`{s}` ({n})" for s, n in zip(short["setting"], short["n_images"]))
            + "."
        )
        lines.append("")

    lines += ["## Rate–distortion curves", ""]
    if curves:
        lines.append(
            "One line per curve through its settings' RD points (mean bpp, mean quality); up and to the left is "
            "better" + (" (for LPIPS, a distance: down and to the left)" if "lpips" in plots else "") + "."
            + (" The anchor is dashed." if anchor_label else "")
        )
        lines.append("")
        for metric in RD_PLOTS:
            if metric in plots:
                lines += [f"![{METRIC_LABELS.get(metric, metric)} vs bpp]({plots[metric]})", ""]
    else:
        lines += ["_No lossy settings, so no curves._", ""]

    if bd is not None and anchor_label is not None:
        lines += _bd_section(bd, anchor_label, bd_metrics)
    for label, table in extra_bd:
        lines += _bd_section(table, label, bd_metrics)
    if missing:
        lines += [f"_No curve matches the comparison anchor(s) {', '.join(f'`{m}`' for m in missing)}._", ""]
    lines += _auc_section(auc, auc_metrics)
    if curves:
        lines += _rd_points_section(summary)
    lines += _lossless_section(lossless)
    lines += _timing_section(summary, plots.get("timing"))
    lines += _method_section(anchor_label, bd is not None)
    lines += _perceptual_models(frame)
    writer.write_text(REPORT_FILE, "\n".join(lines).rstrip() + "\n")
    return writer.location(REPORT_FILE)
