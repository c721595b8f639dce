"""The jpegls codec (CharLS through imagecodecs): lossless, near-lossless bound, colour transforms, bad streams."""

from __future__ import annotations

import numpy as np
import pytest

from nicbeam.codecs import container, get_codec
from nicbeam.codecs.errors import BitstreamError, InvalidParameterError
from nicbeam.codecs.jpegls import forward_transform, inverse_transform
from tests.forgery import mutated_payloads

SIZES = [(1, 1), (3, 5), (8, 9000), (9000, 8), (33, 47)]


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Textured shared luminance + small per-channel noise: strongly correlated channels, as in photographs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 100 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 12, (h, w))
    chans = [base + offset + rng.normal(0, 1, (h, w)) for offset in (10.0, 0.0, -20.0)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["none", "hp1", "hp2", "hp3"])
def test_colour_transforms_are_exactly_invertible(kind):
    rgb = np.random.default_rng(1).integers(0, 256, (300, 700, 3), dtype=np.uint8)
    rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]]
    np.testing.assert_array_equal(inverse_transform(forward_transform(rgb, kind), kind), rgb)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("params", [{}, {"interleave": "sample"}, {"color_transform": "none"}, {"color_transform": "hp3"}])
def test_lossless_is_byte_exact(size, params):
    image = np.random.default_rng(2).integers(0, 256, (*size, 3), dtype=np.uint8)
    codec = get_codec("jpegls", **params)
    assert codec.lossless
    np.testing.assert_array_equal(codec.decode(codec.encode(image)), image)


@pytest.mark.parametrize("near", [1, 2, 4])
@pytest.mark.parametrize("interleave", ["none", "sample"])
def test_near_lossless_bounds_every_sample(near, interleave):
    for size in [(1, 1), (37, 51)]:
        image = photo_like(*size, seed=near)
        codec = get_codec("jpegls", near=near, interleave=interleave)
        out = codec.decode(codec.encode(image))
        assert np.abs(out.astype(int) - image.astype(int)).max() <= near


def test_colour_transform_pays_off_on_correlated_channels():
    image = photo_like(128, 160)
    raw = len(get_codec("jpegls", color_transform="none").encode(image))
    hp2 = len(get_codec("jpegls").encode(image))
    assert hp2 < 0.8 * raw


def test_transform_with_near_is_refused():
    with pytest.raises(InvalidParameterError):
        get_codec("jpegls", near=2, color_transform="hp1")


@pytest.mark.parametrize("interleave", ["none", "sample"])
@pytest.mark.timeout(60)  # CharLS took ~35 s on one truncated stream before check_frame
def test_mutated_payload_behind_valid_checksum_is_rejected_or_well_formed(interleave):
    image = photo_like(24, 40)
    codec = get_codec("jpegls", interleave=interleave)
    header, payload = container.unpack(codec.encode(image))
    for bad in mutated_payloads(payload, trials=40, seed=3):
        stream = container.pack(header, bad)
        try:
            out = codec.decode(stream)
        except BitstreamError:
            continue
        assert out.shape == image.shape and out.dtype == np.uint8
