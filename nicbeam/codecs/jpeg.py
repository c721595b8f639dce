"""JPEG through Pillow, which links libjpeg-turbo: the reference JPEG every comparison starts from.

Pillow is used (rather than imagecodecs' own libjpeg-turbo) because it is what most Python users and
services encode JPEGs with, so ``jpeg`` results match what ``Image.save(format="JPEG")`` produces: the
decoded pixels equal Pillow's for the same quality and subsampling. ``optimize`` only changes the Huffman
tables (smaller file, identical pixels), as most shipping encoders do by default.
"""

from __future__ import annotations

from typing import Any

from nicbeam.codecs._imaging import (
    SUBSAMPLING_DOC,
    check_size_limits,
    pillow_decode_rgb,
    pillow_encode,
    pillow_version,
)
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec

#: Pillow's integer subsampling codes.
_SUBSAMPLING = {"444": 0, "422": 1, "420": 2}

#: Largest side Pillow's JPEG encoder accepts (libjpeg's own limit is 65535).
_MAX_SIDE = 65500


class JpegCodec(Codec):
    name = "jpeg"
    description = "JPEG (baseline, Huffman) via libjpeg-turbo in Pillow"
    param_specs = (
        ParamSpec("quality", int, 75, 1, 100, doc="IJG quality factor; scales the quantisation tables"),
        ParamSpec("subsampling", str, "420", choices=("420", "422", "444"), doc=SUBSAMPLING_DOC),
        ParamSpec("optimize", bool, True, doc="optimised Huffman tables (smaller file, same pixels)"),
    )

    def implementation(self) -> str:
        from PIL import features

        if features.check_feature("libjpeg_turbo"):
            library = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
        else:
            library = f"libjpeg {features.version('jpg')}"
        return f"{library} ({pillow_version()})"

    def _check_input(self, image: Any) -> Any:
        return check_size_limits(super()._check_input(image), self.name, "libjpeg (Pillow)", _MAX_SIDE)

    def _encode_payload(self, image: Any) -> bytes:
        return pillow_encode(
            image,
            "JPEG",
            quality=self.params["quality"],
            subsampling=_SUBSAMPLING[self.params["subsampling"]],
            optimize=self.params["optimize"],
        )

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        return pillow_decode_rgb(payload, "JPEG", expected_size=(header.width, header.height))
