"""Tests for the image-input policy (nicbeam.image_input).

Edge-case files live in tests/data/edge/ (see its README.md); regenerate them
with tests/data/make_edge_cases.py.  Other cases are built in memory.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from nicbeam.image_input import (
    DEFAULT_MAX_PIXELS,
    REASONS,
    ImageInputError,
    LoadedImage,
    load_image,
)

EDGE = Path(__file__).resolve().parent / "data" / "edge"

# the samples of edge/rgb16.png and edge/rgb16.tif (see make_edge_cases.py)
RGB16_VALUES = np.array(
    [[[65535, 771, 1000], [0, 257, 65280]], [[32768, 12345, 128], [257 * 200, 65534, 129]]],
    dtype=np.uint16,
)

# The option that accepts each refusable reason, as it must appear in the message.
OPTION_FOR = {
    "alpha": "alpha='composite'",
    "high_bit_depth": "high_bit_depth='reduce'",
    "multi_frame": "frames='first'",
    "too_large": "max_pixels=",
}


def edge(name: str) -> Path:
    path = EDGE / name
    assert path.exists(), f"{path} missing: run tests/data/make_edge_cases.py"
    return path


def pil_open(name: str) -> Image.Image:
    """Pillow's own view of an edge file (from memory, so no file handle is left open)."""
    return Image.open(io.BytesIO(edge(name).read_bytes()))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def refused(source, reason: str, **kw) -> ImageInputError:
    with pytest.raises(ImageInputError) as info:
        load_image(source, **kw)
    err = info.value
    assert err.reason == reason, f"expected {reason!r}, got {err.reason!r}: {err}"
    if reason in OPTION_FOR:
        assert OPTION_FOR[reason] in str(err), str(err)
    else:
        assert "no option accepts it" in str(err), str(err)
    return err


def round16(v) -> np.ndarray:
    """Independent reference: round(v * 255 / 65535), computed in float."""
    return np.floor(np.asarray(v, np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)


def png_header_only(width: int, height: int, rows: int = 1) -> bytes:
    """8-bit gray PNG whose IHDR declares width x height but whose IDAT holds `rows` rows."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * ((width + 1) * rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(autouse=True)
def pillow_globals_untouched():
    """Every test: Pillow's process-wide knobs are the same after load_image calls."""
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    assert before[0] is False
    yield
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == before


# --------------------------------------------------------------------------- basics


def test_plain_rgb_png_output_contract():
    out = load_image(edge("rgb_17x13.png"))
    assert isinstance(out, LoadedImage)
    assert out.pixels.shape == (13, 17, 3) and (out.height, out.width) == (13, 17)
    assert out.pixels.dtype == np.uint8
    assert out.pixels.flags.c_contiguous and out.pixels.flags.writeable
    yy, xx = np.mgrid[0:13, 0:17]
    expected = np.stack([xx * 15, yy * 19, (xx + yy) * 7], axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(out.pixels, expected)
    assert out.source_format == "PNG" and out.source_mode == "RGB"
    assert out.source_bytes == edge("rgb_17x13.png").stat().st_size
    assert out.orientation_applied == 1 and out.conversions == ()


def test_one_by_one():
    out = load_image(edge("rgb_1x1.png"))
    assert out.pixels.shape == (1, 1, 3)
    assert out.pixels[0, 0].tolist() == [12, 34, 56]


# --------------------------------------------------------------------------- inputs


def _expected_17x13():
    return np.asarray(pil_open("rgb_17x13.png").convert("RGB"))


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "bytearray", "memoryview"])
def test_source_kinds(kind):
    path = edge("rgb_17x13.png")
    data = path.read_bytes()
    source = {
        "str": str(path),
        "path": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
    }[kind]
    out = load_image(source)
    np.testing.assert_array_equal(out.pixels, _expected_17x13())
    assert out.source_bytes == len(data)


def test_open_file_object_read_from_start_and_not_closed():
    path = edge("rgb_17x13.png")
    with open(path, "rb") as fh:
        fh.seek(10)  # position is ignored: read from offset 0 like Pillow
        out = load_image(fh)
        assert not fh.closed
    np.testing.assert_array_equal(out.pixels, _expected_17x13())
    assert out.source_bytes == path.stat().st_size


def test_bytesio_left_at_end_is_read_from_start():
    buf = io.BytesIO(edge("rgb_1x1.png").read_bytes())
    buf.seek(0, io.SEEK_END)
    out = load_image(buf)
    assert out.pixels[0, 0].tolist() == [12, 34, 56]
    assert not buf.closed


class _NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes):
        self._inner = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, b):
        chunk = self._inner.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_stream():
    data = edge("rgb_17x13.png").read_bytes()
    stream = _NonSeekable(data)
    with pytest.raises(OSError):
        stream.seek(0)  # really not seekable
    out = load_image(stream)
    np.testing.assert_array_equal(out.pixels, _expected_17x13())
    assert out.source_bytes == len(data)


def test_fsspec_file_object():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    target = "/nicbeam-test-image-input/odd.png"
    data = edge("rgb_17x13.png").read_bytes()
    fs.pipe(target, data)
    try:
        with fs.open(target, "rb") as fh:
            out = load_image(fh)
    finally:
        fs.rm(target)
    np.testing.assert_array_equal(out.pixels, _expected_17x13())
    assert out.source_bytes == len(data)


def test_missing_file_is_an_io_error_not_a_policy_error():
    with pytest.raises(FileNotFoundError):
        load_image(EDGE / "does-not-exist.png")


def test_bad_source_type_and_bad_options():
    with pytest.raises(TypeError):
        load_image(12345)
    data = edge("rgb_1x1.png").read_bytes()
    for kw in (
        {"alpha": "drop"},
        {"high_bit_depth": "truncate"},
        {"frames": "all"},
        {"max_pixels": 0},
        {"background": (0, 0)},
        {"background": (0, 0, 256)},
        {"background": (0, 0, 1.5)},
    ):
        with pytest.raises(ValueError) as info:
            load_image(data, **kw)
        assert not isinstance(info.value, ImageInputError), kw


# --------------------------------------------------------------------------- empty / unreadable / truncated


def test_empty_file():
    refused(edge("empty.jpg"), "empty")
    refused(b"", "empty")
    refused(io.BytesIO(), "empty")


def test_text_named_jpg_is_unreadable():
    refused(edge("not_an_image.jpg"), "unreadable")


def test_corrupt_png_stream_is_unreadable():
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = bytearray(encode(Image.fromarray(noise, "RGB"), "PNG"))
    start = png.index(b"IDAT") + 4
    for k in range(start + 20, start + 60):  # garble the deflate stream, keep the length
        png[k] ^= 0xA5
    # fix the CRC so that only the compressed data is bad
    length = struct.unpack(">I", png[start - 8 : start - 4])[0]
    png[start + length : start + length + 4] = struct.pack(">I", zlib.crc32(bytes(png[start - 4 : start + length])))
    refused(bytes(png), "unreadable")


@pytest.mark.parametrize("name", ["truncated.jpg", "truncated.png"])
def test_truncated_files(name):
    refused(edge(name), "truncated")
    # even with every permissive option
    refused(edge(name), "truncated", alpha="composite", high_bit_depth="reduce", frames="first")


def test_truncated_control_the_full_file_loads():
    # the truncated files are halves of valid images: the same encoder output in full decodes
    noise = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = encode(Image.fromarray(noise, "RGB"), "PNG")
    np.testing.assert_array_equal(load_image(png).pixels, noise)
    refused(png[: len(png) // 2], "truncated")
    refused(png[: len(png) - 40], "truncated")


def test_png_missing_only_iend_is_accepted():
    noise = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    png = encode(Image.fromarray(noise, "RGB"), "PNG")
    assert png.endswith(b"IEND\xaeB`\x82")
    np.testing.assert_array_equal(load_image(png[:-12]).pixels, noise)


def test_png_with_short_zlib_stream_is_truncated():
    # A well-formed file (valid CRCs, IEND) whose zlib stream holds 1 of 30 rows:
    # Pillow decodes it without error and fills the missing rows with zeros.
    data = png_header_only(30, 30, rows=1)
    im = Image.open(io.BytesIO(data))
    im.load()
    assert im.size == (30, 30)  # Pillow accepted it
    err = refused(data, "truncated")
    assert "31 of the 930 bytes" in str(err)
    assert load_image(png_header_only(30, 30, rows=30)).pixels.shape == (30, 30, 3)


def _interlaced_png(arr: np.ndarray, drop_bytes: int = 0) -> bytes:
    """8-bit RGB Adam7 PNG written by hand (Pillow cannot write interlaced PNG)."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    raw = raw[: len(raw) - drop_bytes]

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_interlaced_png_completeness_check():
    arr = np.random.default_rng(6).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = load_image(_interlaced_png(arr))
    np.testing.assert_array_equal(out.pixels, arr)
    # 7x5 RGB: Adam7 data is 116 bytes (a non-interlaced image: 110).  The full file must
    # not be refused by the completeness check (a wrong pass computation would), and a
    # short stream is refused (Pillow's Adam7 path notices this one by itself).
    refused(_interlaced_png(arr, drop_bytes=3), "truncated")


def test_truncated_webp_detected_from_riff_size():
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow without WebP")
    noise = np.random.default_rng(7).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise, "RGB"), "WEBP", lossless=True)
    assert load_image(data).pixels.shape == (16, 16, 3)
    refused(data[: len(data) - 10], "truncated")


def test_load_truncated_images_set_by_someone_else_is_refused(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_image(edge("truncated.jpg"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # we did not reset it either


# --------------------------------------------------------------------------- size limit


def test_bomb_refused_from_header():
    err = refused(edge("bomb.png"), "too_large")
    assert "100000x100000" in str(err)
    assert edge("bomb.png").stat().st_size < 1024
    # permissive options do not lift the limit
    refused(edge("bomb.png"), "too_large", alpha="composite", high_bit_depth="reduce", frames="first")


def test_pixel_limit_checked_before_decoding():
    # 3000x3000 header, one row of data: over the limit it is too_large (no decoding),
    # under the limit decoding starts and finds the data missing.
    data = png_header_only(3000, 3000)
    refused(data, "too_large", max_pixels=3000 * 3000 - 1)
    refused(data, "truncated", max_pixels=3000 * 3000)


def test_max_pixels_boundary():
    data = edge("rgb_17x13.png").read_bytes()
    assert load_image(data, max_pixels=17 * 13).pixels.shape == (13, 17, 3)
    err = refused(data, "too_large", max_pixels=17 * 13 - 1)
    assert f"max_pixels={17 * 13}" in str(err)


def test_default_limit_replaces_pillows_global_check():
    assert DEFAULT_MAX_PIXELS == 2**28
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 9500 * 9500 < DEFAULT_MAX_PIXELS
    data = png_header_only(9500, 9500)  # above Pillow's warning threshold, below ours
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # reaches decoding (and finds the data truncated) instead of a Pillow bomb warning
        refused(data, "truncated")


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize(
    "name, n, first",
    [("animated.gif", 3, (255, 0, 0)), ("animated.png", 2, (255, 0, 0)), ("two_pages.tif", 2, (255, 0, 0))],
)
def test_multi_frame(name, n, first):
    err = refused(edge(name), "multi_frame")
    assert f"{n} frames" in str(err)
    out = load_image(edge(name), frames="first")
    assert out.pixels.shape == (8, 8, 3)
    assert (out.pixels == np.array(first, np.uint8)).all()
    assert f"first-frame-of-{n}" in out.conversions


def test_animated_webp():
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow without WebP")
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    refused(data, "multi_frame")
    out = load_image(data, frames="first")
    assert (out.pixels == np.array((255, 0, 0), np.uint8)).all()


def test_mpo_uses_primary_image():
    out = load_image(edge("stereo.mpo"))
    assert out.source_format == "MPO"
    assert "mpo-primary-image-of-2" in out.conversions
    px = out.pixels.astype(int)
    assert (px[..., 0] > 240).all() and (px[..., 2] < 15).all()  # red primary, not the blue second


# --------------------------------------------------------------------------- bit depth


def test_gray16_refused_then_reduced_with_rounding():
    err = refused(edge("gray16.png"), "high_bit_depth")
    assert "16-bit" in str(err)
    out = load_image(edge("gray16.png"), high_bit_depth="reduce")
    src = np.asarray(pil_open("gray16.png"))
    assert src.dtype == np.uint16 and src[0, 4] == 65535
    assert out.pixels.shape == (2, 8, 3)
    assert (out.pixels[..., 0] == out.pixels[..., 1]).all() and (out.pixels[..., 1] == out.pixels[..., 2]).all()
    np.testing.assert_array_equal(out.pixels[..., 0], round16(src))
    row = out.pixels[0, :, 0].tolist()
    assert row[:6] == [0, 1, 2, 100, 255, 4]  # 257k -> k, 65535 -> 255, 1000 -> 4 (truncation: 3)
    assert out.pixels[1, 2, 0] == 254  # 65280 -> 254 (truncation: 255)
    assert out.conversions == ("I;16->RGB", "16-bit->8-bit")


def test_reduce_all_16_bit_values():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = load_image(data, high_bit_depth="reduce")
    np.testing.assert_array_equal(out.pixels[..., 0], round16(values))
    k = np.arange(256)
    np.testing.assert_array_equal(out.pixels[..., 0].ravel()[257 * k], k)


def test_pillow_truncates_48_bit_png_and_we_detect_it():
    # the surprising Pillow behaviour this policy guards against
    im = pil_open("rgb16.png")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 3, 3)  # high bytes only
    err = refused(edge("rgb16.png"), "high_bit_depth")
    if importlib.util.find_spec("imagecodecs") is not None:
        assert "imagecodecs" not in str(err)


@pytest.mark.parametrize("name", ["rgb16.png", "rgb16.tif"])
def test_48_bit_reduce_is_rounded(name):
    out = load_image(edge(name), high_bit_depth="reduce")
    np.testing.assert_array_equal(out.pixels, round16(RGB16_VALUES))
    assert out.pixels[0, 0].tolist() == [255, 3, 4]
    assert out.conversions == ("16-bit->8-bit",)
    assert out.source_mode == "RGB"


def test_48_bit_reduce_without_imagecodecs_is_unsupported(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import fails
    err = refused(edge("rgb16.png"), "unsupported_mode", high_bit_depth="reduce")
    assert "imagecodecs" in str(err)
    err = refused(edge("rgb16.png"), "high_bit_depth")
    assert "install the optional imagecodecs" in str(err)
    # 16-bit gray does not need imagecodecs
    assert load_image(edge("gray16.png"), high_bit_depth="reduce").pixels.shape == (2, 8, 3)


def test_cmyk16_tiff_is_unsupported_even_with_reduce():
    assert pil_open("cmyk16.tif").mode == "CMYK"  # Pillow truncates it silently
    refused(edge("cmyk16.tif"), "unsupported_mode")
    refused(edge("cmyk16.tif"), "unsupported_mode", high_bit_depth="reduce")


def test_rgba16_composite_and_reduce():
    refused(edge("rgba16.png"), "high_bit_depth", alpha="composite")
    refused(edge("rgba16.png"), "alpha", high_bit_depth="reduce")
    src = np.array(
        [[[65535, 0, 0, 65535], [0, 65535, 0, 0]], [[0, 0, 65535, 32768], [1000, 2000, 3000, 65535]]],
        dtype=np.float64,
    )
    for bg in ((255, 255, 255), (10, 20, 30)):
        out = load_image(edge("rgba16.png"), high_bit_depth="reduce", alpha="composite", background=bg)
        a = src[..., 3:] / 65535.0
        ref = np.floor((src[..., :3] / 65535.0 * a + np.array(bg) / 255.0 * (1 - a)) * 255.0 + 0.5)
        np.testing.assert_array_equal(out.pixels, ref.astype(np.uint8))
        assert out.pixels[0, 1].tolist() == list(bg)  # fully transparent -> background
        assert out.pixels[1, 1].tolist() == [4, 8, 12]
        assert out.conversions == ("RGBA->RGB", f"alpha-composite-over-({bg[0]},{bg[1]},{bg[2]})", "16-bit->8-bit")


def test_ppm_16_bit():
    values = np.array([[[65535, 1000, 257 * 9]]], dtype=np.uint16)
    data = b"P6 1 1 65535\n" + values.astype(">u2").tobytes()
    refused(data, "high_bit_depth")
    out = load_image(data, high_bit_depth="reduce")
    assert out.pixels[0, 0].tolist() == [255, 4, 9]
    assert out.conversions == ("16-bit->8-bit",)


def test_mode_I_and_F_tiff():
    ints = np.array([[0, 257 * 7, 65535, 70000, -5]], dtype=np.int32)
    data = encode(Image.fromarray(ints), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    refused(data, "high_bit_depth")
    out = load_image(data, high_bit_depth="reduce")
    assert out.pixels[0, :, 0].tolist() == [0, 7, 255, 255, 0]  # 0..65535 range, clipped

    floats = np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan, 0.2]], dtype=np.float32)
    data = encode(Image.fromarray(floats), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    err = refused(data, "high_bit_depth")
    assert "float" in str(err)
    out = load_image(data, high_bit_depth="reduce")
    assert out.pixels[0, :, 0].tolist() == [0, 128, 255, 255, 0, 0, 51]  # nominal 0..1
    assert out.conversions == ("F->RGB", "float->8-bit")


# --------------------------------------------------------------------------- alpha


def test_rgba_refused_and_composited():
    err = refused(edge("rgba.png"), "alpha")
    assert "32 of 64" in str(err)
    white = load_image(edge("rgba.png"), alpha="composite")
    assert white.pixels[3, 0].tolist() == [255, 0, 0]  # opaque red kept
    assert white.pixels[3, 6].tolist() == [255, 255, 255]  # transparent blue -> white
    assert white.pixels[0, 7].tolist() == [127, 255, 127]  # green at alpha 128 over white
    assert white.conversions == ("RGBA->RGB", "alpha-composite-over-(255,255,255)")
    black = load_image(edge("rgba.png"), alpha="composite", background=(0, 0, 0))
    assert black.pixels[3, 6].tolist() == [0, 0, 0]
    assert black.pixels[0, 7].tolist() == [0, 128, 0]
    other = load_image(edge("rgba.png"), alpha="composite", background=[0, 100, 200])
    assert other.pixels[5, 5].tolist() == [0, 100, 200]


def test_8_bit_composite_exact_for_every_value():
    # every (colour, alpha) pair in one 256x256 RGBA image, over three backgrounds
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([c, 255 - c, c // 2, a], axis=-1).astype(np.uint8)
    data = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    for bg in ((255, 255, 255), (0, 0, 0), (17, 128, 254)):
        out = load_image(data, alpha="composite", background=bg)
        af = rgba[..., 3:].astype(np.float64)
        ref = np.floor((rgba[..., :3] * af + np.array(bg) * (255 - af)) / 255 + 0.5)
        np.testing.assert_array_equal(out.pixels, ref.astype(np.uint8))


def test_la_refused_and_composited():
    refused(edge("la.png"), "alpha")
    out = load_image(edge("la.png"), alpha="composite")
    assert out.pixels[0, 0].tolist() == [255, 255, 255]
    assert out.pixels[0, 1].tolist() == [177, 177, 177]  # round((100*128 + 255*127) / 255)
    assert out.pixels[2, 2].tolist() == [100, 100, 100]
    assert out.conversions[0] == "LA->RGB"


def test_palette_with_trns_counts_as_alpha():
    im = pil_open("p_trns.png")
    assert im.mode == "P" and im.info.get("transparency") is not None
    err = refused(edge("p_trns.png"), "alpha")
    assert "1 of 16" in str(err)
    out = load_image(edge("p_trns.png"), alpha="composite", background=(1, 2, 3))
    assert out.pixels[3, 3].tolist() == [1, 2, 3]  # transparent index -> background
    assert out.pixels[3, 0].tolist() == [0, 0, 255]
    assert out.pixels[0, 0].tolist() == [255, 0, 0]


def test_fully_opaque_alpha_is_dropped_not_refused():
    rgb = np.random.default_rng(5).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((5, 6, 1), 255, np.uint8)], axis=-1)
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out.pixels, rgb)
    assert out.conversions == ("RGBA->RGB", "alpha-opaque-dropped")
    # palette image whose transparent index is never used
    p = Image.new("P", (2, 2), 0)
    p.putpalette([9, 8, 7, 1, 1, 1] + [0] * 762)
    out = load_image(encode(p, "PNG", transparency=1))
    assert (out.pixels == np.array([9, 8, 7], np.uint8)).all()
    assert "alpha-opaque-dropped" in out.conversions


def test_rgb_colour_key_transparency_counts_as_alpha():
    im = Image.new("RGB", (2, 1), (10, 20, 30))
    im.putpixel((1, 0), (40, 50, 60))
    data = encode(im, "PNG", transparency=(10, 20, 30))
    refused(data, "alpha")
    out = load_image(data, alpha="composite", background=(0, 0, 0))
    assert out.pixels[0].tolist() == [[0, 0, 0], [40, 50, 60]]


# --------------------------------------------------------------------------- colour modes


def test_cmyk_jpeg():
    assert pil_open("cmyk.jpg").mode == "CMYK"
    out = load_image(edge("cmyk.jpg"))
    px = out.pixels.astype(int)
    assert (px[..., 0] > 245).all() and (px[..., 1] < 10).all() and (px[..., 2] < 10).all()
    assert out.source_mode == "CMYK" and out.conversions == ("CMYK->RGB",)


def test_gray_jpeg():
    out = load_image(edge("gray.jpg"))
    assert out.source_mode == "L" and out.conversions == ("L->RGB",)
    np.testing.assert_array_equal(out.pixels[..., 0], out.pixels[..., 2])
    np.testing.assert_array_equal(out.pixels[..., 0], np.asarray(pil_open("gray.jpg")))
    assert out.pixels[0, 0, 0] < 10 and out.pixels[0, 15, 0] > 230


def test_lab_tiff():
    out = load_image(edge("lab.tif"))
    assert out.source_mode == "LAB" and out.conversions == ("LAB->RGB",)
    assert (out.pixels.astype(int) >= 250).all()  # L=255, a=b=0 is white


@pytest.mark.parametrize("mode", ["1", "L", "P"])
def test_other_8_bit_modes(mode):
    base = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), "L")
    im = base.convert(mode)
    out = load_image(encode(im, "PNG"))
    assert out.source_mode == mode and out.conversions == (f"{mode}->RGB",)
    np.testing.assert_array_equal(out.pixels, np.asarray(im.convert("RGB")))
    assert out.pixels[0, 1].tolist() == [255, 255, 255] and out.pixels[0, 0].tolist() == [0, 0, 0]


def test_icc_profile_is_not_applied_but_recorded():
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.new("RGB", (4, 4), (200, 100, 50))
    data = encode(im, "PNG", icc_profile=profile)
    out = load_image(data)
    assert out.conversions == ("icc-profile-not-applied",)
    assert (out.pixels == np.array([200, 100, 50], np.uint8)).all()


# --------------------------------------------------------------------------- orientation


def test_exif_orientation_6_moves_marker():
    stored = np.asarray(pil_open("exif_orientation_6.jpg").convert("RGB")).astype(int)
    assert stored.shape == (16, 32, 3) and stored[3, 3, 0] > 200  # marker stored top-left
    out = load_image(edge("exif_orientation_6.jpg"))
    assert out.orientation_applied == 6
    assert out.conversions == ("exif-orientation-6",)
    assert (out.height, out.width) == (32, 16)
    px = out.pixels.astype(int)
    assert px[3, 12, 0] > 200 and px[3, 12, 2] < 60  # marker now top-right
    assert px[3, 3, 0] < 60 and px[3, 3, 2] > 200  # top-left is background blue
    assert px[28, 3, 0] < 60


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation):
    arr = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(arr, "RGB"), "PNG", exif=exif.tobytes())
    out = load_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(out.pixels, expected)
    assert out.pixels.flags.c_contiguous
    assert out.orientation_applied == orientation
    if orientation in (5, 6, 7, 8):
        assert out.pixels.shape == (5, 3, 3)
    else:
        assert out.pixels.shape == (3, 5, 3)


@pytest.mark.parametrize("orientation", [3, 6])
@pytest.mark.parametrize("compression", [None, "tiff_deflate"])
def test_tiff_orientation_applied_once_and_reported(orientation, compression):
    # Pillow's TIFF loader rotates by itself; we must not rotate a second time.
    arr = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    exif = Image.Exif()
    exif[0x0112] = orientation
    kw = {"compression": compression} if compression else {}
    data = encode(Image.fromarray(arr, "RGB"), "TIFF", exif=exif, **kw)
    out = load_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(out.pixels, expected)
    np.testing.assert_array_equal(out.pixels, {3: arr[::-1, ::-1], 6: np.rot90(arr, -1)}[orientation])
    assert out.orientation_applied == orientation
    assert out.conversions == (f"exif-orientation-{orientation}",)


def test_tiff_16_bit_orientation_with_imagecodecs_route():
    # 16-bit RGB TIFF + Orientation 6: Pillow rotates its (truncated) decode, the exact
    # 16-bit samples come from imagecodecs unrotated; the result must be rotated once.
    pytest.importorskip("imagecodecs")
    rotated = _tiff_with_orientation(edge("rgb16.tif").read_bytes(), 6)
    assert Image.open(io.BytesIO(rotated)).size == (2, 2)  # square: the shape cannot tell
    out = load_image(rotated, high_bit_depth="reduce")
    np.testing.assert_array_equal(out.pixels, np.rot90(round16(RGB16_VALUES), -1))
    assert out.orientation_applied == 6
    assert out.conversions == ("16-bit->8-bit", "exif-orientation-6")


def _tiff_with_orientation(tiff: bytes, orientation: int) -> bytes:
    """Insert an Orientation (274) SHORT entry into a little-endian single-IFD TIFF."""
    ifd = struct.unpack("<I", tiff[4:8])[0]
    n = struct.unpack("<H", tiff[ifd : ifd + 2])[0]
    entries = [tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i] for i in range(n)]
    entries.append(struct.pack("<HHIHH", 274, 3, 1, orientation, 0))
    entries.sort(key=lambda e: struct.unpack("<H", e[:2])[0])
    shift = 12  # everything after the IFD moves by one entry
    fixed = []
    for e in entries:
        tag, typ, count, value = struct.unpack("<HHII", e)
        if tag in (273,) or (tag == 258 and count > 2):  # offsets that point past the IFD
            e = struct.pack("<HHII", tag, typ, count, value + shift)
        fixed.append(e)
    new_ifd = struct.pack("<H", n + 1) + b"".join(fixed) + struct.pack("<I", 0)
    rest = tiff[ifd + 2 + 12 * n + 4 :]
    return tiff[:ifd] + new_ifd + rest


def test_invalid_orientation_ignored():
    exif = Image.Exif()
    exif[0x0112] = 9
    data = encode(Image.new("RGB", (3, 2), (1, 2, 3)), "PNG", exif=exif.tobytes())
    out = load_image(data)
    assert out.orientation_applied == 1 and out.pixels.shape == (2, 3, 3)


# --------------------------------------------------------------------------- the error type


def test_error_type_and_reasons():
    assert REASONS == {
        "empty",
        "unreadable",
        "truncated",
        "too_large",
        "unsupported_mode",
        "alpha",
        "high_bit_depth",
        "multi_frame",
    }
    err = refused(edge("rgba.png"), "alpha")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ImageInputError and copy.reason == "alpha" and str(copy) == str(err)
    with pytest.raises(ValueError):
        ImageInputError("bogus", "nope")


def test_loaded_image_is_frozen():
    out = load_image(edge("rgb_1x1.png"))
    with pytest.raises(AttributeError):
        out.source_format = "JPEG"  # type: ignore[misc]
