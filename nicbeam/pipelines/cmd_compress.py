"""``nicbeam compress INPUT OUTPUT --codec NAME [--param k=v ...]``: one stream per image under OUTPUT.

Beam pipeline options pass through (``--runner``, ``--direct_num_workers``, ``--project``, ...).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nicbeam.pipelines.options import add_image_policy_arguments, add_run_arguments

    parser.allow_abbrev = False  # never let a Beam option be taken for an abbreviation of ours
    parser.add_argument("input", help="folder, glob or file on any fsspec filesystem (local, gs://, s3://, memory://)")
    parser.add_argument("output", help="folder receiving OUTPUT/<relative path>.nicb and OUTPUT/_runs/<run_id>/")
    parser.add_argument("--codec", required=True, help="codec name (see `nicbeam codecs`)")
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="codec parameter, repeatable")
    parser.add_argument("--pack", action="store_true",
                        help="store streams in Parquet (OUTPUT/_runs/<run_id>/bitstreams/) instead of one object each")
    parser.add_argument("--metrics", choices=("none", "fast", "all"), default="fast",
                        help="decode every stream to verify it and record quality: fast = PSNR, PSNR-Y (default)")
    parser.add_argument("--export-latents", "--export_latents", dest="export_latents", nargs="?", const="parquet",
                        choices=("parquet", "npy"),
                        help="learned codecs: also write each image's quantised latents to OUTPUT/_runs/<run_id>/"
                             "latents/ (parquet: arrays in the table; npy: OUTPUT/<name>.<array>.npy referenced "
                             "from it); see docs/latents.md")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="images of equal size per encode_batch call, for codecs that batch (learned codecs)")
    watch = parser.add_argument_group("streaming")
    watch.add_argument("--watch", type=float, metavar="SECONDS",
                       help="keep compressing new files as they land, polling every SECONDS")
    watch.add_argument("--window_seconds", type=float, default=60.0,
                       help="streaming runners: metadata/error tables are committed per window of this length")
    watch.add_argument("--pubsub_subscription",
                       help="streaming runners: read GCS OBJECT_FINALIZE notifications instead of polling")
    watch.add_argument("--watch_timeout", type=float, default=0.0, help="local watch: stop after SECONDS (0: never)")
    watch.add_argument("--watch_idle_stop", type=float, default=0.0,
                       help="local watch: stop after SECONDS without new files (0: never)")
    add_image_policy_arguments(parser)
    add_run_arguments(parser)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import compress

    return compress.run(args, extra)
