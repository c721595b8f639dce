"""Figures of a recompress run from its manifest: totals, savings by mode and by source format, kept and
failed files by reason, and a Markdown report with a histogram of per-file savings (matplotlib Agg).

Bytes *after* count what the archive holds once the run is applied: the output for recompressed files,
the untouched original for kept and failed ones, so savings are those of the whole corpus.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from typing import Any

PLOT_NAME = "savings.png"
REPORT_NAME = "report.md"


def _group(rows: list[dict], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = row.get(key) or "none"
        g = groups.setdefault(name, {"files": 0, "recompressed": 0, "bytes_before": 0, "bytes_after": 0})
        before = row.get("source_bytes") or 0
        after = row["output_bytes"] if row["status"] == "recompressed" else before
        g["files"] += 1
        g["recompressed"] += row["status"] == "recompressed"
        g["bytes_before"] += before
        g["bytes_after"] += after
    for g in groups.values():
        g["bytes_saved"] = g["bytes_before"] - g["bytes_after"]
        g["saved_pct"] = round(100.0 * g["bytes_saved"] / g["bytes_before"], 2) if g["bytes_before"] else 0.0
    return dict(sorted(groups.items()))


def recompress_stats(rows: list[dict]) -> dict[str, Any]:
    """The run summary of manifest rows (dicts with the manifest columns)."""
    total = _group([{**r, "all": "all"} for r in rows], "all").get("all", {
        "files": 0, "recompressed": 0, "bytes_before": 0, "bytes_after": 0, "bytes_saved": 0, "saved_pct": 0.0})
    status = Counter(r["status"] for r in rows)
    return {
        "files": len(rows),
        "by_status": dict(sorted(status.items())),
        "resumed": sum(1 for r in rows if r.get("resumed")),
        "bytes_before": total["bytes_before"],
        "bytes_after": total["bytes_after"],
        "bytes_saved": total["bytes_saved"],
        "saved_pct": total["saved_pct"],
        "by_mode": _group(rows, "mode"),
        "by_source_format": _group(rows, "source_format"),
        "kept_by_reason": dict(sorted(Counter(r["reason"] for r in rows if r["status"] == "kept").items())),
        "failed_by_reason": dict(sorted(Counter(r["reason"] for r in rows if r["status"] == "failed").items())),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A few lines for the end of the run's log."""
    mb = 1e6
    lines = [
        f"[nicbeam] recompress: {stats['files']} files "
        + ", ".join(f"{n} {k}" for k, n in stats["by_status"].items())
        + f" ({stats['resumed']} resumed); {stats['bytes_before'] / mb:.3f} MB -> {stats['bytes_after'] / mb:.3f} MB, "
        f"saved {stats['bytes_saved'] / mb:.3f} MB ({stats['saved_pct']:.2f} %)",
    ]
    for title, key in (("by mode", "by_mode"), ("by source format", "by_source_format")):
        parts = [f"{name} {g['recompressed']}/{g['files']} files {g['saved_pct']:.2f} %"
                 for name, g in stats[key].items()]
        lines.append(f"[nicbeam] savings {title}: " + ("; ".join(parts) or "none"))
    for title, key in (("kept", "kept_by_reason"), ("failed", "failed_by_reason")):
        reasons = ", ".join(f"{k}={v}" for k, v in stats[key].items()) or "none"
        lines.append(f"[nicbeam] {title} by reason: {reasons}")
    return "\n".join(lines)


def savings_png(rows: list[dict]) -> bytes | None:
    """Histogram of per-file savings (% of the source) of recompressed files, one colour per mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_mode: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] == "recompressed" and r.get("source_bytes"):
            by_mode.setdefault(r["mode"], []).append(100.0 * r["bytes_saved"] / r["source_bytes"])
    if not by_mode:
        return None
    fig = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    values = [v for vs in by_mode.values() for v in vs]
    low, high = min(0.0, min(values)), max(values)
    bins = [low + (high - low) * i / 30 for i in range(31)] if high > low else 10
    for mode, vs in sorted(by_mode.items()):
        ax.hist(vs, bins=bins, alpha=0.6, label=f"{mode} ({len(vs)} files)")
    ax.set_xlabel("bytes saved per file [% of the source]")
    ax.set_ylabel("files")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("recompress: savings distribution")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _md_groups(groups: dict[str, dict[str, Any]], label: str) -> list[str]:
    lines = [f"| {label} | files | recompressed | MB before | MB after | saved |", "|---|---:|---:|---:|---:|---:|"]
    for name, g in groups.items():
        lines.append(f"| {name} | {g['files']} | {g['recompressed']} | {g['bytes_before'] / 1e6:.3f} | "
                     f"{g['bytes_after'] / 1e6:.3f} | {g['saved_pct']:.2f} % |")
    return lines


def report_markdown(stats: dict[str, Any], run_id: str, plot: bool) -> str:
    lines = [
        f"# nicbeam recompress: run {run_id}", "",
        f"{stats['files']} files ({', '.join(f'{n} {k}' for k, n in stats['by_status'].items())}; "
        f"{stats['resumed']} resumed from an earlier run): {stats['bytes_before'] / 1e6:.3f} MB -> "
        f"{stats['bytes_after'] / 1e6:.3f} MB, **{stats['saved_pct']:.2f} % saved**. Kept and failed files count "
        "at their original size.", "",
        "## Savings by mode", "", *_md_groups(stats["by_mode"], "mode"), "",
        "## Savings by source format", "", *_md_groups(stats["by_source_format"], "format"), "",
        "## Kept and failed files by reason", "", "| status | reason | files |", "|---|---|---:|",
    ]
    for status, key in (("kept", "kept_by_reason"), ("failed", "failed_by_reason")):
        lines += [f"| {status} | {reason} | {n} |" for reason, n in stats[key].items()]
    if plot:
        lines += ["", "## Savings distribution", "", f"![savings per file]({PLOT_NAME})"]
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], stats: dict[str, Any], output_dir: str | os.PathLike[str], run_id: str) -> str:
    """Write ``report.md`` (and ``savings.png`` when any file was recompressed); returns the report's location."""
    from nicbeam.analysis._io import Writer

    writer = Writer(output_dir)
    png = savings_png(rows)
    if png is not None:
        writer.write_bytes(PLOT_NAME, png)
    writer.write_text(REPORT_NAME, report_markdown(stats, run_id, png is not None))
    return str(writer.location(REPORT_NAME))
