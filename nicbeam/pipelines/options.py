"""What the compress, decompress and evaluate launchers share: CLI options, runner choice, run
directories, progress printing and the end-of-run summary.

Runner choice (see ``docs/runners.md``): with no ``--runner``, a batch job runs on Beam's FnApiRunner,
built exactly as the DirectRunner builds it when it falls back offline, so a job behaves the same with
and without network access (Beam 2.77's DirectRunner otherwise first tries to download and run Prism).
``--direct_running_mode`` and ``--direct_num_workers`` apply as usual. A streaming job with no
``--runner`` runs on the BundleBasedDirectRunner (the DirectRunner's streaming engine). Any
``--runner`` given is used unchanged.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

from nicbeam.allocator import WORKER_MALLOC_SETTINGS
from nicbeam.transforms.paths import LATEST_FILE, is_within, join, resolve, run_dir

_LOG = logging.getLogger("nicbeam.pipelines")

#: Runners that run on this machine, where the local progress folder is visible to the workers.
LOCAL_RUNNERS = {"fnapirunner", "directrunner", "switchingdirectrunner", "bundlebaseddirectrunner", "prismrunner",
                 "portablerunner", "testdirectrunner"}

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _drop_apitools_warning(record: logging.LogRecord) -> bool:
    """Beam logs "apitools not found ..." on import when the gcp extra is absent; that is expected here."""
    return "apitools not found" not in record.getMessage()


logging.getLogger().addFilter(_drop_apitools_warning)


# ------------------------------------------------------------------------------------------ CLI options
def add_image_policy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("image input policy (see nicbeam.image_input)")
    group.add_argument("--max_pixels", type=int, default=1 << 28, help="refuse larger images (default 2**28)")
    group.add_argument("--alpha", choices=("refuse", "composite"), default="refuse",
                       help="translucent images: refuse (error 'alpha') or composite over white")
    group.add_argument("--high_bit_depth", choices=("refuse", "reduce"), default="refuse",
                       help="more than 8 bits per sample: refuse (error 'high_bit_depth') or round to 8 bits")
    group.add_argument("--frames", choices=("refuse", "first"), default="refuse",
                       help="animations / multi-page files: refuse (error 'multi_frame') or take frame 0")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--run_id", help="name of this run's folder under OUTPUT/_runs (default: UTC time + random)")
    group.add_argument("--progress_interval", type=float, default=3.0,
                       help="seconds between progress lines of a local run (0: none)")
    group.add_argument("--device", default="auto", help="device for learned codecs: auto (CUDA if present), cpu, cuda")
    group.add_argument("--torch_threads", type=int, default=0,
                       help="PyTorch threads per worker process for learned codecs (0: PyTorch's default, all "
                            "cores; with N worker processes on C cores, C/N avoids oversubscription)")
    group.add_argument("--worker_malloc", choices=WORKER_MALLOC_SETTINGS, default="keep",
                       help="keep: glibc keeps freed memory in each worker process for reuse instead of handing it "
                            "back and page-faulting it in again per image (learned codecs 1.1-1.27x faster here, "
                            "peak memory a few %% higher); default: glibc's own settings")
    group.add_argument("--no_wait", action="store_true",
                       help="submit to a remote runner and return without waiting (no summary)")
    group.add_argument("--fail_on_errors", action="store_true",
                       help="exit with status 3 when any input ends in the errors table")


def new_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def check_run_id(run_id: str | None) -> str:
    if run_id is None:
        return new_run_id()
    if not _RUN_ID.match(run_id):
        raise SystemExit(f"nicbeam: --run_id {run_id!r} must be letters, digits, '.', '_' or '-'")
    return run_id


# ------------------------------------------------------------------------------------------ runner
def pipeline_options(extra: list[str], *, streaming: bool | None = None):
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    extra = list(extra)
    if not any(a.startswith("--default_sdk_harness_log_level") for a in extra):
        # SDK worker processes (multi_processing, worker pools) log every channel at INFO otherwise
        extra.append("--default_sdk_harness_log_level=WARNING")
    options = PipelineOptions(extra)
    if streaming is not None and streaming:
        options.view_as(StandardOptions).streaming = True
    return options


def runner_name(options) -> str | None:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return None
    return runner if isinstance(runner, str) else type(runner).__name__


def is_local(options) -> bool:
    name = runner_name(options)
    if name is None:
        return True
    short = name.rsplit(".", 1)[-1].lower()
    if short == "portablerunner":
        from apache_beam.options.pipeline_options import PortableOptions

        env = (options.view_as(PortableOptions).environment_type or "").upper()
        return env in ("LOOPBACK", "EXTERNAL", "PROCESS", "")
    return short in LOCAL_RUNNERS


def default_runner(options):
    """The runner to pass to ``beam.Pipeline``: None (use ``--runner``) when one was given."""
    from apache_beam.options.pipeline_options import StandardOptions

    if runner_name(options) is not None:
        return None
    if options.view_as(StandardOptions).streaming:
        from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

        return BundleBasedDirectRunner()
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)


def describe_runner(options) -> str:
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    name = runner_name(options)
    if name is None:
        if options.view_as(StandardOptions).streaming:
            return "BundleBasedDirectRunner (default for --streaming)"
        direct = options.view_as(DirectOptions)
        return (f"FnApiRunner (default; running_mode={direct.direct_running_mode}, "
                f"num_workers={direct.direct_num_workers})")
    return name


# ------------------------------------------------------------------------------------------ launching
def check_output_not_in_input(input_spec: str, output: str) -> None:
    from nicbeam.transforms.paths import glob_base, has_magic

    fs, path = resolve(input_spec)
    if not has_magic(path) and not fs.exists(path):
        raise SystemExit(f"nicbeam: INPUT {input_spec!r} does not exist")
    base = glob_base(path) if has_magic(path) else path
    if base and is_within(output, fs.unstrip_protocol(base)):
        raise SystemExit(
            f"nicbeam: OUTPUT {output!r} is inside INPUT {input_spec!r}; a re-run would read its own outputs. "
            "Choose an OUTPUT outside the input folder."
        )


def run_job(
    *,
    job: str,
    args: argparse.Namespace,
    extra: list[str],
    cfg,
    build: Callable,
    settings: list[str],
    after: Callable[[dict], None] | None = None,
    streaming: bool = False,
    summarize: Callable[..., dict] | None = None,
) -> int:
    """Run one batch job end to end; returns the exit status.

    ``build(pipeline, cfg)`` adds the job's transforms. Around it: the run directory and ``job.json``,
    a local progress folder and printer, the run, the summary (``summary.json``), ``_SUCCESS`` and
    ``OUTPUT/_LATEST`` when every input is accounted for, and removal of the run's ``_tmp``.
    """
    import dataclasses

    import apache_beam as beam

    from nicbeam import __version__
    from nicbeam.transforms import accounting
    from nicbeam.transforms.write import atomic_write, read_json, write_json

    options = pipeline_options(extra, streaming=streaming or None)
    local = is_local(options)
    progress_dir = tempfile.mkdtemp(prefix="nicbeam-progress-") if local else None
    cfg = dataclasses.replace(cfg, progress_dir=progress_dir)
    run_url = cfg.run_url
    started = time.time()
    write_json(
        join(run_url, "job.json"),
        {
            "job": job,
            "run_id": cfg.run_id,
            "input": getattr(args, "input", None),
            "output": cfg.output,
            "settings": settings,
            "argv": sys.argv[1:],
            "pipeline_options": extra,
            "runner": describe_runner(options),
            "nicbeam_version": __version__,
            "beam_version": beam.__version__,
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        },
    )
    print(f"[nicbeam] {job} run {cfg.run_id} on {describe_runner(options)} -> {run_url}", file=sys.stderr)
    exit_code = 1
    detached = False
    try:
        pipeline = beam.Pipeline(runner=default_runner(options), options=options)
        build(pipeline, cfg)
        unit = "outcomes" if job == "evaluate" else "images"
        per_input = max(1, len(settings)) if job == "evaluate" else 1
        printer = None
        if progress_dir and args.progress_interval > 0:
            printer = accounting.ProgressPrinter(progress_dir, args.progress_interval, unit, per_input=per_input)
        if printer:
            printer.__enter__()
        try:
            result = pipeline.run()
            if args.no_wait and not local:
                print(f"[nicbeam] submitted; state {result.state}; no summary without waiting", file=sys.stderr)
                detached = True
                return 0
            state = result.wait_until_finish()
        finally:
            if printer:
                printer.__exit__(None, None, None)
        if printer:
            print(printer.line(), file=sys.stderr)
        counters = accounting.metric_counters(result)
        try:
            matched = read_json(join(run_url, "matched.json"))["count"]
        except (OSError, KeyError, ValueError):
            matched = counters.get("inputs_matched")
        # a job whose tables differ from metadata/errors (recompress: manifest) reconciles them itself
        summary = (summarize or accounting.build_summary)(
            run_url, job=job, settings=settings, matched=matched, counters=counters)
        from apache_beam.runners.runner import PipelineState

        if result.state != PipelineState.DONE:
            print(f"[nicbeam] pipeline ended in state {result.state}", file=sys.stderr)
            summary["balanced"] = False
        summary.update(
            run_id=cfg.run_id,
            run_dir=run_url,
            state=str(state),
            elapsed_s=round(time.time() - started, 3),
            runner=describe_runner(options),
        )
        if after is not None and summary["balanced"]:
            after(summary)
        write_json(join(run_url, "summary.json"), summary)
        print(accounting.format_summary(summary), file=sys.stderr)
        if not summary["inputs"]:
            print(f"[nicbeam] warning: no input matched {getattr(args, 'input', '')!r}", file=sys.stderr)
        if summary["balanced"]:
            fs, path = resolve(join(run_url, "_SUCCESS"))
            atomic_write(fs, path, b"")
            fs, path = resolve(join(cfg.output, LATEST_FILE))
            atomic_write(fs, path, (cfg.run_id + "\n").encode())
            exit_code = 3 if (args.fail_on_errors and summary["error_rows"]) else 0
        else:
            exit_code = 1
        return exit_code
    finally:
        if not detached:
            _remove_tree(cfg.tmp_url)
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)


def _remove_tree(url: str) -> None:
    try:
        fs, path = resolve(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception as exc:
        _LOG.warning("could not remove %s: %s", url, exc)


def latest_run_dir(output: str) -> str:
    """``OUTPUT/_runs/<id>`` of the last successful run (read from ``OUTPUT/_LATEST``)."""
    fs, path = resolve(join(output, LATEST_FILE))
    with fs.open(path, "rb") as handle:
        return run_dir(output, handle.read().decode().strip())


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
