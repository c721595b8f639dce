"""``nicbeam evaluate INPUT OUTPUT --codec NAME[:PARAM=V1,V2,...] ... [--anchor NAME:...]``: per-image
metadata for every codec setting, then an RD summary, BD-rates against the anchor and a Markdown report.
"""

from __future__ import annotations

import argparse

from nicbeam.metrics.perceptual.scorer import METRICS as PERCEPTUAL_METRICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nicbeam.pipelines.options import add_image_policy_arguments, add_run_arguments

    parser.allow_abbrev = False  # never let a Beam option be taken for an abbreviation of ours
    parser.add_argument("input", help="folder, glob or file on any fsspec filesystem")
    parser.add_argument("output", help="folder receiving OUTPUT/_runs/<run_id>/{metadata,errors,report}")
    parser.add_argument("--codec", action="append", required=True, metavar="SPEC",
                        help="codec spec NAME[:PARAM=V1,V2,...][:PARAM2=...], repeatable (e.g. jpeg:quality=30,50,75)")
    parser.add_argument("--anchor", metavar="SPEC", help="BD-rate anchor curve (also evaluated); default: 4:2:0 JPEG")
    parser.add_argument("--compare_to", action="append", default=[], metavar="SPEC",
                        help="further BD-rate anchors (curves among the evaluated ones, e.g. webp), repeatable")
    parser.add_argument("--metrics", choices=("none", "fast", "all"), default="all",
                        help="all (default): PSNR, PSNR-Y, MS-SSIM, PSNR-HVS(-M); fast: PSNR, PSNR-Y")
    parser.add_argument("--metric", action="append", default=[], choices=PERCEPTUAL_METRICS, metavar="NAME",
                        help="add a perceptual metric to the --metrics set, repeatable: lpips (LPIPS distance, "
                             "lower = closer; needs --lpips-weights) or nima (NIMA score mean/std; needs "
                             "--nima-weights). Nothing is downloaded: see docs/perceptual.md")
    parser.add_argument("--lpips-weights", "--lpips_weights", dest="lpips_weights", action="append", metavar="PATH",
                        help="LPIPS weights (safetensors or torch file: AlexNet/VGG16 trunk + lin0..lin4 heads), "
                             "repeatable to merge a trunk file and a heads file; default $NICBEAM_LPIPS_WEIGHTS")
    parser.add_argument("--nima-weights", "--nima_weights", dest="nima_weights", action="append", metavar="PATH",
                        help="NIMA weights (MobileNetV2 or VGG16 trunk + 10-way head), repeatable to merge; "
                             "default $NICBEAM_NIMA_WEIGHTS")
    parser.add_argument("--bd-metric", "--bd_metric", dest="bd_metrics", action="append", metavar="METRIC",
                        help="BD-rate metric of the report, repeatable (psnr_rgb, psnr_y, ms_ssim_db, psnr_hvs, "
                             "psnr_hvs_m, lpips, nima_mean; aliases psnr, ms-ssim, nima); default: the five "
                             "classical ones, plus lpips when computed")
    parser.add_argument("--keep_bitstreams", action="store_true",
                        help="also write every stream to OUTPUT/bitstreams/<setting>/<relative path>.nicb")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="images of equal size per encode_batch call, for codecs that batch (learned codecs)")
    parser.add_argument("--no_report", action="store_true", help="write the metadata only, no report")
    add_image_policy_arguments(parser)
    add_run_arguments(parser)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import evaluate_job

    return evaluate_job.run(args, extra)
