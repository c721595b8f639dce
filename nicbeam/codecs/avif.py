"""AVIF (AV1 intra) through imagecodecs, which links libavif with the libaom AV1 encoder.

imagecodecs exposes libavif's quality, speed and YUV format directly. The AV1 encoder is pinned to libaom
(libavif's reference choice) and to one thread, so the same image and settings give the same bytes on every
worker regardless of which other AV1 encoders (rav1e, SVT-AV1) a build happens to include.
``quality=100`` is libavif's lossless mode (4:4:4, identity matrix); ``subsampling`` is then ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs._imaging import SUBSAMPLING_DOC, as_bytes, check_size_limits, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec

_PIXEL_FORMAT = {"420": "yuv420", "422": "yuv422", "444": "yuv444"}
_LOSSLESS_QUALITY = 100

#: libavif's default decoder limits: larger images encode fine but can then not be decoded.
_MAX_SIDE = 32768
_MAX_PIXELS = 16384 * 16384


class AvifCodec(Codec):
    name = "avif"
    description = "AVIF (AV1 still image) via libavif + libaom"
    param_specs = (
        ParamSpec("quality", int, 60, 0, 100, doc="libavif quality, 0 worst .. 100 lossless"),
        ParamSpec("speed", int, 6, 0, 10, doc="encoder speed, 0 slowest/best .. 10 fastest (libavif's default 6)"),
        ParamSpec("subsampling", str, "420", choices=("420", "422", "444"), doc=SUBSAMPLING_DOC),
    )

    @property
    def lossless(self) -> bool:
        return self.params["quality"] == _LOSSLESS_QUALITY

    def implementation(self) -> str:
        return imagecodecs_implementation("avif_version", "libaom encoder")

    def _check_input(self, image: Any) -> Any:
        checked = super()._check_input(image)
        return check_size_limits(checked, self.name, "libavif's decoder", _MAX_SIDE, _MAX_PIXELS)

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        return as_bytes(
            imagecodecs.avif_encode(
                image,
                self.params["quality"],
                speed=self.params["speed"],
                pixelformat=_PIXEL_FORMAT[self.params["subsampling"]],
                codec="aom",
                numthreads=1,
            )
        )

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        return np.asarray(imagecodecs.avif_decode(payload, numthreads=1))
