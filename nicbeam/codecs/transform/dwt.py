"""``dwt``: CDF 9/7 wavelet codec with dead-zone quantisation and context-adaptive range coding.

Full-range YCbCr (JPEG 2000's irreversible colour transform), a multi-level CDF 9/7 transform per component
(:mod:`.wavelet`), one dead-zone quantiser per subband whose step is the base step divided by the subband's
synthesis gain and by the colour transform's gain (so every step costs the same RGB MSE per unit of
squared error: MSE-balanced), and the coefficients coded by :mod:`.dwt_coding`. ``quality`` 1..100 sets the
base step on a log scale (+12.5 quality = half the step), so the rate grows monotonically with it.

Large images are cut into tiles of ``TILE`` pixels (coded one after the other, models carried on), which
bounds memory; images taller than wide are coded transposed (fewer, longer rows for the row-group coder).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.params import ParamSpec
from nicbeam.codecs.transform import colour, wavelet
from nicbeam.codecs.transform.dwt_coding import DwtModels, decode_tile_component, encode_tile_component
from nicbeam.entropy.adaptive import AdaptiveDecoder, AdaptiveEncoder

#: Tile side in pixels; an image up to this size is one tile (Kodak is).
TILE = 2048
#: Rounding offset of detail coefficients (1/2 = plain rounding): the dead zone.
DETAIL_ROUNDING = 0.38
#: Non-zero detail levels are reconstructed at ``(|q| - bias) * step``.
DETAIL_RECONSTRUCTION_BIAS = 0.0
#: RGB-error gain of each YCbCr component (column norms of the inverse colour matrix, relative to luma).
_COLOUR_GAIN = colour.rgb_error_gains()


def base_step(quality: int) -> float:
    """Quantiser step of an orthonormal unit-gain band: 256 at quality 1, 1 at quality 100."""
    return float(2.0 ** ((100 - quality) / 12.375))


def _tiles(height: int, width: int):
    for y0 in range(0, height, TILE):
        for x0 in range(0, width, TILE):
            yield y0, x0, min(TILE, height - y0), min(TILE, width - x0)


def _steps(quality: int, component: int, levels: int) -> tuple[list[tuple[float, ...]], float]:
    step = base_step(quality) / float(_COLOUR_GAIN[component])
    details, ll = wavelet.synthesis_gains(levels)
    return [tuple(step / g for g in gains) for gains in details], step / ll


def _quantize(band: np.ndarray, step: float, rounding: float) -> np.ndarray:
    scaled = band / step
    return (np.sign(scaled) * np.floor(np.abs(scaled) + rounding)).astype(np.int64)


def _dequantize(levels: np.ndarray, step: float, bias: float) -> np.ndarray:
    mags = np.abs(levels).astype(np.float64)
    return np.sign(levels) * np.where(mags > 0, mags - bias, 0.0) * step


class DwtCodec(Codec):
    name = "dwt"
    description = "CDF 9/7 wavelet, dead-zone quantisation, context-adaptive range coding (nicbeam)"
    param_specs = (
        ParamSpec("quality", int, 75, 1, 100, doc="rate knob: quantiser step 2**((100-quality)/12.4)"),
        ParamSpec("levels", int, 5, 0, 8, doc="wavelet decomposition levels (fewer on small images)"),
    )

    def implementation(self) -> str:
        from importlib.metadata import version

        return f"nicbeam dwt (PyWavelets {version('PyWavelets')}, constriction {version('constriction')})"

    def _encode_payload(self, image: Any) -> bytes:
        if image.shape[0] > image.shape[1]:
            image = image.transpose(1, 0, 2)
        quality, max_levels = int(self.params["quality"]), int(self.params["levels"])
        enc, models = AdaptiveEncoder(), DwtModels()
        for y0, x0, h, w in _tiles(image.shape[0], image.shape[1]):
            planes = colour.rgb_to_ycbcr(image[y0:y0 + h, x0:x0 + w])
            levels = wavelet.usable_levels(h, w, max_levels)
            for component in range(3):
                ll, details = wavelet.forward(planes[component], levels)
                detail_steps, ll_step = _steps(quality, component, levels)
                q_details = [tuple(_quantize(b, s, DETAIL_ROUNDING) for b, s in zip(bands, steps))
                             for bands, steps in zip(details, detail_steps)]
                encode_tile_component(enc, models, _quantize(ll, ll_step, 0.5), q_details, component)
        return enc.finish()

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        transposed = header.height > header.width
        height, width = (header.width, header.height) if transposed else (header.height, header.width)
        quality, max_levels = int(self.params["quality"]), int(self.params["levels"])
        dec, models = AdaptiveDecoder(payload), DwtModels()
        out = np.empty((height, width, 3), dtype=np.uint8)
        for y0, x0, h, w in _tiles(height, width):
            levels = wavelet.usable_levels(h, w, max_levels)
            shapes = wavelet.band_shapes(h, w, levels)
            planes = np.empty((3, h, w), dtype=np.float32)
            for component in range(3):
                q_ll, q_details = decode_tile_component(dec, models, shapes, component)
                detail_steps, ll_step = _steps(quality, component, levels)
                details = [tuple(_dequantize(b, s, DETAIL_RECONSTRUCTION_BIAS) for b, s in zip(bands, steps))
                           for bands, steps in zip(q_details, detail_steps)]
                planes[component] = wavelet.inverse(_dequantize(q_ll, ll_step, 0.0), details, h, w)
            out[y0:y0 + h, x0:x0 + w] = colour.ycbcr_to_rgb(planes)
        return np.ascontiguousarray(out.transpose(1, 0, 2)) if transposed else out
