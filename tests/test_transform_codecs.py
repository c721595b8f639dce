"""The transform codecs ``dct`` and ``dwt``: geometry, rate control, quality against their classical peers,
rejection of damaged streams, and the shared adaptive range coder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("constriction")

from nicbeam.codecs import BitstreamError, container, get_codec  # noqa: E402
from nicbeam.entropy.adaptive import AdaptiveDecoder, AdaptiveEncoder, AdaptiveModels  # noqa: E402
from nicbeam.metrics.psnr import psnr  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "kodak" / "kodim23.png"
CODECS = [("dct", {"subsampling": "420"}), ("dct", {"subsampling": "444"}), ("dwt", {})]


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A 128 x 192 natural-image crop (kodim23: parrots)."""
    image = np.asarray(Image.open(SAMPLE).convert("RGB"))
    return np.ascontiguousarray(image[200:328, 300:492])


def _tiled(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.ascontiguousarray(image[np.arange(height) % image.shape[0]][:, np.arange(width) % image.shape[1]])


def test_adaptive_coder_round_trip_with_escapes():
    rng = np.random.default_rng(1)
    enc, models = AdaptiveEncoder(), [AdaptiveModels(5, 4), AdaptiveModels(5, 16)]
    groups = []
    for _ in range(30):
        ctx = rng.integers(0, 5, 40)
        mags = np.minimum(rng.geometric(0.3, 40) - 1, 3)
        mags[::7] = rng.integers(3, 1 << 20, mags[::7].size)  # far beyond the direct remainders
        values = mags * rng.choice([-1, 1], 40)
        groups.append((ctx, values))
        enc.levels(mags, models[0], ctx)
        capped = mags >= 3
        enc.remainders(mags[capped], models[1], ctx[capped])
        enc.signs(values)
    dec, dmodels = AdaptiveDecoder(enc.finish()), [AdaptiveModels(5, 4), AdaptiveModels(5, 16)]
    for ctx, values in groups:
        mags = dec.levels(dmodels[0], ctx)
        capped = mags >= 3
        mags[capped] = dec.remainders(dmodels[1], ctx[capped])
        np.testing.assert_array_equal(dec.signs(mags), values)
    np.testing.assert_array_equal(models[0].counts, dmodels[0].counts)


#: Every codec setting at every shape, except the slow 9000x8 extreme for dct 4:4:4 (one extreme per codec suffices).
GEOMETRY_CASES = [
    (name, params, shape)
    for name, params in CODECS
    for shape in [(1, 1), (2, 5), (7, 13), (13, 7), (17, 33), (9000, 8)]
    if not (shape == (9000, 8) and params.get("subsampling") == "444")
]


@pytest.mark.parametrize("name,params,shape", GEOMETRY_CASES)
def test_round_trip_keeps_any_geometry(crop, name, params, shape):
    image = _tiled(crop, *shape)
    codec = get_codec(name, **params)
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert psnr(image, decoded) > 22


@pytest.mark.parametrize("name,params", CODECS)
def test_rate_grows_with_quality(crop, name, params):
    sizes = [len(get_codec(name, quality=q, **params).encode(crop)) for q in (10, 40, 75, 95)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] / 3


@pytest.mark.parametrize("subsampling", ["420", "444"])
def test_dct_beats_jpeg_at_the_same_quality_matrix(crop, subsampling):
    """Same quantisation matrices as libjpeg: the adaptive coder must spend fewer bits for no worse PSNR."""
    for quality in (50, 85):
        jpeg = get_codec("jpeg", quality=quality, subsampling=subsampling)
        dct = get_codec("dct", quality=quality, subsampling=subsampling)
        j, d = jpeg.encode(crop), dct.encode(crop)
        assert len(d) < 0.9 * len(j)
        assert psnr(crop, dct.decode(d)) > psnr(crop, jpeg.decode(j)) - 0.5


def test_dct_420_is_smaller_than_444(crop):
    small = get_codec("dct", quality=75, subsampling="420").encode(crop)
    full = get_codec("dct", quality=75, subsampling="444").encode(crop)
    assert len(small) < len(full)


def test_dwt_beats_jpeg_at_a_similar_rate(crop):
    """Against libjpeg 4:2:0 at quality 50, the dwt quality of about the same size gives a higher PSNR."""
    jpeg = get_codec("jpeg", quality=50)
    j = jpeg.encode(crop)
    streams = {q: get_codec("dwt", quality=q).encode(crop) for q in range(30, 80, 4)}
    quality = min(streams, key=lambda q: abs(len(streams[q]) - len(j)))
    d = streams[quality]
    assert abs(len(d) - len(j)) < 0.15 * len(j)
    assert psnr(crop, get_codec("dwt", quality=quality).decode(d)) > psnr(crop, jpeg.decode(j)) + 0.5


def test_dwt_tiles_large_images(crop, monkeypatch):
    """Images beyond one tile are coded tile by tile and still decode to the declared geometry."""
    from nicbeam.codecs.transform import dwt

    monkeypatch.setattr(dwt, "TILE", 48)
    image = _tiled(crop, 70, 100)
    decoded = get_codec("dwt", quality=70).decode(get_codec("dwt", quality=70).encode(image))
    assert decoded.shape == image.shape and psnr(image, decoded) > 30


def test_dct_stripes_large_images(crop, monkeypatch):
    """Images beyond one stripe carry models and neighbour rows across stripes."""
    from nicbeam.codecs.transform import dct

    monkeypatch.setattr(dct, "STRIPE_PIXELS", 16 * 64)
    image = _tiled(crop, 70, 100)
    for subsampling in ("420", "444"):
        codec = get_codec("dct", quality=70, subsampling=subsampling)
        decoded = codec.decode(codec.encode(image))
        assert decoded.shape == image.shape and psnr(image, decoded) > 30


@pytest.mark.parametrize("name,params", CODECS)
def test_damaged_streams_raise_or_keep_geometry(crop, name, params):
    codec = get_codec(name, quality=60, **params)
    image = crop[:40, :56]
    header, payload = container.unpack(codec.encode(image))
    rng = np.random.default_rng(7)
    forged = [payload[:-4], payload[:3], payload + b"\0\0\0\0" * 50, b"\0" * len(payload),
              bytes(rng.integers(0, 256, len(payload), dtype=np.uint8))]
    for _ in range(12):
        data = bytearray(payload)
        data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        forged.append(bytes(data))
    errors = 0
    for data in forged:
        try:
            decoded = codec.decode(container.pack(header, data))
        except BitstreamError:
            errors += 1
            continue
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert errors >= 1  # the 3-byte payload at least
    wrong = dataclasses.replace(header, params={**header.params, "quality": 0})
    with pytest.raises(BitstreamError):
        codec.decode(container.pack(wrong, payload))


@pytest.mark.parametrize("name,params", CODECS)
def test_decode_batch_equals_decode_and_other_settings_decode(crop, name, params):
    image = crop[:24, :40]
    streams = [get_codec(name, quality=q, **params).encode(image) for q in (20, 90)]
    codec = get_codec(name, **params)
    for got, stream in zip(codec.decode_batch(streams), streams):
        np.testing.assert_array_equal(got, codec.decode(stream))


def test_beam_encode_transform_runs_the_transform_codecs(tmp_path, crop):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from nicbeam.codecs.spec import make_setting
    from nicbeam.transforms.encode import EncodeImages
    from nicbeam.transforms.paths import SourceFile
    from nicbeam.transforms.records import JobConfig

    Image.fromarray(crop[:20, :28]).save(tmp_path / "tiny.png")
    settings = (make_setting("dct", {"quality": 50, "subsampling": "444"}), make_setting("dwt", {"quality": 50}))
    cfg = JobConfig(run_id="t", output=str(tmp_path / "out"), settings=settings, metrics="fast")
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create([SourceFile(str(tmp_path / "tiny.png"), "tiny.png")]) | EncodeImages(cfg)
        assert_that(out["metadata"] | beam.Map(lambda r: (r["codec"], r["height"], r["width"], r["psnr_rgb"] > 25)),
                    equal_to([("dct", 20, 28, True), ("dwt", 20, 28, True)]), label="rows")
        assert_that(out["errors"], equal_to([]), label="errors")
