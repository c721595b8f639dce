"""Analysis of ``nicbeam evaluate`` metadata: RD summaries, BD-rate and AUC tables, plots and a Markdown report.

>>> from nicbeam.analysis import load_metadata, rd_summary, bd_table, write_report
>>> df = load_metadata("out/metadata/")                         # doctest: +SKIP
>>> summary = rd_summary(df)                                    # one row per codec setting
>>> bd_table(summary, "jpeg:subsampling=420")                   # BD-rate of each curve vs the anchor
>>> write_report(df, "out/report/")                             # report.md, CSV/Parquet tables, PNG plots

Importing this package does not import matplotlib or torch; plotting imports matplotlib when first used.
"""

from nicbeam.analysis.bd import (
    AUC_METRICS,
    BD_METRICS,
    auc_table,
    bd_table,
    common_bpp_range,
    default_anchor,
    lossless_table,
    resolve_anchor,
)
from nicbeam.analysis.plots import rd_figure, timing_figure, write_plots
from nicbeam.analysis.report import write_report
from nicbeam.analysis.summary import (
    SUMMARY_COLUMNS,
    assign_curves,
    corpus_stats,
    curve_labels,
    curve_points,
    load_metadata,
    rd_summary,
)

__all__ = [
    "AUC_METRICS",
    "BD_METRICS",
    "SUMMARY_COLUMNS",
    "assign_curves",
    "auc_table",
    "bd_table",
    "common_bpp_range",
    "corpus_stats",
    "curve_labels",
    "curve_points",
    "default_anchor",
    "load_metadata",
    "lossless_table",
    "rd_figure",
    "rd_summary",
    "resolve_anchor",
    "timing_figure",
    "write_plots",
    "write_report",
]
