"""JPEG-LS (ISO 14495-1, LOCO-I) through imagecodecs, which links CharLS: lossless and near-lossless.

imagecodecs' ``jpegls_encode`` exposes only NEAR and codes RGB as is: the first Kodak measurement through it
(13.07 bpp, close to PNG's 13.40) had no colour decorrelation at all. JPEG-LS itself has none; CharLS offers
HP Labs' reversible transforms as an extension that imagecodecs does not pass through, so they are applied
here (modulo 256, exactly invertible) before coding: measured on the 24 Kodak images, lossless bpp
RGB sample-interleaved 13.07, HP1 (R-G, G, B-G) 9.81, HP1 planes 9.49, HP2 (R-G, G, B-(R+G)/2) planes 9.39.
``interleave="none"`` codes the three components as three single-component JPEG-LS images (JPEG-LS
"non-interleaved" mode, each component with its own context statistics), which measured smaller here.
Near-lossless (``near`` > 0) bounds the error of every coded component; a colour transform would let the
errors of two components add up in one RGB channel, so ``color_transform="auto"`` is HP2 when lossless and
none when near-lossless, and an explicit transform with ``near`` > 0 is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs._imaging import as_bytes, check_size_limits, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header, pack_chunks, unpack_chunks
from nicbeam.codecs.errors import InvalidParameterError, PayloadError
from nicbeam.codecs.params import ParamSpec

#: JPEG-LS frame limit: 16-bit sample counts per line and lines
_MAX_SIDE = 65535


def forward_transform(rgb: np.ndarray, kind: str) -> np.ndarray:
    """RGB uint8 -> the reversible HP colour transform ``kind`` (modulo 256), uint8."""
    if kind == "none":
        return rgb
    r, g, b = (rgb[..., c].astype(np.int32) for c in range(3))
    if kind == "hp1":
        out = (r - g, g, b - g)
    elif kind == "hp2":
        out = (r - g, g, b - ((r + g) >> 1))
    elif kind == "hp3":
        rp, bp = (r - g + 128) & 255, (b - g + 128) & 255
        out = (rp, g + ((rp + bp) >> 2) - 64, bp)
    else:
        raise InvalidParameterError(f"unknown colour transform {kind!r}")
    return np.stack([c & 255 for c in out], axis=-1).astype(np.uint8)


def inverse_transform(coded: np.ndarray, kind: str) -> np.ndarray:
    """Inverse of :func:`forward_transform`."""
    if kind == "none":
        return coded
    c0, c1, c2 = (coded[..., c].astype(np.int32) for c in range(3))
    if kind == "hp1":
        g = c1
        r, b = c0 + g, c2 + g
    elif kind == "hp2":
        g = c1
        r = (c0 + g) & 255
        b = c2 + ((r + g) >> 1)
    elif kind == "hp3":
        g = (c1 - ((c0 + c2) >> 2) + 64) & 255
        r, b = c0 + g - 128, c2 + g - 128
    else:
        raise InvalidParameterError(f"unknown colour transform {kind!r}")
    return np.stack([c & 255 for c in (r, g, b)], axis=-1).astype(np.uint8)


def check_frame(data: bytes, height: int, width: int, components: int) -> None:
    """Refuse a JPEG-LS stream that is cut short (no EOI marker) or whose frame header (SOF55) disagrees
    with the expected geometry, before CharLS sees it: CharLS took ~35 s to give up on a truncated 24x40
    stream here (a hang for a pipeline)."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        raise PayloadError("JPEG-LS stream lacks its SOI/EOI markers (truncated or damaged)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise PayloadError(f"JPEG-LS stream: no marker at byte {pos}")
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xF7:  # SOF55: Lf, P, Y, X, Nf
            if pos + 10 > len(data):
                break
            bits, y, x, nf = data[pos + 4], int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big"), data[pos + 9]
            if (bits, y, x, nf) != (8, height, width, components):
                raise PayloadError(f"JPEG-LS frame is {x}x{y}x{nf} at {bits} bits, expected {width}x{height}x{components} at 8")
            return
        if length < 2:
            raise PayloadError("JPEG-LS stream: malformed segment length")
        pos += 2 + length
    raise PayloadError("JPEG-LS stream has no frame header (SOF55)")


class JpegLsCodec(Codec):
    name = "jpegls"
    description = "JPEG-LS (LOCO-I) lossless / near-lossless via CharLS, with HP colour transforms"
    lossless_when = {"near": 0}
    param_specs = (
        ParamSpec("near", int, 0, 0, 255, doc="NEAR: max absolute error per component, 0 = lossless"),
        ParamSpec("color_transform", str, "auto", choices=("auto", "none", "hp1", "hp2", "hp3"),
                  doc="reversible colour transform before coding (auto: hp2 lossless, none near-lossless)"),
        ParamSpec("interleave", str, "none", choices=("none", "sample"),
                  doc="none: three single-component images; sample: one sample-interleaved image (imagecodecs' mode)"),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["near"] and self.params["color_transform"] not in ("auto", "none"):
            raise InvalidParameterError(
                "jpegls: a colour transform adds the errors of two components; near-lossless needs color_transform=none")

    @property
    def lossless(self) -> bool:
        return self.params["near"] == 0

    @property
    def transform(self) -> str:
        kind = self.params["color_transform"]
        if kind == "auto":
            return "hp2" if self.params["near"] == 0 else "none"
        return kind

    def implementation(self) -> str:
        return imagecodecs_implementation("jpegls_version")

    def _check_input(self, image: Any) -> Any:
        return check_size_limits(super()._check_input(image), self.name, "JPEG-LS frames (CharLS)", _MAX_SIDE)

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        coded = forward_transform(image, self.transform)
        near = self.params["near"] or None

        def encode(array: np.ndarray) -> bytes:
            # imagecodecs' output-size guess is too small for incompressible data (noise, 8x9000: "destination
            # buffer is too small"): give CharLS room for the worst case of JPEG-LS, ~2x the raw size
            return as_bytes(imagecodecs.jpegls_encode(array, near, out=2 * array.size + 4096))

        if self.params["interleave"] == "sample":
            return encode(coded)
        planes = [encode(np.ascontiguousarray(coded[..., c])) for c in range(3)]
        return pack_chunks(planes)

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        shape = (header.height, header.width)
        if self.params["interleave"] == "sample":
            check_frame(payload, *shape, 3)
            coded = np.asarray(imagecodecs.jpegls_decode(payload))
            if coded.shape != (*shape, 3) or coded.dtype != np.uint8:
                raise PayloadError(f"jpegls payload decoded to {coded.shape} {coded.dtype}, header declares {shape}")
        else:
            chunks = unpack_chunks(payload, 0, 3, "component")
            for chunk in chunks:
                check_frame(chunk, *shape, 1)
            planes = [np.asarray(imagecodecs.jpegls_decode(chunk)) for chunk in chunks]
            for p in planes:
                if p.shape != shape or p.dtype != np.uint8:
                    raise PayloadError(f"jpegls component decoded to {p.shape} {p.dtype}, header declares {shape}")
            coded = np.stack(planes, axis=-1)
        return inverse_transform(coded, self.transform)
