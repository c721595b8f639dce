"""JPEG XL through imagecodecs, which links libjxl, the reference JPEG XL encoder.

The rate knob is libjxl's own: the Butteraugli ``distance`` (1.0 is "visually lossless", larger is
smaller and worse; libjxl recommends 0.5..3). ``distance=0`` without ``lossless`` is near- but not exactly
lossless; ``lossless=True`` selects modular lossless coding and ignores ``distance``. imagecodecs defaults
to lossless and to effort 5; this wrapper states both explicitly and uses libjxl's own default effort, 7.
One thread, so output does not depend on the worker's core count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs._imaging import as_bytes, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec


class JpegXlCodec(Codec):
    name = "jpegxl"
    description = "JPEG XL (VarDCT or modular lossless) via libjxl"
    param_specs = (
        ParamSpec(
            "distance", float, 1.0, 0.0, 25.0, doc="Butteraugli distance: 1.0 visually lossless, higher is smaller"
        ),
        ParamSpec("effort", int, 7, 1, 9, doc="encoder effort, 1 fastest .. 9 slowest (libjxl's default 7)"),
        ParamSpec("lossless", bool, False, doc="mathematically lossless modular mode; distance ignored"),
    )

    @property
    def lossless(self) -> bool:
        return bool(self.params["lossless"])

    def implementation(self) -> str:
        return imagecodecs_implementation("jpegxl_version")

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        lossless = bool(self.params["lossless"])
        options: dict[str, Any] = {"lossless": lossless, "effort": self.params["effort"], "numthreads": 1}
        if not lossless:
            options["distance"] = float(self.params["distance"])
        return as_bytes(imagecodecs.jpegxl_encode(image, **options))

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(payload, numthreads=1))
