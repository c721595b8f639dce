"""``nicbeam recompress INPUT OUTPUT --mode MODE``: an archive to smaller verified streams, resumably.

Modes: ``lossless-jpeg`` (JPEG -> JPEG XL lossless recompression, byte-exact), ``lossless`` (smallest of
``--lossless-codec``, pixel-exact), ``target-quality`` (``--codec`` at the lowest rate meeting a target).
Beam pipeline options pass through as for compress. See ``docs/recompress.md``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nicbeam.pipelines.options import add_image_policy_arguments, add_run_arguments

    parser.allow_abbrev = False  # never let a Beam option be taken for an abbreviation of ours
    parser.add_argument("input", help="folder, glob or file on any fsspec filesystem (never modified)")
    parser.add_argument("output", help="folder receiving OUTPUT/<relative path>.nicb and OUTPUT/_runs/; may lie "
                                       "inside INPUT (it is then excluded from the match)")
    parser.add_argument("--mode", action="append", required=True, metavar="MODE",
                        help="lossless-jpeg, lossless or target-quality; repeatable (or comma-separated): each "
                             "file takes the first mode that applies (lossless-jpeg: JPEGs, lossless: non-JPEGs)")
    lossless = parser.add_argument_group("lossless mode")
    lossless.add_argument("--lossless-codec", "--lossless_codec", dest="lossless_codec", action="append",
                          metavar="SPEC", help="candidate codec spec, repeatable (default: png, jpegxl, webp; "
                                               "lossless=true is set where the codec has that parameter)")
    target = parser.add_argument_group("target-quality mode")
    target.add_argument("--codec", help="codec whose rate knob is searched (see `nicbeam codecs`)")
    target.add_argument("--param", action="append", default=[], metavar="K=V", help="fixed codec parameter")
    target.add_argument("--target-psnr", "--target_psnr", dest="target_psnr", type=float, metavar="DB")
    target.add_argument("--target-msssim", "--target_msssim", dest="target_ms_ssim", type=float, metavar="X")
    target.add_argument("--target-psnr-hvs", "--target_psnr_hvs", dest="target_psnr_hvs", type=float, metavar="DB")
    target.add_argument("--max_steps", type=int, default=10,
                        help="encode+decode trials per image at most (bisection; 8 suffice for 0..100)")
    parser.add_argument("--no_resume", action="store_true",
                        help="redo every file instead of skipping those whose verified output is journaled")
    parser.set_defaults(metrics="none", batch_size=1)
    add_image_policy_arguments(parser)
    add_run_arguments(parser)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import recompress

    return recompress.run(args, extra)
