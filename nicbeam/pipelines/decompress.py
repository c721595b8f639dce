"""The decompress job: streams (objects or packed Parquet) -> decoded files + metadata/errors tables.

Metadata rows use :data:`~nicbeam.transforms.records.DECOMPRESS_SCHEMA` (the compress columns plus
``output_uri``); quality columns are null (there is no original to compare with).
"""

from __future__ import annotations

import argparse

from nicbeam.transforms.records import DECOMPRESS_SCHEMA, JobConfig


def read_streams(pipeline, cfg: JobConfig, input_spec: str, *, packed: bool = False):
    """The job's input streams: ``*.nicb`` objects matched under ``input_spec``, or rows of packed Parquet files."""
    from nicbeam.transforms.decode import ReadPackedStreams
    from nicbeam.transforms.io import MatchInputs
    from nicbeam.transforms.paths import BITSTREAM_SUFFIX

    if packed:
        return pipeline | "ReadPacked" >> ReadPackedStreams(input_spec, run_url=cfg.run_url,
                                                            progress_dir=cfg.progress_dir)
    return pipeline | "Match" >> MatchInputs(input_spec, run_url=cfg.run_url, suffix=BITSTREAM_SUFFIX,
                                             progress_dir=cfg.progress_dir)


def build_batch(pipeline, cfg: JobConfig, input_spec: str, *, packed: bool = False):
    from nicbeam.pipelines.compress import write_outputs
    from nicbeam.transforms.decode import DecodeStreams

    streams = read_streams(pipeline, cfg, input_spec, packed=packed)
    outputs = streams | "Decode" >> DecodeStreams(cfg)
    return write_outputs(outputs, cfg, metadata_schema=DECOMPRESS_SCHEMA)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import options as opts

    opts.check_output_not_in_input(args.input, args.output)
    cfg = JobConfig.from_run_args(args, opts.check_run_id(args.run_id), max_pixels=args.max_pixels,
                                  batch_size=args.batch_size)
    return opts.run_job(
        job="decompress", args=args, extra=extra, cfg=cfg, settings=[],
        build=lambda p, c: build_batch(p, c, args.input, packed=args.packed),
    )
