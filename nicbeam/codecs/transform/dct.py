"""``dct``: JPEG's transform and quantisation with a context-adaptive arithmetic coder instead of Huffman tables.

8x8 block DCT of full-range YCbCr (4:4:4, or 4:2:0 with 2x2 box-filtered chroma and triangle-filter
upsampling), JPEG's perceptual quantisation matrices scaled by an IJG ``quality``, dead-zone rounding, and
the coefficients coded by :mod:`.dct_coding`. The image is processed in stripes of whole block rows (about
two megapixels each) so memory stays bounded on large images; models and neighbour contexts carry across
stripes. The payload is one range-coded word stream; its geometry comes from the container header.

Images taller than wide are coded transposed (with the transposed matrices, so the quantised coefficients
are the same): the coders' groups are rows, and few long rows code faster than many short ones.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec
from nicbeam.codecs.transform import blocks, colour
from nicbeam.codecs.transform.dct_coding import DctModels, decode_component, encode_component
from nicbeam.codecs.transform.dct_quant import dequantize, quant_tables, quantize
from nicbeam.entropy.adaptive import AdaptiveDecoder, AdaptiveEncoder

#: Pixels per stripe (rounded to whole macroblock rows): bounds the float working set to ~100 MB.
STRIPE_PIXELS = 1 << 21


def _stripes(height: int, width: int, unit: int) -> Iterator[tuple[int, int]]:
    """(first row, padded row count) of each stripe; the padded width is ``width`` rounded up to ``unit``."""
    padded_width = -(-width // unit) * unit
    rows = max(unit, STRIPE_PIXELS // padded_width // unit * unit)
    for y0 in range(0, height, rows):
        yield y0, min(rows, -(-(height - y0) // unit) * unit)


class DctCodec(Codec):
    name = "dct"
    description = "8x8 block DCT (JPEG matrices) with context-adaptive range coding (nicbeam)"
    param_specs = (
        ParamSpec("quality", int, 75, 1, 100, doc="IJG quality factor; scales JPEG's quantisation matrices"),
        ParamSpec("subsampling", str, "420", choices=("420", "444"), doc="chroma subsampling (4:2:0 or 4:4:4)"),
    )

    def implementation(self) -> str:
        import constriction  # noqa: F401
        from importlib.metadata import version

        return f"nicbeam dct (constriction {version('constriction')})"

    @property
    def _unit(self) -> int:
        return 16 if self.params["subsampling"] == "420" else 8

    def _encode_payload(self, image: Any) -> bytes:
        transposed = image.shape[0] > image.shape[1]
        if transposed:
            image = image.transpose(1, 0, 2)
        height, width, _ = image.shape
        unit = self._unit
        steps = quant_tables(int(self.params["quality"]), transposed)
        enc = AdaptiveEncoder()
        models = DctModels()
        for y0, rows in _stripes(height, width, unit):
            stripe = image[y0:y0 + rows]
            pad = ((0, rows - stripe.shape[0]), (0, -(-width // unit) * unit - width), (0, 0))
            planes = colour.rgb_to_ycbcr(np.pad(stripe, pad, mode="edge"))
            for component in range(3):
                plane = planes[component]
                if component and unit == 16:
                    plane = colour.downsample2(plane)
                q = quantize(blocks.forward(plane), steps[min(component, 1)])
                encode_component(enc, models, q, component, steps[min(component, 1)])
        return enc.finish()

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        transposed = header.height > header.width
        height, width = (header.width, header.height) if transposed else (header.height, header.width)
        unit = self._unit
        steps = quant_tables(int(self.params["quality"]), transposed)
        dec = AdaptiveDecoder(payload)
        models = DctModels()
        out = np.empty((height, width, 3), dtype=np.uint8)
        padded_width = -(-width // unit) * unit
        for y0, rows in _stripes(height, width, unit):
            planes = np.empty((3, rows, padded_width), dtype=np.float32)
            for component in range(3):
                scale = 2 if component and unit == 16 else 1
                q = decode_component(dec, models, rows // scale // 8, padded_width // scale // 8, component,
                                     steps[min(component, 1)])
                plane = blocks.inverse(dequantize(q, steps[min(component, 1)]))
                planes[component] = colour.upsample2(plane) if scale == 2 else plane
            rgb = colour.ycbcr_to_rgb(planes)
            n = min(rows, height - y0)
            out[y0:y0 + n] = rgb[:n, :width]
        return np.ascontiguousarray(out.transpose(1, 0, 2)) if transposed else out
