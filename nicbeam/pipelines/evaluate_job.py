"""The evaluate job: every image through every codec setting, one metadata row per (image, setting) with
all quality metrics and encode/decode times, then the RD report (``nicbeam.analysis.report``).

    MatchInputs -> CodecDoFn(evaluate) -> {metadata, errors} -> WriteTable each -> write_report

Streams are not kept unless ``--keep_bitstreams`` (then under ``OUTPUT/bitstreams/<setting>/``).
The report goes to ``OUTPUT/_runs/<run_id>/report/`` once the run is complete and accounted for.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nicbeam.transforms.paths import join
from nicbeam.transforms.records import JobConfig


def parse_settings(specs: list[str], anchor: str | None):
    """Expand ``--codec`` specs (and the anchor's) into unique settings, in the order given."""
    from nicbeam.codecs.spec import parse_codec_spec

    settings, labels = [], set()
    for spec in [*specs, *([anchor] if anchor else [])]:
        for setting in parse_codec_spec(spec):
            if setting.label not in labels:
                labels.add(setting.label)
                settings.append(setting)
    return settings


def build_batch(pipeline, cfg: JobConfig, input_spec: str):
    from nicbeam.pipelines.compress import write_outputs
    from nicbeam.transforms.encode import EncodeImages
    from nicbeam.transforms.io import MatchInputs

    sources = pipeline | "Match" >> MatchInputs(input_spec, run_url=cfg.run_url, progress_dir=cfg.progress_dir)
    outputs = sources | "Evaluate" >> EncodeImages(cfg, "evaluate")
    return write_outputs(outputs, cfg)


def check_perceptual(args: argparse.Namespace) -> dict:
    """The perceptual metrics asked for and their weight files, each network loaded once here on the CPU so
    that missing or unfit weights stop the job with one message before the pipeline starts."""
    from nicbeam.metrics.perceptual import load_scorer, weight_paths

    metrics = tuple(dict.fromkeys(getattr(args, "metric", None) or ()))
    if not metrics:
        return {}
    if args.metrics == "none":
        raise ValueError("--metric needs decoded images; it cannot be combined with --metrics none")
    paths = {f"{m}_weights": weight_paths(m, getattr(args, f"{m}_weights", None)) for m in metrics}
    load_scorer(metrics, paths.get("lpips_weights", ()), paths.get("nima_weights", ()), "cpu")
    return {"perceptual": metrics, **paths}


def write_report(run_url: str, anchor: str | None, compare_to: Sequence[str] = (),
                 bd_metrics: Sequence[str] | None = None) -> str | None:
    """Write the analysis report of a finished run; a failure is printed, not raised (the tables stand)."""
    from nicbeam.analysis.report import write_report as _write_report

    try:
        path = _write_report(join(run_url, "metadata"), join(run_url, "report"), anchor=anchor,
                             compare_to=compare_to, bd_metrics=bd_metrics)
    except Exception as exc:
        print(f"[nicbeam] report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    print(f"[nicbeam] report: {path}", file=sys.stderr)
    return str(path)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.codecs.errors import CodecError, UnknownCodecError
    from nicbeam.pipelines import options as opts

    opts.check_output_not_in_input(args.input, args.output)
    try:
        settings = parse_settings(args.codec, args.anchor)
    except (CodecError, UnknownCodecError) as exc:
        print(f"nicbeam evaluate: {exc}", file=sys.stderr)
        return 2
    from nicbeam.analysis.bd import resolve_bd_metrics

    try:
        bd_metrics = resolve_bd_metrics(args.bd_metrics) if getattr(args, "bd_metrics", None) else None
        perceptual = check_perceptual(args)
    except ValueError as exc:  # PerceptualWeightsError included
        print(f"nicbeam evaluate: {exc}", file=sys.stderr)
        return 2
    cfg = JobConfig.from_args(
        args, opts.check_run_id(args.run_id), tuple(settings), keep_bitstreams=args.keep_bitstreams, **perceptual
    )

    def after(summary: dict) -> None:
        if not args.no_report:
            summary["report"] = write_report(cfg.run_url, args.anchor, args.compare_to or (), bd_metrics)

    return opts.run_job(
        job="evaluate", args=args, extra=extra, cfg=cfg, settings=[s.label for s in settings],
        build=lambda p, c: build_batch(p, c, args.input), after=after,
    )
