"""``nicbeam latents STREAM_DIR OUTPUT``: the quantised latents of existing learned-codec streams, entropy-decoded
without the synthesis transform, to a Parquet table (or ``.npy`` files referenced from it)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nicbeam.pipelines.options import add_run_arguments

    parser.allow_abbrev = False  # never let a Beam option be taken for an abbreviation of ours
    parser.add_argument("input", help="folder (its *.nicb files), glob or file; with --packed: Parquet files")
    parser.add_argument("output", help="folder receiving OUTPUT/_runs/<run_id>/latents/ (and .npy files)")
    parser.add_argument("--format", choices=("parquet", "npy"), default="parquet",
                        help="parquet: arrays inside the table (default); npy: OUTPUT/<name>.<array>.npy "
                             "referenced from it")
    parser.add_argument("--packed", action="store_true",
                        help="INPUT holds packed-bitstream Parquet files written by `compress --pack`")
    parser.add_argument("--max_pixels", type=int, default=1 << 28, help="refuse streams declaring more pixels")
    add_run_arguments(parser)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import latents

    return latents.run(args, extra)
