"""JPEG 2000 through imagecodecs, which links OpenJPEG, the reference open-source JPEG 2000 codec.

imagecodecs drives OpenJPEG in its "fixed quality" mode: the rate is set by a target PSNR in dB for the
single quality layer (its fixed-rate mode is not exposed), so ``psnr`` is the rate knob here; a higher
target gives more bits, and targets above what the irreversible 9/7 wavelet can reach (about 50 dB for
8-bit images) saturate. ``lossless`` uses the reversible 5/3 wavelet and colour transform with no rate
limit, and ignores ``psnr``. Payloads are raw J2K codestreams (no JP2 boxes); one tile, one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs._imaging import as_bytes, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec


class Jpeg2000Codec(Codec):
    name = "jpeg2000"
    description = "JPEG 2000 (J2K codestream) via OpenJPEG"
    param_specs = (
        ParamSpec("psnr", float, 40.0, 10.0, 100.0, doc="target PSNR in dB of the quality layer (rate control)"),
        ParamSpec("lossless", bool, False, doc="reversible 5/3 wavelet, exact reconstruction; psnr ignored"),
    )

    @property
    def lossless(self) -> bool:
        return bool(self.params["lossless"])

    def implementation(self) -> str:
        return imagecodecs_implementation("jpeg2k_version")

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        lossless = bool(self.params["lossless"])
        return as_bytes(
            imagecodecs.jpeg2k_encode(
                image,
                None if lossless else float(self.params["psnr"]),
                codecformat="j2k",
                reversible=lossless,
                numthreads=1,
            )
        )

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        return np.asarray(imagecodecs.jpeg2k_decode(payload, numthreads=1))
