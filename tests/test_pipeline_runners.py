"""The same compress pipeline on other runners: the FnApiRunner with worker processes, Beam's portable
job service with external SDK worker processes (pickling, coders and worker boot as on a cluster), and
an offline Dataflow dry run (needs ``apache-beam[gcp]``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_pipeline_compress import (
    MIXED_EXPECTED,
    MIXED_MAX_PIXELS,
    cli,
    latest_run,
    mixed_files,
    read_table,
    write_tree,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def worker_env(monkeypatch):
    """Worker processes import nicbeam from this checkout even when it is not installed."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{path}" if path else str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited early with {proc.returncode}")
        try:
            with socket.create_connection(("localhost", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


def check_mixed_run(out: Path, src: Path) -> list[dict]:
    run = latest_run(out)
    meta, errors = read_table(run, "metadata"), read_table(run, "errors")
    assert len(meta) + len(errors) == len(MIXED_EXPECTED)
    assert sorted(r["reason"] for r in errors) == sorted(v for v in MIXED_EXPECTED.values() if v)
    assert len(list(out.rglob("*.nicb"))) == len(meta) == 5
    return meta


def test_multi_processing_direct_runner(tmp_path, worker_env, capsys):
    src = write_tree(tmp_path / "in", mixed_files())
    out = tmp_path / "out"
    code = cli("compress", src, out, "--codec", "jpeg", "--max_pixels", MIXED_MAX_PIXELS,
               "--direct_running_mode=multi_processing", "--direct_num_workers=2", "--progress_interval", "1")
    assert code == 0
    err = capsys.readouterr().err
    assert "running_mode=multi_processing, num_workers=2" in err
    assert "13/13 images done" in err  # progress tallies come back from the worker processes
    meta = check_mixed_run(out, src)
    workers = {r["worker"].rsplit(":", 1)[1] for r in meta}
    assert str(os.getpid()) not in workers  # encoded in worker processes, not in the launcher


@pytest.mark.timeout(240)
def test_portable_runner_with_external_worker_pool(tmp_path, worker_env):
    job_port, pool_port = free_port(), free_port()
    env = dict(os.environ)
    # the worker pool starts each SDK worker as `python -c ...` found on PATH: make it this interpreter
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    job_service = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(job_port, job_service)
        wait_for_port(pool_port, pool)
        src = write_tree(tmp_path / "in", mixed_files())
        out = tmp_path / "out"
        code = cli("compress", src, out, "--codec", "webp", "--param", "quality=60", "--max_pixels", MIXED_MAX_PIXELS,
                   "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
                   "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}",
                   "--progress_interval", "0")
        assert code == 0
        meta = check_mixed_run(out, src)
        assert all(r["worker"].rsplit(":", 1)[1] != str(os.getpid()) for r in meta)
    finally:
        for proc in (pool, job_service):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def dataflow_dry_run(job_name: str, build, *, streaming: bool = False):
    """Build a pipeline with ``build(pipeline)`` and translate it with the Dataflow runner's dry run (no job is
    submitted, no credentials): ``(result, unique names of its transforms)``; skips without the gcp extra."""
    try:
        from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Dataflow dry run needs the gcp extra: pip install 'apache-beam[gcp]' ({exc})")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions([
        "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=nicbeam-test",
        "--region=us-central1", "--temp_location=gs://nicbeam-test/tmp", "--sdk_location=container",
        f"--job_name={job_name}", *(["--streaming"] if streaming else []),
    ])
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    result = pipeline.run()
    if not streaming:
        result.wait_until_finish()
    return result, {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}


def test_dataflow_dry_run_builds_and_translates_the_pipeline():
    from nicbeam.codecs.spec import make_setting
    from nicbeam.pipelines.compress import build_batch
    from nicbeam.transforms.records import JobConfig

    cfg = JobConfig(run_id="dry", output="gs://nicbeam-test/out", settings=(make_setting("jpeg", {"quality": 50}),))
    result, names = dataflow_dry_run("nicbeam-dry-run", lambda p: build_batch(p, cfg, "gs://nicbeam-test/in"))
    assert {"Match", "Encode/Codec", "WriteMetadata", "WriteErrors"} <= names
    assert result.job.proto.type_.name == "JOB_TYPE_BATCH"


def test_dataflow_dry_run_streaming_watch_pipeline():
    from nicbeam.codecs.spec import make_setting
    from nicbeam.pipelines.compress import build_streaming
    from nicbeam.transforms.records import JobConfig

    cfg = JobConfig(run_id="watch", output="gs://nicbeam-test/out", settings=(make_setting("webp", {}),))
    result, names = dataflow_dry_run(
        "nicbeam-watch-dry-run",
        lambda p: build_streaming(p, cfg, "gs://nicbeam-test/incoming", interval=30, window_seconds=300),
        streaming=True,
    )
    assert {"MatchContinuously", "Encode/Codec", "WindowMetadata", "WriteMetadata/GroupPerWindow"} <= names
    assert result.job.proto.type_.name == "JOB_TYPE_STREAMING"
