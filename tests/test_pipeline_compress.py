"""The compress and decompress Beam jobs on the local FnApiRunner: accounting of a mixed corpus, atomic and
idempotent outputs (re-runs, injected faults, retried bundles), packed bitstreams, memory:// inputs,
jpeg-transcode round trips, and tables that DuckDB and pandas load directly.

Helpers here (corpus builders, table readers) are imported by the other ``test_pipeline_*`` modules.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nicbeam.pipelines.cli import main

# ------------------------------------------------------------------------------------------ helpers


def smooth(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = [
        120 + 80 * np.sin(xx / (7 + 3 * c + seed) + c) * np.cos(yy / 11) + rng.normal(0, 4, xx.shape) for c in range(3)
    ]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def encoded(image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


#: What each file of the mixed corpus must end as: None = compressed, else the error reason.
MIXED_EXPECTED = {
    "good/rgb.png": None,
    "good/photo.jpg": None,
    "good/gray.png": None,
    "good/cmyk.jpg": None,  # CMYK is converted by the image-input policy, not refused
    "good/opaque_alpha.png": None,  # alpha that is fully opaque is dropped
    "bad/corrupt.png": "unreadable",
    "bad/truncated.jpg": "truncated",
    "bad/zero.png": "empty",
    "bad/deep16.png": "high_bit_depth",
    "bad/alpha.png": "alpha",
    "bad/notes.txt": "unreadable",
    "bad/animated.gif": "multi_frame",
    "bad/huge.png": "too_large",
}

#: The pixel limit the mixed-corpus jobs run with (bad/huge.png is over it, everything else under).
MIXED_MAX_PIXELS = 120 * 120


def mixed_files() -> dict[str, bytes]:
    """A corpus with every kind of input the issue names, as name -> bytes (small images: fast tests)."""
    rgb = smooth(40, 56)
    files: dict[str, bytes] = {}
    files["good/rgb.png"] = encoded(Image.fromarray(rgb), "PNG")
    files["good/photo.jpg"] = encoded(Image.fromarray(smooth(48, 40, 1)), "JPEG", quality=90)
    files["good/gray.png"] = encoded(Image.fromarray(rgb[..., 0]), "PNG")
    files["good/cmyk.jpg"] = encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    files["good/opaque_alpha.png"] = encoded(Image.fromarray(rgba, "RGBA"), "PNG")
    png = files["good/rgb.png"]
    files["bad/corrupt.png"] = png[:33] + bytes(np.random.default_rng(3).integers(0, 256, len(png) - 33, np.uint8))
    jpeg = files["good/photo.jpg"]
    files["bad/truncated.jpg"] = jpeg[: len(jpeg) // 2]
    files["bad/zero.png"] = b""
    files["bad/deep16.png"] = encoded(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG")
    translucent = rgba.copy()
    translucent[:10, :10, 3] = 40
    files["bad/alpha.png"] = encoded(Image.fromarray(translucent, "RGBA"), "PNG")
    files["bad/notes.txt"] = b"these are not the pixels you are looking for\n"
    frames = [Image.fromarray(smooth(24, 24, s)).convert("P") for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    files["bad/animated.gif"] = buf.getvalue()
    files["bad/huge.png"] = encoded(Image.fromarray(smooth(130, 130, 2)), "PNG")
    assert set(files) == set(MIXED_EXPECTED)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def latest_run(output: str | Path) -> Path:
    output = Path(output)
    return output / "_runs" / (output / "_LATEST").read_text().strip()


def read_table(run: Path, name: str):
    files = sorted((run / name).glob("*.parquet"))
    assert files, f"no {name} parquet in {run}"
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


def cli(*argv: str) -> int:
    return main([str(a) for a in argv])


# ------------------------------------------------------------------------------------------ tests
def test_mixed_folder_every_input_accounted_for(tmp_path, capsys):
    src = write_tree(tmp_path / "in", mixed_files())
    out = tmp_path / "out"
    code = cli("compress", src, out, "--codec", "jpeg", "--param", "quality=60",
               "--max_pixels", MIXED_MAX_PIXELS, "--progress_interval", "0.5")
    assert code == 0
    err = capsys.readouterr().err
    assert "13 inputs" in err and "all inputs accounted for" in err
    assert "images done" in err  # progress line
    run = latest_run(out)
    meta, errors = read_table(run, "metadata"), read_table(run, "errors")

    def rel(uri):
        return os.path.relpath(uri, src).replace(os.sep, "/")

    assert {rel(r["source_uri"]) for r in meta} == {k for k, v in MIXED_EXPECTED.items() if v is None}
    assert {rel(r["source_uri"]): r["reason"] for r in errors} == {k: v for k, v in MIXED_EXPECTED.items() if v}
    assert all(r["stage"] == "load" and r["message"] for r in errors)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["balanced"] and summary["inputs"] == 13 and summary["duplicates"] == 0
    assert summary["errors_by_reason"]["unreadable"] == 2
    assert summary["counters"]["inputs_matched"] == 13
    assert summary["counters"]["images_ok"] == 5 and summary["counters"]["images_failed"] == 8
    # one stream per good image, at the mirrored path, and nothing else outside _runs
    streams = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nicb"))
    assert streams == sorted(k + ".nicb" for k, v in MIXED_EXPECTED.items() if v is None)
    assert not [p for p in out.rglob("*") if "nicbeam-tmp" in p.name]
    assert not (run / "_tmp").exists() and (run / "_SUCCESS").exists()
    row = next(r for r in meta if r["source_uri"].endswith("rgb.png"))
    assert (row["width"], row["height"], row["codec"], row["setting"]) == (56, 40, "jpeg", "jpeg:quality=60")
    assert row["bitstream_bytes"] == (out / "good/rgb.png.nicb").stat().st_size
    assert 0 < row["payload_bytes"] < row["bitstream_bytes"]
    assert row["bpp"] == pytest.approx(8 * row["payload_bytes"] / (56 * 40))
    assert row["psnr_rgb"] > 25 and row["encode_ms"] > 0 and row["decode_ms"] > 0
    assert row["device"] == "cpu" and row["worker"] and row["source_format"] == "PNG"
    assert json.loads(row["params"])["quality"] == 60
    cmyk = next(r for r in meta if r["source_uri"].endswith("cmyk.jpg"))
    assert cmyk["source_mode"] == "CMYK"

    # decompress the same OUTPUT folder: _runs is skipped, every stream decodes to PNG
    dec = tmp_path / "dec"
    assert cli("decompress", out, dec, "--progress_interval", "0") == 0
    drun = latest_run(dec)
    rows = read_table(drun, "metadata")
    assert len(rows) == 5 and not read_table(drun, "errors")
    assert all(r["output_uri"].endswith(".png") for r in rows)
    back = np.asarray(Image.open(dec / "good/rgb.png"))
    assert back.shape == (40, 56, 3)
    assert sorted(p.relative_to(dec).as_posix() for p in dec.rglob("*.png")) == sorted(
        [k if k.endswith(".png") else k + ".png" for k, v in MIXED_EXPECTED.items() if v is None]
    )


def test_tables_load_in_duckdb_and_pandas(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    import pandas as pd

    files = {k: v for k, v in mixed_files().items() if k.startswith("good/rgb") or "zero" in k}
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    assert cli("compress", src, out, "--codec", "png", "--progress_interval", "0") == 0
    run = latest_run(out)
    got = duckdb.sql(
        f"select codec, lossless, psnr_rgb, bpp from read_parquet('{run}/metadata/*.parquet')"
    ).fetchall()
    assert got[0][0] == "png" and got[0][1] is True and got[0][2] == float("inf") and got[0][3] > 0
    errors = duckdb.sql(f"select reason from read_parquet('{run}/errors/*.parquet')").fetchall()
    assert errors == [("empty",)]
    frame = pd.read_parquet(run / "metadata")
    assert list(frame.columns)[:3] == ["run_id", "source_uri", "source_bytes"]
    assert str(frame["created_at"].dtype).startswith("datetime64") and len(frame) == 1


def test_rerun_leaves_exactly_one_copy_and_separate_run_dirs(tmp_path):
    src = write_tree(tmp_path / "in", {k: v for k, v in mixed_files().items() if k.startswith("good/")})
    out = tmp_path / "out"
    for _ in range(2):
        assert cli("compress", src, out, "--codec", "webp", "--param", "quality=50", "--progress_interval", "0") == 0
    runs = sorted((out / "_runs").iterdir())
    assert len(runs) == 2 and all((r / "_SUCCESS").exists() for r in runs)
    assert len(list(out.rglob("*.nicb"))) == 5
    # each run's table holds each input once; the bitstreams are byte-identical across the two runs
    for run in runs:
        uris = [r["source_uri"] for r in read_table(run, "metadata")]
        assert len(uris) == len(set(uris)) == 5
    assert not [p for p in out.rglob("*") if "nicbeam-tmp" in p.name or p.name == "_tmp"]


def test_fault_after_write_fails_run_then_rerun_completes(tmp_path, monkeypatch):
    """A worker dying between writing an object and reporting it (FnApiRunner does not retry bundles):
    the failed run leaves no partial file and no _SUCCESS; the re-run completes with one copy of each."""
    src = write_tree(tmp_path / "in", {k: v for k, v in mixed_files().items() if k.startswith("good/")})
    out = tmp_path / "out"
    monkeypatch.setenv("NICBEAM_FAULTS", "before_object_rename@photo.jpg,after_object_write@gray.png")
    monkeypatch.setenv("NICBEAM_FAULT_DIR", str(tmp_path))
    with pytest.raises(Exception, match="injected fault"):
        cli("compress", src, out, "--codec", "jpeg", "--run_id", "first", "--progress_interval", "0")
    assert not (out / "_runs/first/_SUCCESS").exists() and not (out / "_LATEST").exists()
    assert not (out / "_runs/first/_tmp").exists()  # the launcher cleans its temp folder even on failure
    assert not (out / "good/photo.jpg.nicb").exists()  # the rename never happened: no partial object
    assert not [p for p in out.rglob("*") if "nicbeam-tmp" in p.name]
    # the second fault fires in the re-run (faults fire once each), the third run succeeds
    with pytest.raises(Exception, match="injected fault"):
        cli("compress", src, out, "--codec", "jpeg", "--run_id", "second", "--progress_interval", "0")
    assert cli("compress", src, out, "--codec", "jpeg", "--run_id", "third", "--progress_interval", "0") == 0
    assert len(list(out.rglob("*.nicb"))) == 5
    assert len(read_table(out / "_runs/third", "metadata")) == 5
    assert (out / "_LATEST").read_text().strip() == "third"


def test_retried_bundles_commit_exactly_once(tmp_path, monkeypatch):
    """BundleBasedDirectRunner retries failed bundles: a fault after an object write and another after a
    temporary Parquet shard is written must leave one object per image and one row per image."""
    src = write_tree(tmp_path / "in", {k: v for k, v in mixed_files().items()})
    out = tmp_path / "out"
    monkeypatch.setenv("NICBEAM_FAULTS", "after_object_write@rgb.png,after_temp_shard@metadata,after_temp_shard@errors")
    monkeypatch.setenv("NICBEAM_FAULT_DIR", str(tmp_path))
    code = cli("compress", src, out, "--codec", "jpeg", "--max_pixels", MIXED_MAX_PIXELS,
               "--runner=BundleBasedDirectRunner", "--progress_interval", "0")
    assert code == 0
    assert len(list(tmp_path.glob("*.fired"))) == 3  # every fault did fire
    run = latest_run(out)
    meta, errors = read_table(run, "metadata"), read_table(run, "errors")
    assert len(meta) == 5 and len({r["source_uri"] for r in meta}) == 5
    assert len(errors) == 8 and len({r["source_uri"] for r in errors}) == 8
    assert len(list(out.rglob("*.nicb"))) == 5
    manifest = json.loads((run / "metadata/_manifest.json").read_text())
    assert manifest["rows"] == 5 and len(list((run / "metadata").glob("*.parquet"))) == len(manifest["files"])


def test_memory_filesystem_and_packed_bitstreams(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/nicbeam-test-{uuid.uuid4().hex[:8]}"
    files = {k: v for k, v in mixed_files().items() if k.startswith("good/") or "zero" in k}
    for name, data in files.items():
        fs.pipe(f"{root}/in/{name}", data)
    try:
        code = cli("compress", f"memory://{root}/in", f"memory://{root}/out", "--codec", "jpegxl",
                   "--param", "distance=2", "--pack", "--run_id", "packed", "--progress_interval", "0")
        assert code == 0
        run = f"{root}/out/_runs/packed"
        assert not [f for f in fs.find(f"{root}/out") if f.endswith(".nicb")]  # packed: no per-image objects
        with fs.open(f"{run}/bitstreams/part-00000-of-00001.parquet", "rb") as handle:
            packed = pq.read_table(handle).to_pylist()
        assert sorted(r["path"] for r in packed) == sorted(k + ".nicb" for k in files if k.startswith("good/"))
        assert all(len(r["bitstream"]) == r["bitstream_bytes"] and r["bitstream"][:4] == b"NICB" for r in packed)
        with fs.open(f"{run}/metadata/part-00000-of-00001.parquet", "rb") as handle:
            meta = pq.read_table(handle).to_pylist()
        assert all(r["bitstream_uri"].startswith(f"memory://{run}/bitstreams#") for r in meta)
        assert all(r["source_uri"].startswith("memory://") for r in meta)
        code = cli("decompress", f"memory://{run}/bitstreams", f"memory://{root}/dec", "--packed",
                   "--run_id", "d", "--progress_interval", "0")
        assert code == 0
        decoded = fs.cat_file(f"{root}/dec/good/rgb.png")
        assert np.asarray(Image.open(io.BytesIO(decoded))).shape == (40, 56, 3)
        assert len(fs.glob(f"{root}/dec/good/*.png")) == 5
    finally:
        fs.rm(root, recursive=True)


def test_jpeg_transcode_round_trip_gives_original_bytes(tmp_path):
    files = {k: v for k, v in mixed_files().items() if k in ("good/photo.jpg", "good/rgb.png", "bad/truncated.jpg")}
    src = write_tree(tmp_path / "in", files)
    out, dec = tmp_path / "out", tmp_path / "dec"
    assert cli("compress", src, out, "--codec", "jpeg-transcode", "--progress_interval", "0") == 0
    run = latest_run(out)
    meta = read_table(run, "metadata")
    assert [Path(r["source_uri"]).name for r in meta] == ["photo.jpg"]
    assert meta[0]["lossless"] and meta[0]["psnr_rgb"] == float("inf")
    assert (meta[0]["width"], meta[0]["height"]) == (40, 48)
    reasons = {Path(r["source_uri"]).name: (r["stage"], r["reason"]) for r in read_table(run, "errors")}
    assert reasons["rgb.png"] == ("encode", "unsupported_input")
    assert reasons["truncated.jpg"][0] == "encode"
    assert cli("decompress", out, dec, "--progress_interval", "0") == 0
    assert (dec / "good/photo.jpg").read_bytes() == files["good/photo.jpg"]


def test_corrupt_streams_are_dead_lettered_with_container_reasons(tmp_path):
    from nicbeam.codecs import get_codec

    good = get_codec("png").encode(smooth(16, 16))
    flipped = bytearray(good)
    flipped[-5] ^= 0xFF
    streams = {"ok.nicb": good, "cut.nicb": good[:-7], "flip.nicb": bytes(flipped), "junk.nicb": b"hello world",
               "zero.nicb": b"", "ignored.txt": b"not matched: folders match *.nicb only"}
    src = write_tree(tmp_path / "in", streams)
    out = tmp_path / "out"
    assert cli("decompress", src, out, "--progress_interval", "0") == 0
    run = latest_run(out)
    reasons = {Path(r["source_uri"]).name: r["reason"] for r in read_table(run, "errors")}
    assert reasons == {"cut.nicb": "truncated", "flip.nicb": "checksum_mismatch", "junk.nicb": "bad_magic",
                       "zero.nicb": "empty"}
    assert [Path(r["source_uri"]).name for r in read_table(run, "metadata")] == ["ok.nicb"]
    assert json.loads((run / "summary.json").read_text())["inputs"] == 5


def test_learned_streams_decompress_in_batches_as_one_by_one(tmp_path):
    """decompress batches equal-size learned streams (decode_batch) and writes exactly the pictures that
    decoding each stream alone gives; a corrupt stream among them fails alone."""
    from nicbeam.codecs import get_codec

    codec = get_codec("mbt2018-mean", quality=3, device="cpu")
    images = {f"im{i}.png": smooth(48, 64, seed=i) for i in range(3)}
    streams = {f"{name}.nicb": codec.encode(im) for name, im in images.items()}
    streams["odd.png.nicb"] = codec.encode(smooth(32, 40, seed=9))  # another size: its own batch
    streams["bad.png.nicb"] = streams["im0.png.nicb"][:-3]
    src = write_tree(tmp_path / "in", streams)
    decoded = {}
    for batch_size in (8, 1):
        out = tmp_path / f"out{batch_size}"
        assert cli("decompress", src, out, "--batch_size", str(batch_size), "--progress_interval", "0") == 0
        run = latest_run(out)
        assert [(Path(r["source_uri"]).name, r["reason"]) for r in read_table(run, "errors")] == [
            ("bad.png.nicb", "truncated")]
        assert len(read_table(run, "metadata")) == 4
        decoded[batch_size] = {n: np.asarray(Image.open(out / n.removesuffix(".nicb"))) for n in streams if n != "bad.png.nicb"}
    for name, pixels in decoded[8].items():
        assert np.array_equal(pixels, codec.decode(streams[name])), name
        assert np.array_equal(pixels, decoded[1][name]), name


def test_streams_that_would_decode_to_one_name_are_not_overwritten(tmp_path):
    """x.nicb and x.png.nicb both decode to x.png: one is decoded, the other is an error row
    (name_collision); a stream whose name cannot clash decodes as usual."""
    from nicbeam.codecs import get_codec

    first, second = get_codec("png").encode(smooth(16, 16)), get_codec("png").encode(smooth(16, 24, seed=1))
    src = write_tree(tmp_path / "in", {"x.nicb": first, "x.png.nicb": second, "y.jpg.nicb": first})
    out = tmp_path / "out"
    assert cli("decompress", src, out, "--progress_interval", "0") == 0
    run = latest_run(out)
    errors = read_table(run, "errors")
    assert [(Path(r["source_uri"]).name, r["stage"], r["reason"]) for r in errors] == [
        ("x.png.nicb", "match", "name_collision")]
    assert "x.nicb" in errors[0]["message"]
    assert sorted(Path(r["source_uri"]).name for r in read_table(run, "metadata")) == ["x.nicb", "y.jpg.nicb"]
    assert np.asarray(Image.open(out / "x.png")).shape[:2] == (16, 16)  # the kept stream's picture
    assert (out / "y.jpg.png").exists()
    assert json.loads((run / "summary.json").read_text())["inputs"] == 3


def test_unsafe_names_never_write_outside_output(tmp_path):
    """Object stores allow keys such as ``a/../../x``; such inputs are refused with reason unsafe_path."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from nicbeam.codecs.spec import make_setting
    from nicbeam.transforms.encode import EncodeImages
    from nicbeam.transforms.paths import SourceFile
    from nicbeam.transforms.records import JobConfig

    img = tmp_path / "x.png"
    img.write_bytes(mixed_files()["good/rgb.png"])
    out = tmp_path / "deep" / "out"
    cfg = JobConfig(run_id="r", output=str(out), settings=(make_setting("png"),))
    sources = [SourceFile(str(img), rel) for rel in ("../../escape.png", "/abs.png", "a//b.png", "ok/x.png")]
    with beam.Pipeline(runner="FnApiRunner") as p:
        outputs = p | beam.Create(sources) | EncodeImages(cfg)
        reasons = outputs["errors"] | beam.Map(lambda r: r["reason"])
        assert_that(reasons, equal_to(["unsafe_path"] * 3))
    written = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.nicb")]
    assert written == ["deep/out/ok/x.png.nicb"]


def test_output_inside_input_is_refused(tmp_path):
    src = write_tree(tmp_path / "in", {"a.png": mixed_files()["good/rgb.png"]})
    with pytest.raises(SystemExit, match="inside INPUT"):
        cli("compress", src, src / "out", "--codec", "png")


def test_missing_input_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        cli("compress", tmp_path / "nope", tmp_path / "out", "--codec", "png")


def test_torch_threads_option_sets_worker_threads(tmp_path):
    """--torch_threads N sets PyTorch's intra-op threads in the worker (here: this process, FnApiRunner)."""
    torch = pytest.importorskip("torch")
    src = write_tree(tmp_path / "in", {"a.png": encoded(Image.fromarray(smooth(32, 48)), "PNG")})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for threads in ("1", "2"):
            assert cli("compress", src, tmp_path / f"out{threads}", "--codec", "jpeg", "--torch_threads", threads,
                       "--progress_interval", "0") == 0
            assert torch.get_num_threads() == int(threads)
    finally:
        torch.set_num_threads(before)
