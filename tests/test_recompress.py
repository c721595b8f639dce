"""``nicbeam recompress``: the three modes, verification, the manifest, OUTPUT inside INPUT, the inverse job,
resuming after a killed run, and the bisection over a codec's rate knob."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nicbeam.codecs import decode
from nicbeam.transforms.quality_search import Knob, Trial, knob_for, search
from nicbeam.transforms.recompress_records import CONTENT_COLUMNS
from tests.test_pipeline_compress import (
    MIXED_EXPECTED,
    MIXED_MAX_PIXELS,
    cli,
    encoded,
    latest_run,
    mixed_files,
    read_table,
    smooth,
    write_tree,
)

REPO = Path(__file__).resolve().parents[1]


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like image: smooth shapes plus texture (JPEGs of it are large enough for JPEG XL to save)."""
    rng = np.random.default_rng(seed)
    return np.clip(smooth(height, width, seed).astype(np.int16) + rng.normal(0, 12, (height, width, 3)),
                   0, 255).astype(np.uint8)


def jpeg_corpus() -> dict[str, bytes]:
    img = Image.fromarray(photo(96, 128, 1))
    return {
        "a/q90_420.jpg": encoded(img, "JPEG", quality=90, subsampling=2),
        "a/q75_444.jpg": encoded(img, "JPEG", quality=75, subsampling=0),
        "b/progressive.jpeg": encoded(img, "JPEG", quality=80, progressive=True),
        "b/cmyk.jpg": encoded(img.convert("CMYK"), "JPEG"),
        "b/lossless.png": encoded(img, "PNG"),
    }


def manifest(out: Path) -> dict[str, dict]:
    rows = read_table(latest_run(out), "manifest")
    assert len({r["source_uri"] for r in rows}) == len(rows)
    return {r["rel_path"] or Path(r["source_uri"]).name: r for r in rows}


def content(rows: dict[str, dict], out: Path) -> dict[str, dict]:
    """The outcome columns, output URIs relative to their OUTPUT (to compare runs into different folders)."""
    def one(row):
        values = {c: row[c] for c in CONTENT_COLUMNS}
        if values["output_uri"]:
            values["output_uri"] = os.path.relpath(values["output_uri"], out)
        return values

    return {k: one(r) for k, r in rows.items()}


# ------------------------------------------------------------------------------------------ quality search
def test_bisection_finds_the_lowest_passing_value_within_the_step_bound():
    knob = Knob("quality", tuple(range(1, 101)))
    calls = []

    def trial_at(q):
        calls.append(q)
        return Trial(q, b"x" * q, 20 + 0.25 * q)  # monotone: 36 dB first reached at q=64

    result = search(trial_at, knob, 36.0, max_steps=10)
    assert result.best.value == 64 and calls[0] == 100
    assert result.steps == len(calls) <= math.ceil(math.log2(100)) + 1
    assert all(t.score < 36 for t in result.trials if t.value < 64)
    short = search(trial_at, knob, 36.0, max_steps=3)
    assert short.steps == 3 and short.best.score >= 36 and short.best.value >= 64  # passing, not minimal
    calls.clear()
    missed = search(trial_at, knob, 99.0, max_steps=10)
    assert missed.best is None and calls == [100]  # the top misses: unreachable after one trial


def test_knobs_follow_each_codecs_rate_parameter():
    assert knob_for("jpeg").values == tuple(range(1, 101))
    distances = knob_for("jpegxl").values
    assert distances[0] > distances[-1] and knob_for("jpegxl").param == "distance"
    assert knob_for("jpeg2000").param == "psnr"
    with pytest.raises(ValueError, match="lossless-only"):
        knob_for("png")
    with pytest.raises(ValueError, match="searches"):
        knob_for("webp", {"quality": 50})


# ------------------------------------------------------------------------------------------ modes
def test_lossless_jpeg_is_byte_exact_and_decompress_restores_the_originals(tmp_path):
    files = jpeg_corpus()
    src = write_tree(tmp_path / "in", files)
    before = tree_digest(src)
    out, dec = tmp_path / "out", tmp_path / "dec"
    assert cli("recompress", src, out, "--mode", "lossless-jpeg", "--progress_interval", "0") == 0
    rows = manifest(out)
    assert set(rows) == set(files)
    for name in ("a/q90_420.jpg", "a/q75_444.jpg", "b/progressive.jpeg"):
        r = rows[name]
        stream = (out / (name + ".nicb")).read_bytes()
        assert (r["status"], r["mode"], r["codec"], r["verified"]) == ("recompressed", "lossless-jpeg",
                                                                       "jpeg-transcode", True)
        assert r["source_sha256"] == hashlib.sha256(files[name]).hexdigest()
        assert r["output_sha256"] == hashlib.sha256(stream).hexdigest() and r["output_bytes"] == len(stream)
        assert r["bytes_saved"] == len(files[name]) - len(stream) > 0
        assert decode(stream) == files[name]
    assert (rows["b/cmyk.jpg"]["status"], rows["b/cmyk.jpg"]["reason"]) == ("kept", "unsupported_jpeg")
    assert (rows["b/lossless.png"]["status"], rows["b/lossless.png"]["reason"]) == ("kept", "not_jpeg")
    assert not (out / "b/cmyk.jpg.nicb").exists() and not (out / "b/lossless.png.nicb").exists()
    assert tree_digest(src) == before  # originals untouched
    # the inverse job gives back the original JPEG files, byte for byte
    assert cli("decompress", out, dec, "--progress_interval", "0") == 0
    for name in ("a/q90_420.jpg", "a/q75_444.jpg", "b/progressive.jpeg"):
        assert (dec / name).read_bytes() == files[name]


def test_lossless_picks_the_smallest_pixel_exact_codec_and_keeps_or_fails_the_rest(tmp_path):
    files = mixed_files()
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    code = cli("recompress", src, out, "--mode", "lossless", "--max_pixels", MIXED_MAX_PIXELS,
               "--lossless-codec", "png:level=9", "--lossless-codec", "jpegxl", "--lossless-codec", "webp",
               "--progress_interval", "0")
    assert code == 0
    rows = manifest(out)
    assert set(rows) == set(files)
    kept = {"bad/alpha.png": "alpha", "bad/deep16.png": "high_bit_depth", "bad/animated.gif": "multi_frame",
            "good/photo.jpg": "lossy_source", "good/cmyk.jpg": "lossy_source", "bad/truncated.jpg": "lossy_source"}
    failed = {k: v for k, v in MIXED_EXPECTED.items() if v and k not in kept}
    for name, row in rows.items():
        if name in kept:
            assert (row["status"], row["reason"]) == ("kept", kept[name])
        elif name in failed:
            assert (row["status"], row["reason"]) == ("failed", failed[name])
        else:
            candidates = json.loads(row["candidates"])
            assert set(candidates) == {"png:level=9", "jpegxl:lossless=true", "webp:lossless=true"}
            if row["status"] == "kept":
                assert row["reason"] == "would_grow" and min(candidates.values()) >= row["source_bytes"]
                continue
            assert row["status"] == "recompressed" and row["verified"]
            assert row["output_bytes"] == min(candidates.values()) < row["source_bytes"]
            assert candidates[row["setting"]] == row["output_bytes"]
            stream = (out / (name + ".nicb")).read_bytes()
            source = np.asarray(Image.open(src / name).convert("RGB"))
            assert np.array_equal(decode(stream), source)
    assert sum(r["status"] == "recompressed" for r in rows.values()) >= 2
    run = latest_run(out)
    errors = {Path(r["source_uri"]).relative_to(src).as_posix(): r["reason"] for r in read_table(run, "errors")}
    assert errors == failed
    summary = json.loads((run / "summary.json").read_text())
    assert summary["balanced"] and summary["inputs"] == len(files)
    stats = summary["recompress"]
    assert stats["failed_by_reason"] == dict(sorted(__import__("collections").Counter(failed.values()).items()))
    assert stats["bytes_before"] == sum(len(v) for v in files.values())
    assert stats["bytes_before"] - stats["bytes_after"] == sum(r["bytes_saved"] for r in rows.values()) > 0
    assert (run / "report/report.md").read_text().count("| lossless |") == 1
    assert (run / "report/savings.png").read_bytes()[:4] == b"\x89PNG"


def test_target_quality_meets_the_target_at_the_lowest_setting_and_keeps_what_cannot(tmp_path):
    files = {
        "photo.png": encoded(Image.fromarray(photo(64, 80, 2)), "PNG"),
        "flat.png": encoded(Image.fromarray(np.full((64, 64, 3), 90, np.uint8)), "PNG"),  # any JPEG is larger
    }
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    assert cli("recompress", src, out, "--mode", "target-quality", "--codec", "jpeg", "--param", "subsampling=444",
               "--target-psnr", "36", "--progress_interval", "0") == 0
    rows = manifest(out)
    r = rows["photo.png"]
    assert r["status"] == "recompressed" and r["quality_metric"] == "psnr" and r["quality_target"] == 36
    assert r["quality_reached"] >= 36 and r["search_steps"] <= 10
    quality = json.loads(r["params"])["quality"]
    assert json.loads(r["params"])["subsampling"] == "444"
    stream = (out / "photo.png.nicb").read_bytes()
    from nicbeam import metrics

    assert metrics.psnr(photo(64, 80, 2), decode(stream)) == pytest.approx(r["quality_reached"])
    below = json.loads(r["candidates"]).get(f"jpeg:quality={quality - 1}:subsampling=444")
    assert below is not None and below["psnr"] < 36  # the bisection converged: one step lower misses
    assert (rows["flat.png"]["status"], rows["flat.png"]["reason"]) == ("kept", "would_grow")
    # MS-SSIM is undefined below 161 px a side: kept with that reason, not failed
    out2 = tmp_path / "out2"
    assert cli("recompress", src / "photo.png", out2, "--mode", "target-quality", "--codec", "webp",
               "--target-msssim", "0.95", "--progress_interval", "0") == 0
    assert manifest(out2)["photo.png"]["reason"] == "metric_undefined"


def test_target_quality_unreachable_target_is_kept_with_the_best_score(tmp_path):
    src = write_tree(tmp_path / "in", {"p.png": encoded(Image.fromarray(photo(40, 40, 3)), "PNG")})
    out = tmp_path / "out"
    assert cli("recompress", src, out, "--mode", "target-quality", "--codec", "webp", "--target-psnr", "80",
               "--progress_interval", "0") == 0
    r = manifest(out)["p.png"]
    assert (r["status"], r["reason"], r["search_steps"]) == ("kept", "target_unreachable", 1)
    assert r["quality_reached"] < 80 and r["setting"] == "webp:quality=100" and not (out / "p.png.nicb").exists()


# ------------------------------------------------------------------------------------------ guarantees
def test_output_inside_input_is_excluded_and_never_touches_originals(tmp_path):
    files = jpeg_corpus()
    src = write_tree(tmp_path / "archive", files)
    before = tree_digest(src)
    out = src / "recompressed"
    for run in range(2):
        assert cli("recompress", src, out, "--mode", "lossless-jpeg,lossless", "--progress_interval", "0") == 0
        rows = manifest(out)
        assert set(rows) == set(files)  # nothing under OUTPUT was matched, on the re-run either
        if run == 0:
            first = rows
            assert {k: v for k, v in tree_digest(src).items() if not k.startswith("recompressed/")} == before
            changed = encoded(Image.fromarray(photo(96, 128, 9)), "JPEG", quality=80)
            (src / "a/q75_444.jpg").write_bytes(changed)  # a changed source is redone, not skipped
            before["a/q75_444.jpg"] = hashlib.sha256(changed).hexdigest()
    assert {k for k, r in rows.items() if not r["resumed"]} == {"a/q75_444.jpg"}
    assert rows["a/q75_444.jpg"]["source_sha256"] == hashlib.sha256(changed).hexdigest()
    assert rows["a/q90_420.jpg"]["output_sha256"] == first["a/q90_420.jpg"]["output_sha256"]
    after = {k: v for k, v in tree_digest(src).items() if not k.startswith("recompressed/")}
    assert after == before
    # the archive moved as a whole (OUTPUT inside it): everything resumes, with today's URIs
    moved = src.rename(tmp_path / "moved")
    assert cli("recompress", moved, moved / "recompressed", "--mode", "lossless-jpeg,lossless",
               "--progress_interval", "0") == 0
    rows = manifest(moved / "recompressed")
    assert all(r["resumed"] and r["source_uri"].startswith(str(moved)) for r in rows.values())
    assert all(r["output_uri"].startswith(str(moved)) for r in rows.values() if r["output_uri"])
    with pytest.raises(SystemExit, match="inside it"):
        cli("recompress", moved, moved, "--mode", "lossless")
    with pytest.raises(SystemExit, match="inside it"):
        cli("recompress", moved / "recompressed", moved, "--mode", "lossless")
    assert cli("recompress", moved, tmp_path / "x", "--mode", "lossy") == 2


_KILLER = """
import os, signal, sys
from nicbeam.transforms import faults
real = faults.maybe_fail
def maybe_fail(point, key=""):
    if point == "after_journal_write" and key == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)  # a hard kill: no cleanup, no manifest, no _SUCCESS
    real(point, key)
faults.maybe_fail = maybe_fail
from nicbeam.pipelines.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_killed_run_resumes_to_the_manifest_of_an_uninterrupted_run(tmp_path):
    files = {f"img{i:02d}.png": encoded(Image.fromarray(photo(40, 48, i)), "PNG") for i in range(6)}
    files.update(jpeg_corpus())
    src = write_tree(tmp_path / "in", files)
    args = ["--mode", "lossless-jpeg", "--mode", "lossless", "--lossless-codec", "png",
            "--lossless-codec", "webp", "--progress_interval", "0"]
    ref = tmp_path / "ref"
    assert cli("recompress", src, ref, *args) == 0
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _KILLER, "img03.png", "recompress", str(src), str(out), *args],
                          env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "_LATEST").exists()
    journaled = sorted(p.relative_to(out / "_runs/_journal").as_posix()[:-5]
                       for p in (out / "_runs/_journal").rglob("*.json"))
    assert "img03.png" in journaled
    assert len(journaled) >= 2  # the kill came after more than one finished file
    # damage the killed run's work: a truncated verified output, and a partial object with no journal row
    (out / "img03.png.nicb").write_bytes((out / "img03.png.nicb").read_bytes()[:50])
    todo = sorted(set(files) - set(journaled))
    if todo:
        (out / (todo[0] + ".nicb")).write_bytes(b"NICB partial")
    assert cli("recompress", src, out, *args) == 0
    rows = manifest(out)
    assert content(rows, out) == content(manifest(ref), ref)  # the same final manifest
    assert not rows["img03.png"]["resumed"]  # its output was corrupt: redone
    assert {k for k, r in rows.items() if r["resumed"]} == set(journaled) - {"img03.png"}
    for name, row in rows.items():
        if row["status"] == "recompressed":
            assert hashlib.sha256((out / (name + ".nicb")).read_bytes()).hexdigest() == row["output_sha256"]


# ------------------------------------------------------------------------------------------ per-file decisions
def test_lossless_decisions_without_a_pipeline():
    from PIL import ImageCms

    from nicbeam.codecs import get_codec
    from nicbeam.codecs.spec import make_setting
    from nicbeam.transforms import recompress_modes as modes

    pixels = photo(32, 40, 4)
    png = encoded(Image.fromarray(pixels), "PNG", compress_level=0)  # stored: every lossless codec is smaller
    choices = [(make_setting(n, p), get_codec(n, **p)) for n, p in (("png", {}), ("webp", {"lossless": True}))]
    out = modes.lossless(png, choices, {})
    assert out.status == "recompressed" and out.verified and np.array_equal(decode(out.stream), pixels)
    assert len(out.stream) == min(out.candidates.values())
    # a codec that is not lossless never wins, even when it is the smallest: only exact candidates compete
    lossy = (make_setting("webp", {"quality": 10}), get_codec("webp", quality=10))
    out = modes.lossless(png, [lossy, choices[0]], {})
    assert out.setting.codec == "png" and out.candidates["webp:quality=10"].startswith("error: decoded pixels")
    failed = modes.lossless(png, [lossy], {})
    assert (failed.status, failed.reason) == ("failed", "verify_failed")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    icc = encoded(Image.fromarray(pixels), "PNG", icc_profile=profile)
    kept = modes.lossless(icc, choices, {})
    assert (kept.status, kept.reason) == ("kept", "icc_profile")
    assert modes.mode_for(png, ("lossless-jpeg",)) == (None, "not_jpeg")
    jpeg = encoded(Image.fromarray(pixels), "JPEG")
    assert modes.mode_for(jpeg, ("lossless", "target-quality"))[0] == "target-quality"


def test_retried_bundles_leave_each_input_once(tmp_path, monkeypatch):
    """BundleBasedDirectRunner retries a failed bundle: faults after an output write, after a journal write and
    after a manifest shard must still leave one manifest row and one verified output per input."""
    files = jpeg_corpus()
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    monkeypatch.setenv("NICBEAM_FAULTS", "after_object_write@q90_420,after_journal_write@b/lossless.png,"
                                         "after_temp_shard@manifest")
    monkeypatch.setenv("NICBEAM_FAULT_DIR", str(tmp_path))
    assert cli("recompress", src, out, "--mode", "lossless-jpeg,lossless", "--lossless-codec", "png",
               "--runner=BundleBasedDirectRunner", "--progress_interval", "0") == 0
    assert len(list(tmp_path.glob("*.fired"))) == 3
    rows = manifest(out)
    assert set(rows) == set(files)
    for name, row in rows.items():
        if row["status"] == "recompressed":
            assert hashlib.sha256((out / (name + ".nicb")).read_bytes()).hexdigest() == row["output_sha256"]
    assert len(list(out.rglob("*.nicb"))) == sum(r["status"] == "recompressed" for r in rows.values()) == 4

