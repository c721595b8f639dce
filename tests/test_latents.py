"""Compressed-domain latents: encoder-side export equals entropy-decoding the written streams, through the
Beam compress job (Parquet and .npy forms) and the ``nicbeam latents`` job, with the shipped weights on a
crop of a sample image; corrupt streams end in the errors table; non-learned codecs are refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import imagecodecs  # noqa: E402
import pandas as pd  # noqa: E402

from nicbeam.codecs import container, get_codec  # noqa: E402
from nicbeam.codecs.errors import BitstreamError, ChecksumError, TruncatedBitstreamError  # noqa: E402
from nicbeam.codecs.learned.latents import TileLatents, assemble  # noqa: E402
from nicbeam.image_input import load_image  # noqa: E402
from nicbeam.latents import read_latents  # noqa: E402
from nicbeam.pipelines.cli import main  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "kodak" / "kodim23.png"
LEARNED = ("bmshj2017-factorized", "mbt2018-mean")


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A 96 x 136 crop of a sample (not a multiple of 16 or 64: padded), small enough to code fast."""
    return np.ascontiguousarray(load_image(SAMPLE.read_bytes()).pixels[200:296, 300:436])


@pytest.fixture
def images(tmp_path, crop) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(bytes(imagecodecs.png_encode(crop)))
    (folder / "sub" / "b.png").write_bytes(bytes(imagecodecs.png_encode(np.ascontiguousarray(crop[::-1, ::-1]))))
    return folder


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def latest_run(output: Path) -> Path:
    return output / "_runs" / (output / "_LATEST").read_text().strip()


def assert_same_latents(a, b) -> None:
    for name in ("y_hat", "y_symbols", "z_hat"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name


# ------------------------------------------------------------------------------------------ codec level
@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("tile", [1024, 64])
def test_encoder_latents_are_what_the_stream_codes(crop, name, tile):
    codec = get_codec(name, quality=4, tile=tile, device="cpu")
    stream, latents = codec.encode_with_latents(crop)
    assert stream == codec.encode(crop)  # exporting changes nothing in the stream
    decoded = codec.decode_latents(stream)
    assert_same_latents(latents, decoded)
    header = container.parse_header(stream)
    assert (decoded.codec, decoded.quality, decoded.model_digest) == (name, 4, header.model_digest_hex)
    assert (decoded.height, decoded.width) == crop.shape[:2]
    pad = codec.downsampling
    assert decoded.y_hat.shape == (codec.model.M, -(-96 // pad) * pad // 16, -(-136 // pad) * pad // 16)
    assert decoded.y_valid == (6, 9)
    assert decoded.y_symbols.dtype == np.int32 and decoded.y_hat.dtype == np.float32
    assert np.count_nonzero(decoded.y_symbols) > 0
    if name == "bmshj2017-factorized":  # the stream codes y_hat itself
        assert decoded.z_hat is None and np.array_equal(decoded.y_hat, decoded.y_symbols)
    else:  # symbols are residuals round(y - mu), mu from z_hat in steps of 1/256
        assert decoded.z_hat.dtype == np.int32 and decoded.z_hat.shape[1:] == (decoded.y_hat.shape[1] // 4,
                                                                               decoded.y_hat.shape[2] // 4)
        means = decoded.y_hat - decoded.y_symbols
        assert not np.array_equal(decoded.y_hat, np.round(decoded.y_hat))
        assert np.array_equal(means * 256, np.round(means * 256))
    if tile == 1024:  # one tile: y_hat through the synthesis transform is exactly the decoded image
        with torch.no_grad():
            y = torch.from_numpy(decoded.y_hat)[None].to(codec.synthesis_dtype)
            x = codec.synthesis_model.synthesis(y, torch.tensor([3]))
        pixels = x.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()[:96, :136]
        assert np.array_equal(pixels, codec.decode(stream))


def test_assemble_places_tiles_in_raster_order():
    grid = [(0, 0, 64, 64), (0, 64, 64, 30), (64, 0, 20, 64), (64, 64, 20, 30)]
    sizes = [(4, 4), (4, 2), (2, 4), (2, 2)]  # latent (h, w) of each padded tile
    tiles = [TileLatents(np.full((3, h, w), k, np.float32), np.full((3, h, w), k, np.int64)) for k, (h, w) in enumerate(sizes)]
    whole = assemble(tiles, grid)
    assert whole.y_hat.shape == (3, 6, 6) and whole.z_hat is None
    expected = np.array([[0] * 4 + [1] * 2] * 4 + [[2] * 4 + [3] * 2] * 2)
    assert np.array_equal(whole.y_hat[1], expected) and np.array_equal(whole.y_symbols[2], expected)


def test_latents_outside_int32_are_refused_not_wrapped():
    from nicbeam.codecs.errors import PayloadError
    from nicbeam.codecs.learned.latents import to_int32

    assert to_int32(np.array([-(2**31), 2**31 - 1], dtype=np.int64), "y").dtype == np.int32
    with pytest.raises(PayloadError, match="int32"):
        to_int32(np.array([0, 2**31], dtype=np.int64), "y symbol")


def test_decode_latents_refuses_damaged_streams(crop):
    codec = get_codec("mbt2018-mean", quality=2, device="cpu")
    stream = codec.encode(crop)
    with pytest.raises(TruncatedBitstreamError):
        codec.decode_latents(stream[:-7])
    flipped = bytearray(stream)
    flipped[-3] ^= 0x10
    with pytest.raises(ChecksumError):
        codec.decode_latents(bytes(flipped))
    with pytest.raises(BitstreamError):  # a stream of another codec
        codec.decode_latents(get_codec("jpeg").encode(crop))


# ------------------------------------------------------------------------------------------ Beam jobs
@pytest.mark.parametrize("name,storage,params", [
    ("mbt2018-mean", "parquet", ["quality=3"]),
    ("bmshj2017-factorized", "npy", ["quality=5", "tile=64"]),
])
def test_compress_exports_the_latents_of_the_written_streams(images, tmp_path, name, storage, params):
    out = tmp_path / "out"
    args = ["compress", images, out, "--codec", name, "--metrics", "none", "--progress_interval", "0",
            "--export-latents", storage]
    for p in params:
        args += ["--param", p]
    assert cli(*args) == 0
    run = latest_run(out)
    assert json.loads((run / "summary.json").read_text())["balanced"]
    records = read_latents(str(run / "latents"))
    assert [r.path for r in records] == ["a.png", "sub/b.png"]
    codec = get_codec(name, device="cpu")
    for record in records:
        stream = (out / f"{record.path}.nicb").read_bytes()
        assert record.bitstream_uri.endswith(f"{record.path}.nicb")
        assert_same_latents(record, codec.decode_latents(stream))
        assert (record.codec, record.model_digest) == (name, codec.model_digest.hex())
        assert record.quality == int(params[0].split("=")[1]) and (record.height, record.width) == (96, 136)
    table = pd.read_parquet(run / "latents")
    assert len(table) == 2 and set(table["storage"]) == {storage}
    if storage == "npy":  # arrays live in .npy files beside the streams; the table references them
        assert table["y_hat"].isna().all() and table["z_hat_npy"].isna().all()
        assert np.load(out / "sub/b.png.y_symbols.npy").dtype == np.int32
        assert sorted(p.name for p in out.glob("*.npy")) == ["a.png.y_hat.npy", "a.png.y_symbols.npy"]
    else:  # flattened arrays + shape in the table
        row = table[table["path"] == "a.png"].iloc[0]
        y = np.asarray(row["y_hat"], dtype=np.float32).reshape(row["y_shape"])
        assert np.array_equal(y, records[0].y_hat) and not list(out.glob("*.npy"))


def test_latents_job_decodes_streams_and_dead_letters_bad_ones(images, tmp_path, crop):
    out = tmp_path / "out"
    assert cli("compress", images, out, "--codec", "mbt2018-mean", "--param", "quality=2", "--metrics", "none",
               "--progress_interval", "0") == 0
    good = (out / "a.png.nicb").read_bytes()
    (out / "truncated.nicb").write_bytes(good[: len(good) // 2])
    tampered = bytearray(good)
    tampered[len(good) - 20] ^= 0x01
    (out / "tampered.nicb").write_bytes(bytes(tampered))
    (out / "empty.nicb").write_bytes(b"")
    (out / "classical.nicb").write_bytes(get_codec("jpeg").encode(crop))
    lat = tmp_path / "lat"
    assert cli("latents", out, lat, "--progress_interval", "0") == 0
    run = latest_run(lat)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["balanced"] and summary["inputs"] == 6 and summary["ok_rows"] == 2
    assert summary["errors_by_reason"] == {"checksum_mismatch": 1, "empty": 1, "no_latents": 1, "truncated": 1}
    errors = pd.read_parquet(run / "errors")
    assert set(errors["stage"]) == {"decode"} and errors["message"].str.len().min() > 0
    records = read_latents(str(run))
    assert [r.path for r in records] == ["a.png", "sub/b.png"]
    codec = get_codec("mbt2018-mean", device="cpu")
    assert_same_latents(records[0], codec.decode_latents(good))

    # packed streams (compress --pack) give the same latents
    packed = tmp_path / "packed"
    assert cli("compress", images, packed, "--codec", "mbt2018-mean", "--param", "quality=2", "--metrics", "none",
               "--pack", "--progress_interval", "0") == 0
    lat2 = tmp_path / "lat2"
    assert cli("latents", latest_run(packed) / "bitstreams", lat2, "--packed", "--progress_interval", "0") == 0
    for a, b in zip(read_latents(str(latest_run(lat2))), records):
        assert a.path == b.path and a.source_uri.endswith(f"#{a.path}.nicb")
        assert_same_latents(a, b)


def test_export_latents_refuses_a_classical_codec_before_running(images, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli("compress", images, out, "--codec", "jpeg", "--export-latents", "--progress_interval", "0") == 2
    err = capsys.readouterr().err
    assert "--export-latents needs a learned codec" in err and "'jpeg'" in err
    assert not out.exists()  # nothing started: no run folder, no rows
