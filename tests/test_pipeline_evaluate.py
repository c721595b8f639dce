"""The evaluate Beam job: one metadata row per (image, setting) with every quality metric, per-setting
error accounting, and the report at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from tests.test_pipeline_compress import cli, encoded, latest_run, mixed_files, read_table, smooth, write_tree


def test_evaluate_rows_metrics_accounting_and_report(tmp_path, capsys):
    files = {
        "big.png": encoded(Image.fromarray(smooth(176, 168, 5)), "PNG"),  # >= 161 px: MS-SSIM defined
        "small.jpg": mixed_files()["good/photo.jpg"],
        "broken.png": mixed_files()["bad/truncated.jpg"],
    }
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    code = cli("evaluate", src, out, "--codec", "jpeg:quality=40,80", "--codec", "jpeg-transcode",
               "--anchor", "jpeg:quality=40,80", "--progress_interval", "1")
    assert code == 0
    err = capsys.readouterr().err
    assert "3 inputs x 3 setting(s) = 9 expected outcomes" in err and "all inputs accounted for" in err
    run = latest_run(out)
    meta, errors = read_table(run, "metadata"), read_table(run, "errors")
    by = {(Path(r["source_uri"]).name, r["setting"]): r for r in meta}
    assert set(by) == {("big.png", "jpeg:quality=40"), ("big.png", "jpeg:quality=80"),
                       ("small.jpg", "jpeg:quality=40"), ("small.jpg", "jpeg:quality=80"),
                       ("small.jpg", "jpeg-transcode")}
    big40, big80 = by["big.png", "jpeg:quality=40"], by["big.png", "jpeg:quality=80"]
    for row in (big40, big80):
        metrics = ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db", "psnr_hvs", "psnr_hvs_m", "bpp")
        for col in (*metrics, "encode_ms", "decode_ms"):
            assert row[col] is not None and math.isfinite(row[col]), col
        assert row["bitstream_uri"] is None  # streams are not kept by default
    assert big80["bpp"] > big40["bpp"] and big80["psnr_rgb"] > big40["psnr_rgb"]
    assert big80["ms_ssim"] > big40["ms_ssim"]
    assert by["small.jpg", "jpeg:quality=40"]["ms_ssim"] is None  # 48x40: undefined, recorded as null
    assert by["small.jpg", "jpeg:quality=40"]["psnr_hvs"] is not None
    transcode = by["small.jpg", "jpeg-transcode"]
    assert transcode["lossless"] and transcode["psnr_rgb"] == math.inf and transcode["ms_ssim"] == 1.0
    # errors: the truncated file once for all settings, big.png once for jpeg-transcode (not a JPEG)
    got = sorted((Path(r["source_uri"]).name, r["setting"], r["reason"]) for r in errors)
    assert got == [("big.png", "jpeg-transcode", "unsupported_input"), ("broken.png", None, "truncated")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["balanced"] and summary["expected_outcomes"] == 9 and summary["accounted_outcomes"] == 9
    pytest.importorskip("nicbeam.analysis.report")
    assert summary.get("report") and Path(summary["report"]).exists()
    assert (run / "report" / "report.md").read_text().strip()


def test_evaluate_keeps_bitstreams_when_asked(tmp_path):
    src = write_tree(tmp_path / "in", {"a/x.png": mixed_files()["good/rgb.png"]})
    out = tmp_path / "out"
    code = cli("evaluate", src, out, "--codec", "webp:quality=30,60", "--metrics", "fast", "--keep_bitstreams",
               "--no_report", "--progress_interval", "0")
    assert code == 0
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nicb"))
    assert kept == ["bitstreams/webp_quality=30/a/x.png.nicb", "bitstreams/webp_quality=60/a/x.png.nicb"]
    meta = read_table(latest_run(out), "metadata")
    assert all(r["bitstream_uri"].endswith(".nicb") and r["ms_ssim"] is None for r in meta)


def test_invalid_codec_spec_fails_before_the_pipeline(tmp_path, capsys):
    src = write_tree(tmp_path / "in", {"x.png": mixed_files()["good/rgb.png"]})
    assert cli("evaluate", src, tmp_path / "out", "--codec", "jpeg:quality=500") == 2
    assert "quality" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
