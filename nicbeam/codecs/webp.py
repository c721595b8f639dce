"""WebP through imagecodecs, which links Google's libwebp: the reference (and only mature) WebP encoder.

imagecodecs is used rather than Pillow so the encoder settings are explicit (libwebp ``method`` and
``lossless`` are passed straight through) and the library version is reported exactly. Note that
imagecodecs' own default is *lossless* WebP; this wrapper always states ``lossless`` explicitly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs._imaging import as_bytes, check_size_limits, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec

#: WebP allows 16383 pixels per side; imagecodecs refuses 16383 itself, so 16382 is the usable limit.
_MAX_SIDE = 16382


class WebpCodec(Codec):
    name = "webp"
    description = "WebP (VP8 lossy or VP8L lossless) via libwebp"
    param_specs = (
        ParamSpec(
            "quality", int, 75, 0, 100, doc="lossy: quality factor; lossless: effort (higher is smaller, slower)"
        ),
        ParamSpec("method", int, 6, 0, 6, doc="encoder effort, 0 fastest .. 6 best (libwebp's maximum)"),
        ParamSpec("lossless", bool, False, doc="VP8L lossless mode (quality then trades speed for size)"),
    )

    @property
    def lossless(self) -> bool:
        return bool(self.params["lossless"])

    def implementation(self) -> str:
        return imagecodecs_implementation("webp_version")

    def _check_input(self, image: Any) -> Any:
        return check_size_limits(super()._check_input(image), self.name, "libwebp (imagecodecs)", _MAX_SIDE)

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        return as_bytes(
            imagecodecs.webp_encode(
                image,
                float(self.params["quality"]),
                lossless=bool(self.params["lossless"]),
                method=self.params["method"],
            )
        )

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        return np.asarray(imagecodecs.webp_decode(payload, hasalpha=False))
