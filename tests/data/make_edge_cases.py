"""Generate the small edge-case image files in ``tests/data/edge/``.

Run from anywhere:  ``python tests/data/make_edge_cases.py``

Deterministic: fixed pixel patterns and a seeded RNG.  Files Pillow cannot
write (16-bit colour PNG and TIFF, the bomb header) are written by the tiny
pure-``struct``/``zlib`` writers below, so only Pillow and numpy are needed.
Pixel values that the tests check are documented in ``edge/README.md``.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "edge"

# 16-bit sample values chosen so that rounding and truncation differ:
# 1000 -> round 4, truncation 3;  65280 -> round 254, truncation 255.
GRAY16 = np.array(
    [
        [0, 257, 514, 25700, 65535, 1000, 128, 129],
        [32767, 32768, 65280, 65534, 255, 256, 40000, 12345],
    ],
    dtype=np.uint16,
)
RGB16 = np.array(
    [
        [[65535, 771, 1000], [0, 257, 65280]],
        [[32768, 12345, 128], [257 * 200, 65534, 129]],
    ],
    dtype=np.uint16,
)
RGBA16 = np.array(
    [
        [[65535, 0, 0, 65535], [0, 65535, 0, 0]],
        [[0, 0, 65535, 32768], [1000, 2000, 3000, 65535]],
    ],
    dtype=np.uint16,
)


# ----------------------------------------------------------------------------
# minimal writers


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(arr: np.ndarray, *, color_type: int, bit_depth: int = 16, width=None, height=None,
              idat: bytes | None = None) -> bytes:
    """PNG writer for 8/16-bit gray/RGB/GA/RGBA, filter type 0 on every row."""
    if idat is None:
        rows = arr.astype(">u2" if bit_depth == 16 else "u1")
        raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(rows.shape[0]))
        idat = zlib.compress(raw, 9)
        height, width = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def tiff16_bytes(arr: np.ndarray, *, photometric: int, extra_alpha: bool = False) -> bytes:
    """Little-endian, uncompressed, single-strip, chunky 16-bit TIFF."""
    height, width, spp = arr.shape
    entries = []  # (tag, type, count, value-or-offset placeholder)
    n_tags = 10 + (1 if extra_alpha else 0)
    ifd_size = 2 + n_tags * 12 + 4
    bps_offset = 8 + ifd_size
    data_offset = bps_offset + 2 * spp
    pixels = arr.astype("<u2").tobytes()
    SHORT, LONG = 3, 4
    entries += [
        (256, LONG, 1, width),
        (257, LONG, 1, height),
        (258, SHORT, spp, bps_offset),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, photometric),
        (273, LONG, 1, data_offset),
        (277, SHORT, 1, spp),
        (278, LONG, 1, height),
        (279, LONG, 1, len(pixels)),
        (284, SHORT, 1, 1),
    ]
    if extra_alpha:
        entries.append((338, SHORT, 1, 2))  # unassociated alpha
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == SHORT and count == 1:
            out += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, value)
    out += struct.pack("<I", 0)
    assert len(out) == bps_offset
    out += struct.pack("<" + "H" * spp, *([16] * spp))
    out += pixels
    return bytes(out)


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


# ----------------------------------------------------------------------------
# the cases


def build() -> dict[str, bytes]:
    rng = np.random.default_rng(20240501)
    files: dict[str, bytes] = {}

    # high bit depth
    files["gray16.png"] = png_bytes(GRAY16, color_type=0)
    files["rgb16.png"] = png_bytes(RGB16, color_type=2)
    files["rgba16.png"] = png_bytes(RGBA16, color_type=6)
    files["rgb16.tif"] = tiff16_bytes(RGB16, photometric=2)
    cmyk16 = np.zeros((2, 2, 4), np.uint16)
    cmyk16[..., 1:3] = 65535  # red in CMYK
    files["cmyk16.tif"] = tiff16_bytes(cmyk16, photometric=5)

    # alpha
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)  # left half opaque red
    rgba[:, 4:] = (0, 0, 255, 0)  # right half fully transparent blue
    rgba[0, 7] = (0, 255, 0, 128)  # one half-transparent green pixel
    files["rgba.png"] = pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG")
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 100
    la[..., 1] = 255
    la[0, 0, 1] = 0
    la[0, 1, 1] = 128
    files["la.png"] = pil_bytes(Image.fromarray(la, "LA"), "PNG")
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    p.putpixel((3, 3), 1)  # index 1 (green) is the transparent one
    p.putpixel((0, 3), 2)
    files["p_trns.png"] = pil_bytes(p, "PNG", transparency=1)

    # colour modes
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    files["cmyk.jpg"] = pil_bytes(cmyk, "JPEG", quality=95)
    gray = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1)), "L")
    files["gray.jpg"] = pil_bytes(gray, "JPEG", quality=95)
    files["lab.tif"] = pil_bytes(Image.new("LAB", (4, 4), (255, 128, 128)), "TIFF")  # white

    # orientation: stored 32 wide x 16 high, blue, red 8x8 marker at stored top-left;
    # orientation 6 = rotate 90 degrees clockwise for display -> marker at displayed top-right
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[...] = (0, 0, 255)
    stored[:8, :8] = (255, 0, 0)
    files["exif_orientation_6.jpg"] = pil_bytes(
        Image.fromarray(stored, "RGB"), "JPEG", quality=95, subsampling=0,
        exif=exif_with_orientation(6),
    )

    # frames
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    gif_frames = [Image.new("RGB", (8, 8), c).convert("P") for c in colours]
    files["animated.gif"] = pil_bytes(
        gif_frames[0], "GIF", save_all=True, append_images=gif_frames[1:], duration=100, loop=0
    )
    apng_frames = [Image.new("RGB", (8, 8), c) for c in colours[:2]]
    files["animated.png"] = pil_bytes(
        apng_frames[0], "PNG", save_all=True, append_images=apng_frames[1:], duration=100
    )
    files["two_pages.tif"] = pil_bytes(
        Image.new("RGB", (8, 8), colours[0]), "TIFF", save_all=True,
        append_images=[Image.new("RGB", (8, 8), colours[1])],
    )
    files["stereo.mpo"] = pil_bytes(
        Image.new("RGB", (16, 16), colours[0]), "MPO", save_all=True,
        append_images=[Image.new("RGB", (16, 16), colours[2])], quality=95,
    )

    # broken inputs
    noise = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")
    jpeg = pil_bytes(noise, "JPEG", quality=90)
    files["truncated.jpg"] = jpeg[: len(jpeg) // 2]
    png = pil_bytes(noise, "PNG")
    files["truncated.png"] = png[: len(png) // 2]
    files["empty.jpg"] = b""
    files["not_an_image.jpg"] = b"This is a text file, not a JPEG.\n"

    # sizes
    files["rgb_1x1.png"] = pil_bytes(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG")
    yy, xx = np.mgrid[0:13, 0:17]
    odd = np.stack([xx * 15, yy * 19, (xx + yy) * 7], axis=-1).astype(np.uint8)
    files["rgb_17x13.png"] = pil_bytes(Image.fromarray(odd, "RGB"), "PNG")

    # decompression bomb: header says 100000 x 100000 (10^10 pixels, 10 GB as 8-bit gray),
    # the IDAT holds a single zero row, the file is ~150 bytes
    files["bomb.png"] = png_bytes(
        None, color_type=0, bit_depth=8, width=100_000, height=100_000,
        idat=zlib.compress(b"\x00" * 100_001, 9),
    )
    return files


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(build().items()):
        (OUT / name).write_bytes(data)
        print(f"{name:28s} {len(data):7d} bytes")


if __name__ == "__main__":
    main()
