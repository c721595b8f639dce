"""``nicbeam decompress INPUT OUTPUT``: nicbeam streams back to PNG (or the original JPEG for
``jpeg-transcode``), one file per stream, with the same accounting as ``compress``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nicbeam.pipelines.options import add_run_arguments

    parser.allow_abbrev = False  # never let a Beam option be taken for an abbreviation of ours
    parser.add_argument("input", help="folder (its *.nicb files), glob or file; with --packed: Parquet files")
    parser.add_argument("output", help="folder receiving the decoded images and OUTPUT/_runs/<run_id>/")
    parser.add_argument("--packed", action="store_true",
                        help="INPUT holds packed-bitstream Parquet files written by `compress --pack`")
    parser.add_argument("--max_pixels", type=int, default=1 << 28, help="refuse streams declaring more pixels")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="streams of equal image size per decode_batch call, for codecs that batch (learned codecs)")
    add_run_arguments(parser)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import decompress

    return decompress.run(args, extra)
