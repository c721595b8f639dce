"""The latents job: existing streams (``.nicb`` objects or packed Parquet) -> their entropy-decoded latents
(no synthesis transform) in ``OUTPUT/_runs/<run_id>/latents/`` (or ``.npy`` objects referenced from it),
and an ``errors`` table, with the same accounting as the other jobs (every stream in exactly one table)."""

from __future__ import annotations

import argparse

from nicbeam.transforms.records import JobConfig


def build_batch(pipeline, cfg: JobConfig, input_spec: str, *, packed: bool = False):
    from nicbeam.latents import LATENTS_SCHEMA, ROWS_PER_FILE
    from nicbeam.pipelines.decompress import read_streams
    from nicbeam.transforms.latents import LATENTS, DecodeLatents
    from nicbeam.transforms.paths import join
    from nicbeam.transforms.schema import ERROR_SCHEMA
    from nicbeam.transforms.write import WriteTable

    streams = read_streams(pipeline, cfg, input_spec, packed=packed)
    outputs = streams | "Latents" >> DecodeLatents(cfg)
    return {
        LATENTS: outputs[LATENTS] | "WriteLatents" >> WriteTable(
            join(cfg.run_url, LATENTS), join(cfg.tmp_url, LATENTS), LATENTS_SCHEMA, rows_per_file=ROWS_PER_FILE),
        "errors": outputs["errors"] | "WriteErrors" >> WriteTable(
            join(cfg.run_url, "errors"), join(cfg.tmp_url, "errors"), ERROR_SCHEMA),
    }


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.pipelines import options as opts

    opts.check_output_not_in_input(args.input, args.output)
    cfg = JobConfig.from_run_args(args, opts.check_run_id(args.run_id), max_pixels=args.max_pixels,
                                  export_latents=args.format)
    return opts.run_job(
        job="latents", args=args, extra=extra, cfg=cfg, settings=[],
        build=lambda p, c: build_batch(p, c, args.input, packed=args.packed),
    )
