"""``mlp-dpcm``: lossless / near-lossless predictive coding with a multilayer-perceptron probability model.

Each sub-pixel is predicted from already reconstructed pixels of a causal window (and the colour channels of
the pixel already coded) by a small MLP that outputs the mean and scale of a discretized logistic; the
residual, quantized with step ``2 * delta + 1`` when ``delta > 0``, is range coded (rANS) under that model.
``delta = 0`` is lossless (byte-exact), ``delta > 0`` guarantees ``max |x - x_hat| <= delta`` on every
sub-pixel. The MLP runs in exact integer arithmetic (see :mod:`nicbeam.codecs.predictive.intmlp`), so encoder
and decoder agree on every machine. Images are cut into independent tiles decoded together along wavefronts
(:mod:`nicbeam.codecs.predictive.wavefront`).

The encoder also picks, per image, a correction of the predicted scales (a shift on the scale grid and, for
near-lossless, a widening; see :data:`weights.SCALE_SHIFTS` / :data:`weights.BETAS`): the reconstruction does
not depend on it, so all candidates are costed exactly from one pass, and the best is signalled.

Payload: u32 tiles per batch (the encoder's choice, bounded by ``MAX_GROUP_PIXELS``), u8 shift index, u8 beta
index, then the rANS stream of :mod:`nicbeam.entropy.rans_lanes` (lane count, lane states, 16-bit words).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.errors import PayloadError
from nicbeam.codecs.params import ParamSpec
from nicbeam.codecs.predictive import weights as weights_mod
from nicbeam.codecs.predictive.export import MEAN_FRACTIONS
from nicbeam.codecs.predictive.wavefront import code_group, from_coding_order, tile_grid, tile_groups, to_coding_order
from nicbeam.entropy.rans_lanes import Decoder, Encoder

#: rANS lanes (each costs its 4-byte final state in the stream); batches above this are coded in chunks
MAX_LANES = 512
#: tile-buffer pixels the encoder codes in one batch; the decoder follows the stream's tiles per batch up to
#: MAX_GROUP_PIXELS (bounds its memory on large images)
GROUP_PIXELS = 1 << 20
MAX_GROUP_PIXELS = 1 << 22


class _CollectingEncoder:
    """Keeps the (scale, fraction, symbol) of every batch; the scale correction is chosen afterwards."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def encode(self, scale: np.ndarray, frac: np.ndarray, symbol: np.ndarray) -> None:
        self.batches.append(np.stack([scale, frac, symbol]).astype(np.uint8))

    def best_correction(self, model: weights_mod.PredictiveModel, delta: int) -> tuple[int, int]:
        """(shift index, beta index) with the smallest exact code length, from a histogram of the symbols."""
        tables = model.tables(delta)
        size = tables.size
        shape = (len(model.scales), MEAN_FRACTIONS, size)
        counts = np.zeros(shape, dtype=np.int64)
        for start in range(0, len(self.batches), 4096):  # bounded temporary memory
            allb = np.concatenate(self.batches[start : start + 4096], axis=1).astype(np.int64)
            key = (allb[0] * MEAN_FRACTIONS + allb[1]) * size + allb[2]
            counts += np.bincount(key, minlength=counts.size).reshape(shape)
        cost = -np.log2(tables.freq.reshape(-1, MEAN_FRACTIONS, size).astype(np.float64) / (1 << 16))
        betas = range(len(weights_mod.BETAS)) if delta else [0]
        best, choice = np.inf, (weights_mod.SCALE_SHIFTS.index(0), 0)
        for i, shift in enumerate(weights_mod.SCALE_SHIFTS):
            for j in betas:
                smap = model.scale_map(delta, shift, weights_mod.BETAS[j])
                bits = float((counts * cost[smap]).sum())
                if bits < best - 1e-6:
                    best, choice = bits, (i, j)
        return choice

    def write(self, encoder: Encoder, smap: np.ndarray) -> None:
        for batch in self.batches:
            encoder.encode(smap[batch[0]] * MEAN_FRACTIONS + batch[1], batch[2])


class _MappedDecoder:
    """The rANS decoder behind the signalled scale correction."""

    def __init__(self, decoder: Decoder, smap: np.ndarray) -> None:
        self.decoder, self.smap = decoder, smap

    def decode(self, scale: np.ndarray, frac: np.ndarray) -> np.ndarray:
        return self.decoder.decode(self.smap[scale] * MEAN_FRACTIONS + frac)


def single_threaded_blas():
    """BLAS on one thread while coding: the batches are small matrices, where OpenBLAS threads cost far more
    than they give (measured 100x slower on a loaded 2-core machine). Results are exact either way."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class MlpDpcmCodec(Codec):
    name = "mlp-dpcm"
    description = "neural predictive coding: causal MLP prediction + discretized logistic + rANS (lossless / near-lossless)"
    lossless_when = {"delta": 0}
    param_specs = (
        ParamSpec("delta", int, 0, 0, 32, doc="max absolute error per sub-pixel: 0 lossless, >0 near-lossless"),
        ParamSpec("tile", int, 128, 8, 4096, doc="side of the independently coded tiles (larger: slightly smaller, slower to decode)"),
    )

    def __init__(self, *, weights: str | os.PathLike | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._weights_arg = weights
        self._model: weights_mod.PredictiveModel | None = None

    @property
    def model(self) -> weights_mod.PredictiveModel:
        if self._model is None:
            self._model = weights_mod.load(self._weights_arg if self._weights_arg is not None else weights_mod.DEFAULT_NAME)
        return self._model

    @property
    def lossless(self) -> bool:
        return self.params["delta"] == 0

    @property
    def model_digest(self) -> bytes:
        return self.model.digest

    def implementation(self) -> str:
        return f"nicbeam mlp-dpcm (integer MLP {self.model.path.name}, numpy rANS)"

    def _from_stream_params(self, params: dict) -> "MlpDpcmCodec":
        return type(self)(weights=self._weights_arg, **params)

    def _lanes(self, height: int, width: int) -> int:
        return max(1, min(MAX_LANES, height * width))

    def _groups(self, height: int, width: int, per_group: int):
        t = self.params["tile"]
        return t, tile_groups(tile_grid(height, width, t), per_group)

    def _encode_payload(self, image: Any) -> bytes:
        with single_threaded_blas():
            return self._encode(image)

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        with single_threaded_blas():
            return self._decode(payload, header)

    def _encode(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        delta = self.params["delta"]
        coded = to_coding_order(image)
        collector = _CollectingEncoder()
        per_group = max(1, GROUP_PIXELS // self.params["tile"] ** 2)
        tile, groups = self._groups(h, w, per_group)
        for group in groups:
            src = np.zeros((len(group), tile, tile, 3), dtype=np.uint8)
            for i, (top, left, th, tw) in enumerate(group):
                src[i, :th, :tw] = coded[top : top + th, left : left + tw]
            heights = np.array([t[2] for t in group])
            widths = np.array([t[3] for t in group])
            code_group(self.model, delta, tile, heights, widths, collector, src, parallel=delta == 0)
        shift_i, beta_i = collector.best_correction(self.model, delta)
        encoder = Encoder(self.model.tables(delta), self._lanes(h, w))
        collector.write(encoder, self._scale_map(shift_i, beta_i))
        return struct.pack("<IBB", per_group, shift_i, beta_i) + encoder.finish()

    def _scale_map(self, shift_i: int, beta_i: int) -> np.ndarray:
        if shift_i >= len(weights_mod.SCALE_SHIFTS) or beta_i >= len(weights_mod.BETAS):
            raise PayloadError(f"mlp-dpcm payload declares scale correction ({shift_i}, {beta_i}), out of range")
        delta = self.params["delta"]
        return self.model.scale_map(delta, weights_mod.SCALE_SHIFTS[shift_i], weights_mod.BETAS[beta_i])

    def _decode(self, payload: bytes, header: Header) -> np.ndarray:
        h, w = header.height, header.width
        delta = self.params["delta"]
        if len(payload) < 6:
            raise PayloadError("mlp-dpcm payload shorter than its header")
        per_group, shift_i, beta_i = struct.unpack_from("<IBB", payload)
        smap = self._scale_map(shift_i, beta_i)
        if not 1 <= per_group <= max(1, MAX_GROUP_PIXELS // self.params["tile"] ** 2):
            raise PayloadError(f"mlp-dpcm payload declares {per_group} tiles per batch")
        decoder = Decoder(self.model.tables(delta), payload[6:], self._lanes(h, w))
        mapped = _MappedDecoder(decoder, smap)
        out = np.empty((h, w, 3), dtype=np.uint8)
        tile, groups = self._groups(h, w, per_group)
        for group in groups:
            heights = np.array([t[2] for t in group])
            widths = np.array([t[3] for t in group])
            rec = code_group(self.model, delta, tile, heights, widths, mapped, None)
            for i, (top, left, th, tw) in enumerate(group):
                out[top : top + th, left : left + tw] = rec[i, :th, :tw]
        decoder.finish()
        return from_coding_order(out)
