"""PNG through imagecodecs, which links libpng (with zlib): the lossless baseline.

imagecodecs is used for the same reasons as for the other formats: the zlib level goes straight to
libpng and the exact library version is reported; decoding does not go through Pillow's pixel limits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs._imaging import as_bytes, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec


class PngCodec(Codec):
    name = "png"
    description = "PNG (lossless, deflate) via libpng"
    always_lossless = True
    param_specs = (ParamSpec("level", int, 6, 0, 9, doc="zlib compression level, 0 none .. 9 smallest"),)

    def implementation(self) -> str:
        return imagecodecs_implementation("png_version")

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        return as_bytes(imagecodecs.png_encode(image, self.params["level"]))

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        return np.asarray(imagecodecs.png_decode(payload))
