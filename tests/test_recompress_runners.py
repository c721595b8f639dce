"""``nicbeam recompress`` beyond the in-process default: the FnApiRunner with SDK worker processes (pickling,
coders and worker-side imports as on a cluster) and an offline Dataflow dry run (``apache-beam[gcp]``).
The portable-runner wiring is the launcher's, shared with compress (tests/test_pipeline_runners.py)."""

from __future__ import annotations

import os

import pytest

from tests.test_pipeline_runners import dataflow_dry_run, worker_env  # noqa: F401  (fixture)
from tests.test_recompress import jpeg_corpus, manifest
from tests.test_pipeline_compress import cli, write_tree


def check_run(out, files) -> dict:
    rows = manifest(out)
    assert set(rows) == set(files)
    assert {k for k, r in rows.items() if r["status"] == "recompressed"} == {
        "a/q90_420.jpg", "a/q75_444.jpg", "b/progressive.jpeg", "b/lossless.png"}
    assert all(r["verified"] for r in rows.values() if r["status"] == "recompressed")
    return rows


@pytest.mark.slow
def test_recompress_with_worker_processes(tmp_path, worker_env, capsys):  # noqa: F811
    files = jpeg_corpus()
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    code = cli("recompress", src, out, "--mode", "lossless-jpeg,lossless", "--lossless-codec", "png",
               "--lossless-codec", "webp", "--direct_running_mode=multi_processing", "--direct_num_workers=2",
               "--progress_interval", "1")
    assert code == 0
    assert "running_mode=multi_processing, num_workers=2" in capsys.readouterr().err
    rows = check_run(out, files)
    assert all(r["worker"].rsplit(":", 1)[1] != str(os.getpid()) for r in rows.values())


def test_dataflow_dry_run_translates_the_recompress_pipeline():
    from nicbeam.codecs.spec import make_setting
    from nicbeam.pipelines.recompress import build_batch
    from nicbeam.transforms.recompress import RecompressConfig

    cfg = RecompressConfig(run_id="dry", output="gs://nicbeam-test/archive/recompressed",
                           modes=("lossless-jpeg", "target-quality"), target_codec="webp",
                           target_metric="psnr", target_value=38.0, settings=(make_setting("jpeg-transcode"),))
    result, names = dataflow_dry_run("nicbeam-recompress-dry-run",
                                     lambda p: build_batch(p, cfg, "gs://nicbeam-test/archive"))
    assert {"Match", "Recompress/Recompress", "WriteManifest", "WriteErrors"} <= names
    assert result.job.proto.type_.name == "JOB_TYPE_BATCH"
