"""The compress job: every image under INPUT through one codec setting, one stream per image under OUTPUT.

Batch form (the default)::

    MatchInputs -> CodecDoFn(compress) -> {metadata, errors[, bitstreams]} -> WriteTable each

Streaming forms (``--watch``), see ``docs/runners.md``:

* on a streaming runner (Dataflow, Flink): ``fileio.MatchContinuously`` (or Pub/Sub object
  notifications with ``--pubsub_subscription``) feeds the *same* transforms, and the tables are written per
  fixed window (``--window_seconds``);
* locally, where Beam's Python runners cannot run ``MatchContinuously``, a polling loop runs a small batch
  pipeline (its own run directory) for each set of new, size-stable files.

The pipeline-building functions are public so tests (``TestStream``) and other pipelines can reuse them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable

from nicbeam.transforms.paths import SourceFile, join
from nicbeam.transforms.records import BITSTREAM_SCHEMA, JobConfig
from nicbeam.transforms.schema import ERROR_SCHEMA, METADATA_SCHEMA

#: Packed bitstream files are cut at about this size (a bundle buffers one file in memory).
PACKED_BYTES_PER_FILE = 64 << 20


def write_outputs(
    outputs: dict, cfg: JobConfig, *, metadata_schema=METADATA_SCHEMA, window_seconds: float | None = None
):
    """Write the tagged outputs of a codec step to the run directory; windowed when ``window_seconds``."""
    import apache_beam as beam

    from nicbeam.transforms.write import WriteTable

    tables = [("metadata", metadata_schema, outputs["metadata"], {}), ("errors", ERROR_SCHEMA, outputs["errors"], {})]
    if cfg.pack and "bitstreams" in outputs:
        tables.append(
            ("bitstreams", BITSTREAM_SCHEMA, outputs["bitstreams"],
             {"size_column": "bitstream", "bytes_per_file": PACKED_BYTES_PER_FILE})
        )
    if cfg.export_latents and "latents" in outputs:
        from nicbeam.latents import LATENTS_SCHEMA, ROWS_PER_FILE

        tables.append(("latents", LATENTS_SCHEMA, outputs["latents"], {"rows_per_file": ROWS_PER_FILE}))
    manifests = {}
    for name, schema, pcoll, kwargs in tables:
        if window_seconds:
            pcoll = pcoll | f"Window{name.title()}" >> beam.WindowInto(beam.window.FixedWindows(window_seconds))
        manifests[name] = pcoll | f"Write{name.title()}" >> WriteTable(
            join(cfg.run_url, name), join(cfg.tmp_url, name), schema, **kwargs
        )
    return manifests


def compress_sources(sources, cfg: JobConfig, *, window_seconds: float | None = None):
    """``SourceFile``s -> encoded objects and committed tables (the part shared by batch and streaming)."""
    from nicbeam.transforms.encode import EncodeImages

    outputs = sources | "Encode" >> EncodeImages(cfg, "compress")
    return write_outputs(outputs, cfg, window_seconds=window_seconds)


def build_batch(pipeline, cfg: JobConfig, input_spec: str):
    from nicbeam.transforms.io import MatchInputs

    sources = pipeline | "Match" >> MatchInputs(input_spec, run_url=cfg.run_url, progress_dir=cfg.progress_dir)
    return compress_sources(sources, cfg)


def build_from_list(pipeline, cfg: JobConfig, sources: list[SourceFile]):
    """A batch over an explicit list of sources (the local ``--watch`` micro-batches)."""
    import apache_beam as beam

    from nicbeam.transforms.write import write_json

    write_json(join(cfg.run_url, "matched.json"), {"count": len(sources), "input": "watch"})
    pcoll = pipeline | "Sources" >> beam.Create(sources) | "Reshuffle" >> beam.Reshuffle()
    return compress_sources(pcoll, cfg)


def build_streaming(pipeline, cfg: JobConfig, input_spec: str, *, interval: float, window_seconds: float,
                    pubsub_subscription: str | None = None):
    """The streaming form for runners that run unbounded sources (Dataflow, Flink).

    New files come from ``fileio.MatchContinuously`` polling ``INPUT`` every ``interval`` seconds, or from
    GCS ``OBJECT_FINALIZE`` notifications on ``pubsub_subscription``.
    """
    import apache_beam as beam
    from apache_beam.io import fileio

    from nicbeam.transforms.io import source_from_match
    from nicbeam.transforms.paths import glob_base, has_magic

    base = glob_base(input_spec) if has_magic(input_spec) else input_spec.rstrip("/")
    pattern = input_spec if has_magic(input_spec) else base + "/**"
    if pubsub_subscription:
        sources = (
            pipeline
            | "Notifications" >> beam.io.ReadFromPubSub(subscription=pubsub_subscription, with_attributes=True)
            | "ToSources" >> beam.FlatMap(lambda msg: gcs_notification_sources(msg.attributes, base))
        )
    else:
        sources = (
            pipeline
            | "MatchContinuously" >> fileio.MatchContinuously(pattern, interval=interval)
            | "ToSources" >> beam.Map(source_from_match(base))
        )
    sources = sources | "Reshuffle" >> beam.Reshuffle()
    return compress_sources(sources, cfg, window_seconds=window_seconds)


def gcs_notification_sources(attributes: dict, base: str) -> Iterable[SourceFile]:
    """A GCS Pub/Sub notification's attributes -> the new object as a source, if it is under ``base``.

    Only ``OBJECT_FINALIZE`` events (an object fully written) count; ``base`` is ``gs://bucket/prefix``.
    """
    if attributes.get("eventType") != "OBJECT_FINALIZE":
        return []
    bucket, name = attributes.get("bucketId"), attributes.get("objectId")
    if not bucket or not name:
        return []
    uri = f"gs://{bucket}/{name}"
    prefix = base.rstrip("/") + "/"
    if not uri.startswith(prefix):
        return []
    return [SourceFile(uri, uri[len(prefix):], -1)]


# ------------------------------------------------------------------------------------------ launcher
def make_config(args: argparse.Namespace, run_id: str) -> JobConfig:
    from nicbeam.codecs.spec import make_setting, parse_params

    setting = make_setting(args.codec, parse_params(args.param))
    export_latents = getattr(args, "export_latents", None)
    if export_latents:
        from nicbeam.codecs import get_codec_class

        if not callable(getattr(get_codec_class(setting.codec), "encode_batch_with_latents", None)):
            raise LatentsUnsupportedError(
                f"--export-latents needs a learned codec (bmshj2017-factorized, mbt2018-mean); "
                f"{setting.codec!r} has no latents"
            )
    return JobConfig.from_args(args, run_id, (setting,), pack=args.pack, export_latents=export_latents)


class LatentsUnsupportedError(ValueError):
    """``--export-latents`` with a codec that has no latents (refused before the pipeline starts)."""


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.codecs.errors import CodecError, UnknownCodecError
    from nicbeam.pipelines import options as opts

    opts.check_output_not_in_input(args.input, args.output)
    try:
        cfg = make_config(args, opts.check_run_id(args.run_id))
    except (CodecError, UnknownCodecError, LatentsUnsupportedError) as exc:
        print(f"nicbeam compress: {exc}", file=sys.stderr)
        return 2
    settings = [s.label for s in cfg.settings]
    if args.watch is not None:
        return watch(args, extra, cfg)
    return opts.run_job(
        job="compress", args=args, extra=extra, cfg=cfg, settings=settings,
        build=lambda p, c: build_batch(p, c, args.input),
    )


def watch(args: argparse.Namespace, extra: list[str], cfg: JobConfig) -> int:
    """``--watch SECONDS``: streaming on a streaming runner, else the local polling loop."""
    import dataclasses

    from nicbeam.pipelines import options as opts
    from nicbeam.transforms.paths import list_inputs

    options = opts.pipeline_options(extra)
    if not opts.is_local(options):
        import apache_beam as beam
        from apache_beam.options.pipeline_options import StandardOptions

        options.view_as(StandardOptions).streaming = True
        pipeline = beam.Pipeline(options=options)
        build_streaming(pipeline, cfg, args.input, interval=args.watch, window_seconds=args.window_seconds,
                        pubsub_subscription=args.pubsub_subscription)
        result = pipeline.run()
        print(f"[nicbeam] streaming compress submitted ({opts.describe_runner(options)}), state {result.state}; "
              f"tables under {cfg.run_url} per {args.window_seconds:g}s window", file=sys.stderr)
        return 0
    # Local: poll, wait until a file's size is stable across two polls, run one batch per new set.
    seen: set[str] = set()
    sizes: dict[str, int] = {}
    started = time.monotonic()
    last_new = started
    status = 0
    batch = 0
    print(f"[nicbeam] watching {args.input} every {args.watch:g}s (local polling; Ctrl-C to stop)", file=sys.stderr)
    try:
        while True:
            listing = {s.uri: s for s in list_inputs(args.input)}
            ready = [s for uri, s in sorted(listing.items()) if uri not in seen and sizes.get(uri) == s.size]
            sizes = {uri: s.size for uri, s in listing.items() if uri not in seen}
            if ready:
                batch += 1
                run_cfg = dataclasses.replace(cfg, run_id=f"{cfg.run_id}-{batch:05d}")
                try:
                    code = opts.run_job(
                        job="compress", args=args, extra=extra, cfg=run_cfg, settings=[s.label for s in cfg.settings],
                        build=lambda p, c, ready=ready: build_from_list(p, c, ready),
                    )
                except Exception as exc:
                    print(f"[nicbeam] watch batch {run_cfg.run_id} failed ({type(exc).__name__}: {exc}); "
                          "its files are retried on the next poll", file=sys.stderr)
                    code = 1
                status = max(status, code)
                if code in (0, 3):
                    seen.update(s.uri for s in ready)
                last_new = time.monotonic()
            now = time.monotonic()
            if args.watch_timeout and now - started >= args.watch_timeout:
                break
            if args.watch_idle_stop and now - last_new >= args.watch_idle_stop:
                break
            time.sleep(args.watch)
    except KeyboardInterrupt:
        print("[nicbeam] watch stopped", file=sys.stderr)
    print(json.dumps({"watch_batches": batch, "files": len(seen)}), file=sys.stderr)
    return status
