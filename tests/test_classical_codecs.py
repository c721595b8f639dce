"""Classical codec wrappers: round trips, rate control, parameter and input checks, JPEG recompression."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

import nicbeam.codecs as nc
from nicbeam.codecs import InvalidParameterError, PayloadError, UnsupportedInputError, get_codec

RGB_CODECS = ["jpeg", "webp", "avif", "jpeg2000", "jpegxl", "png"]
ALL_CODECS = RGB_CODECS + ["jpeg-transcode"]

#: Minimum PSNR (dB) at each lossy codec's default settings on the 64x48 test image / on odd sizes.
DEFAULT_PSNR = {"jpeg": 33.0, "webp": 31.0, "avif": 33.0, "jpeg2000": 36.0, "jpegxl": 33.0}
ODD_SIZE_PSNR = 26.0

#: Lossless settings of codecs that are lossy by default.
LOSSLESS_VARIANTS = [
    ("png", {}),
    ("png", {"level": 9}),
    ("webp", {"lossless": True}),
    ("jpeg2000", {"lossless": True}),
    ("jpegxl", {"lossless": True}),
    ("avif", {"quality": 100}),
]

#: Three settings per lossy codec, from most to fewest bits.
RATE_SWEEPS = {
    "jpeg": ("quality", [90, 60, 30]),
    "webp": ("quality", [90, 60, 30]),
    "avif": ("quality", [80, 60, 30]),
    "jpeg2000": ("psnr", [45.0, 35.0, 25.0]),
    "jpegxl": ("distance", [0.5, 1.5, 4.0]),
}

LIBRARY_NAMES = {
    "jpeg": "libjpeg",
    "webp": "libwebp",
    "avif": "libavif",
    "jpeg2000": "openjpeg",
    "jpegxl": "libjxl",
    "png": "libpng",
    "jpeg-transcode": "libjxl",
}


def synthetic(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus a periodic texture and a little seeded noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width, 2)
    base = np.stack([200 * xx + 30, 180 * yy + 40, 120 * (1 - xx) * yy + 80 + 60 * np.sin(6 * xx)], axis=-1)
    texture = 8 * np.sin(xx * 40) * np.cos(yy * 33)
    image = base + texture[..., None] + rng.normal(0, 3, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def bpp(stream: bytes, image: np.ndarray) -> float:
    return 8 * len(stream) / (image.shape[0] * image.shape[1])


def chroma_stripes(image: np.ndarray) -> np.ndarray:
    """``image`` with the red channel inverted on every other row: detail that 4:2:0 cannot keep."""
    striped = image.copy()
    striped[::2, :, 0] = 255 - striped[::2, :, 0]
    return striped


def pillow_jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic(48, 64)


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    """A 4:2:0 JPEG large enough for JPEG XL recompression to pay for its own headers."""
    return pillow_jpeg(Image.fromarray(synthetic(160, 224, seed=3)), quality=90)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", RGB_CODECS)
def test_round_trip_default_settings(name, image):
    codec = get_codec(name)
    stream = codec.encode(image)
    decoded = codec.decode(stream)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    if codec.lossless:
        np.testing.assert_array_equal(decoded, image)
    else:
        assert psnr(decoded, image) > DEFAULT_PSNR[name]
    assert nc.parse_header(stream).codec == name


@pytest.mark.parametrize("name", RGB_CODECS)
@pytest.mark.parametrize("shape", [(1, 1), (13, 17), (200, 3)])
def test_round_trip_odd_sizes(name, shape):
    x = synthetic(*shape, seed=1)
    codec = get_codec(name)
    decoded = codec.decode(codec.encode(x))
    assert decoded.shape == x.shape and decoded.dtype == np.uint8
    if codec.lossless:
        np.testing.assert_array_equal(decoded, x)
    else:
        assert psnr(decoded, x) > ODD_SIZE_PSNR


@pytest.mark.parametrize("name,params", LOSSLESS_VARIANTS)
def test_lossless_settings_are_exact(name, params, image):
    codec = get_codec(name, **params)
    assert codec.lossless
    for x in (image, synthetic(13, 17, seed=2)):
        np.testing.assert_array_equal(codec.decode(codec.encode(x)), x)


@pytest.mark.parametrize("name", ["webp", "avif", "jpeg2000", "jpegxl", "jpeg"])
def test_lossy_defaults_say_so(name):
    assert get_codec(name).lossless is False


@pytest.mark.parametrize("name", RGB_CODECS)
def test_generic_decode_matches_codec_decode(name, image):
    codec = get_codec(name)
    stream = codec.encode(image)
    np.testing.assert_array_equal(nc.decode(stream), codec.decode(stream))


@pytest.mark.parametrize("name", RGB_CODECS)
def test_decoding_with_other_settings_uses_the_stream_settings(name, image):
    """A codec instance decodes streams made with different parameters (the header carries them)."""
    key, values = RATE_SWEEPS.get(name, ("level", [1]))
    stream = get_codec(name, **{key: values[-1]}).encode(image)
    np.testing.assert_array_equal(get_codec(name).decode(stream), nc.decode(stream))


@pytest.mark.parametrize("name", RGB_CODECS)
def test_encoders_are_deterministic(name, image):
    assert get_codec(name).encode(image) == get_codec(name).encode(image)


# --------------------------------------------------------------------------- rate control
@pytest.mark.parametrize("name", sorted(RATE_SWEEPS))
def test_rate_decreases_with_quality(name, image):
    key, values = RATE_SWEEPS[name]
    rates, qualities = [], []
    for value in values:
        codec = get_codec(name, **{key: value})
        stream = codec.encode(image)
        rates.append(bpp(stream, image))
        qualities.append(psnr(codec.decode(stream), image))
    assert rates[0] > rates[1] > rates[2], rates
    assert qualities[0] > qualities[2], qualities


def test_jpeg_subsampling_modes_differ(image):
    chroma_detail = chroma_stripes(image)
    streams = {s: get_codec("jpeg", subsampling=s, quality=90).encode(chroma_detail) for s in ("420", "422", "444")}
    decoded = {s: get_codec("jpeg").decode(stream) for s, stream in streams.items()}
    assert len(set(streams.values())) == 3
    assert not np.array_equal(decoded["420"], decoded["444"])
    assert len(streams["444"]) > len(streams["420"])
    assert psnr(decoded["444"], chroma_detail) > psnr(decoded["420"], chroma_detail) + 3


@pytest.mark.parametrize("subsampling,pillow_code", [("420", 2), ("444", 0)])
def test_jpeg_matches_pillow(image, subsampling, pillow_code):
    ours = get_codec("jpeg", quality=75, subsampling=subsampling).decode(
        get_codec("jpeg", quality=75, subsampling=subsampling).encode(image)
    )
    direct = pillow_jpeg(Image.fromarray(image), quality=75, subsampling=pillow_code)
    with Image.open(io.BytesIO(direct)) as reference:
        np.testing.assert_array_equal(ours, np.asarray(reference.convert("RGB")))


def test_avif_subsampling_modes_differ(image):
    striped = chroma_stripes(image)
    decoded = {}
    for subsampling in ("420", "444"):
        codec = get_codec("avif", subsampling=subsampling, quality=90)
        decoded[subsampling] = codec.decode(codec.encode(striped))
    assert psnr(decoded["444"], striped) > psnr(decoded["420"], striped) + 3


# --------------------------------------------------------------------------- parameter and input checks
BAD_PARAMS = {
    "jpeg": [{"quality": 0}, {"quality": 101}, {"quality": "high"}, {"subsampling": "411"}, {"optimize": "maybe"}],
    "webp": [{"quality": -1}, {"quality": 101}, {"method": 7}, {"lossless": 2}],
    "avif": [{"quality": 101}, {"speed": 11}, {"speed": -1}, {"subsampling": "400"}],
    "jpeg2000": [{"psnr": 5.0}, {"psnr": 101}, {"psnr": float("nan")}, {"lossless": "sometimes"}],
    "jpegxl": [{"distance": -0.1}, {"distance": 25.5}, {"effort": 0}, {"effort": 10}, {"lossless": 3}],
    "png": [{"level": -1}, {"level": 10}, {"level": 1.5}],
    "jpeg-transcode": [{"effort": 7}],
}


@pytest.mark.parametrize("name", ALL_CODECS)
def test_invalid_parameters_are_refused(name):
    for params in BAD_PARAMS[name] + [{"no_such_parameter": 1}]:
        with pytest.raises(InvalidParameterError):
            get_codec(name, **params)


@pytest.mark.parametrize("name", RGB_CODECS)
def test_wrong_input_is_refused(name, image):
    codec = get_codec(name)
    bad_inputs = [
        image.astype(np.float32) / 255,
        image[..., 0],
        np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1),
        image.astype(np.uint16),
        np.zeros((0, 5, 3), np.uint8),
        b"\xff\xd8\xff",
    ]
    for bad in bad_inputs:
        with pytest.raises(UnsupportedInputError):
            codec.encode(bad)


@pytest.mark.parametrize("name", RGB_CODECS)
def test_corrupt_payload_is_a_payload_error(name, image):
    """A payload that passes the container checksum but is not valid for the codec raises PayloadError."""
    codec = get_codec(name)
    header = nc.parse_header(codec.encode(image))
    forged = nc.container.pack(header, b"\x00" * 40)
    with pytest.raises(PayloadError):
        codec.decode(forged)


@pytest.mark.parametrize("name", ALL_CODECS)
def test_implementation_names_library_and_version(name):
    text = get_codec(name).implementation()
    assert LIBRARY_NAMES[name] in text.lower()
    assert re.search(r"\d+\.\d+", text), text


# --------------------------------------------------------------------------- jpeg-transcode
@pytest.mark.parametrize(
    "options,channels",
    [
        ({"quality": 90}, 3),
        ({"quality": 90, "subsampling": 0}, 3),
        ({"quality": 80, "progressive": True}, 3),
        ({"quality": 85, "grey": True}, 1),
    ],
    ids=["420", "444", "progressive", "grey"],
)
def test_jpeg_transcode_returns_the_original_bytes(options, channels):
    options = dict(options)
    picture = Image.fromarray(synthetic(160, 224, seed=4))
    if options.pop("grey", False):
        picture = picture.convert("L")
    original = pillow_jpeg(picture, **options)
    codec = get_codec("jpeg-transcode")
    stream = codec.encode(original)
    header = nc.parse_header(stream)
    assert (header.height, header.width, header.channels) == (160, 224, channels)
    restored = codec.decode(stream)
    assert isinstance(restored, bytes) and restored == original
    assert nc.decode(stream) == original
    assert len(stream) < len(original)


def test_jpeg_transcode_accepts_buffers_and_is_deterministic(photo_jpeg):
    codec = get_codec("jpeg-transcode")
    stream = codec.encode(bytearray(photo_jpeg))
    assert stream == codec.encode(memoryview(photo_jpeg)) == codec.encode(photo_jpeg)
    assert codec.decode(stream) == photo_jpeg


def test_jpeg_transcode_is_smaller_than_the_jpeg(photo_jpeg):
    stream = get_codec("jpeg-transcode").encode(photo_jpeg)
    assert len(stream) < 0.95 * len(photo_jpeg)


def _with_sof(jpeg: bytes, marker: int) -> bytes:
    index = jpeg.index(b"\xff\xc0")
    return jpeg[:index] + bytes([0xFF, marker]) + jpeg[index + 2 :]


def test_jpeg_transcode_refuses_what_it_cannot_recompress(image, photo_jpeg):
    import imagecodecs

    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    refused = [
        image,  # pixels, not a JPEG file
        "not bytes",
        b"",
        png.getvalue(),
        photo_jpeg[:2],  # SOI only
        photo_jpeg[:30],  # cut before the frame header
        _with_sof(photo_jpeg, 0xC9),  # arithmetic coding
        _with_sof(photo_jpeg, 0xC3),  # lossless process
        pillow_jpeg(Image.fromarray(image).convert("CMYK"), quality=75),  # 4 components
        imagecodecs.jpeg8_encode(image, lossless=True),  # SOF3 from libjpeg-turbo
        imagecodecs.jpeg8_encode(image.astype(np.uint16) * 16, 75, bitspersample=12),  # 12-bit
    ]
    codec = get_codec("jpeg-transcode")
    for bad in refused:
        with pytest.raises(UnsupportedInputError):
            codec.encode(bad)


def test_jpeg_transcode_refuses_a_jpeg_libjxl_rejects(photo_jpeg):
    """A frame header the parser accepts but libjxl does not (a damaged Huffman table) is still refused."""
    dht = photo_jpeg.index(b"\xff\xc4")
    damaged = photo_jpeg[: dht + 4] + b"\x55" * 17 + photo_jpeg[dht + 21 :]
    with pytest.raises(UnsupportedInputError):
        get_codec("jpeg-transcode").encode(damaged)


def test_jpeg_transcode_geometry_mismatch_is_a_payload_error(photo_jpeg):
    codec = get_codec("jpeg-transcode")
    header, payload = nc.container.unpack(codec.encode(photo_jpeg))
    wrong = nc.Header(codec=header.codec, params=header.params, height=header.height + 1, width=header.width)
    with pytest.raises(PayloadError):
        codec.decode(nc.container.pack(wrong, payload))


@pytest.mark.parametrize("name,width", [("webp", 16383), ("jpeg", 65501), ("avif", 32769)])
def test_images_beyond_library_limits_are_refused_up_front(name, width):
    with pytest.raises(UnsupportedInputError):
        get_codec(name).encode(np.zeros((1, width, 3), np.uint8))


def test_webp_largest_side_round_trips():
    x = np.full((1, 16382, 3), 90, np.uint8)
    codec = get_codec("webp", method=0)
    assert codec.decode(codec.encode(x)).shape == x.shape


def test_jpeg_decode_bounded_by_the_header_not_pillows_global_limit(image, monkeypatch):
    """JPEG payloads decode under the container's pixel limit (not Pillow's process-wide ~179 MP bomb limit),
    and a payload declaring another size than its header is refused before any pixel is decoded."""
    from PIL import Image as PILImage

    codec = get_codec("jpeg", quality=80)
    stream = codec.encode(image)
    expected = codec.decode(stream)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 16)  # far below this image: Image.open would refuse it
    np.testing.assert_array_equal(codec.decode(stream), expected)
    header, payload = nc.container.unpack(stream)
    small = np.ascontiguousarray(image[: image.shape[0] // 2])
    other_payload = nc.container.unpack(codec.encode(small))[1]
    with pytest.raises(PayloadError, match="declares"):
        codec.decode(nc.container.pack(header, other_payload))
