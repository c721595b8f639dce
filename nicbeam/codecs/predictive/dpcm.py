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

The tiles are split into ``slices`` (row-major runs of tiles, an encode-time choice), each with its own rANS
stream: slices are decoded (and near-lossless-encoded) on parallel threads, the wavefront loop being numpy and
BLAS calls that release the GIL. The stream does not depend on the thread count.

Payload (version 2): u8 version, u32 tiles per batch (the encoder's choice, bounded by ``MAX_GROUP_PIXELS``),
u8 shift index, u8 beta index, u8 slice count K, K x u32 slice lengths, then per slice the rANS stream of
:mod:`nicbeam.entropy.rans_lanes` (lane count, lane states, 16-bit words).
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.errors import PayloadError
from nicbeam.codecs.params import ParamSpec
from nicbeam.codecs.predictive import weights as weights_mod
from nicbeam.codecs.predictive.export import MEAN_FRACTIONS
from nicbeam.codecs.predictive.wavefront import code_group, from_coding_order, tile_grid, tile_groups, to_coding_order
from nicbeam.entropy.rans_lanes import Decoder, Encoder

#: rANS lanes per slice (each costs its 4-byte final state in the stream: 2 slices x 256 lanes = 0.04 bpp on a
#: Kodak image); batches above this are coded in chunks
MAX_LANES = 256
#: tile-buffer pixels the encoder codes in one batch; the decoder follows the stream's tiles per batch up to
#: MAX_GROUP_PIXELS (bounds its memory on large images)
GROUP_PIXELS = 1 << 20
MAX_GROUP_PIXELS = 1 << 22
PAYLOAD_VERSION = 2
_HEAD = struct.Struct("<BIBBB")


class _CollectingEncoder:
    """Keeps the (scale, fraction, symbol) of every batch; the scale correction is chosen afterwards."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def encode(self, scale: np.ndarray, frac: np.ndarray, symbol: np.ndarray) -> None:
        self.batches.append(np.stack([scale, frac, symbol]).astype(np.uint8))

    @staticmethod
    def best_correction(collectors: Sequence["_CollectingEncoder"], model: weights_mod.PredictiveModel,
                        delta: int) -> tuple[int, int]:
        """(shift index, beta index) with the smallest exact code length, from a histogram of the symbols of
        every slice (one correction per image)."""
        tables = model.tables(delta)
        size = tables.size
        shape = (len(model.scales), MEAN_FRACTIONS, size)
        counts = np.zeros(shape, dtype=np.int64)
        batches = [b for collector in collectors for b in collector.batches]
        for start in range(0, len(batches), 4096):  # bounded temporary memory
            allb = np.concatenate(batches[start : start + 4096], axis=1).astype(np.int64)
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


def _usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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
        ParamSpec("slices", int, 2, 1, 255, doc="independently decodable runs of tiles, decoded on parallel threads (more: faster on many cores, slightly larger)"),
    )

    def __init__(self, *, weights: str | os.PathLike | None = None, threads: int | None = None, **params: Any) -> None:
        """``threads``: worker threads over the slices (default: the slice count, at most the usable cores);
        the stream and the image do not depend on it."""
        super().__init__(**params)
        self._weights_arg = weights
        self._threads = threads
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
        return type(self)(weights=self._weights_arg, threads=self._threads, **params)

    @staticmethod
    def _lanes(tiles: list) -> int:
        return max(1, min(MAX_LANES, sum(th * tw for _, _, th, tw in tiles)))

    def _slices(self, height: int, width: int, count: int) -> list[list]:
        """``count`` row-major runs of tiles, as equal as possible (the decoder rebuilds them from the count)."""
        tiles = tile_grid(height, width, self.params["tile"])
        bounds = [len(tiles) * i // count for i in range(count + 1)]
        return [tiles[bounds[i] : bounds[i + 1]] for i in range(count)]

    def _run(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        """The slices' jobs on a thread pool (in order when one thread); results in job order."""
        threads = self._threads if self._threads is not None else min(len(jobs), _usable_cores())
        if threads <= 1 or len(jobs) == 1:
            return [job() for job in jobs]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda job: job(), jobs))

    def _encode_payload(self, image: Any) -> bytes:
        with single_threaded_blas():
            return self._encode(image)

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        with single_threaded_blas():
            return self._decode(payload, header)

    def _encode(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        delta, tile = self.params["delta"], self.params["tile"]
        coded = to_coding_order(image)
        per_group = max(1, GROUP_PIXELS // tile**2)
        slices = self._slices(h, w, min(self.params["slices"], len(tile_grid(h, w, tile))))

        def collect(tiles: list) -> _CollectingEncoder:
            collector = _CollectingEncoder()
            for group in tile_groups(tiles, per_group):
                src = np.zeros((len(group), tile, tile, 3), dtype=np.uint8)
                for i, (top, left, th, tw) in enumerate(group):
                    src[i, :th, :tw] = coded[top : top + th, left : left + tw]
                heights = np.array([t[2] for t in group])
                widths = np.array([t[3] for t in group])
                code_group(self.model, delta, tile, heights, widths, collector, src)
            return collector

        collectors = self._run([lambda tiles=tiles: collect(tiles) for tiles in slices])
        shift_i, beta_i = _CollectingEncoder.best_correction(collectors, self.model, delta)
        smap = self._scale_map(shift_i, beta_i)
        streams = []
        for tiles, collector in zip(slices, collectors):
            encoder = Encoder(self.model.tables(delta), self._lanes(tiles))
            collector.write(encoder, smap)
            streams.append(encoder.finish())
        head = _HEAD.pack(PAYLOAD_VERSION, per_group, shift_i, beta_i, len(slices))
        return head + struct.pack(f"<{len(streams)}I", *map(len, streams)) + b"".join(streams)

    def _scale_map(self, shift_i: int, beta_i: int) -> np.ndarray:
        if shift_i >= len(weights_mod.SCALE_SHIFTS) or beta_i >= len(weights_mod.BETAS):
            raise PayloadError(f"mlp-dpcm payload declares scale correction ({shift_i}, {beta_i}), out of range")
        delta = self.params["delta"]
        return self.model.scale_map(delta, weights_mod.SCALE_SHIFTS[shift_i], weights_mod.BETAS[beta_i])

    def _decode(self, payload: bytes, header: Header) -> np.ndarray:
        h, w = header.height, header.width
        delta, tile = self.params["delta"], self.params["tile"]
        if len(payload) < _HEAD.size:
            raise PayloadError("mlp-dpcm payload shorter than its header")
        version, per_group, shift_i, beta_i, count = _HEAD.unpack_from(payload)
        if version != PAYLOAD_VERSION:
            raise PayloadError(f"mlp-dpcm payload version {version} (this decoder reads {PAYLOAD_VERSION})")
        smap = self._scale_map(shift_i, beta_i)
        if not 1 <= per_group <= max(1, MAX_GROUP_PIXELS // tile**2):
            raise PayloadError(f"mlp-dpcm payload declares {per_group} tiles per batch")
        if not 1 <= count <= len(tile_grid(h, w, tile)):
            raise PayloadError(f"mlp-dpcm payload declares {count} slices")
        end = _HEAD.size + 4 * count
        if len(payload) < end:
            raise PayloadError("mlp-dpcm payload truncated in its slice table")
        lengths = struct.unpack_from(f"<{count}I", payload, _HEAD.size)
        if end + sum(lengths) != len(payload):
            raise PayloadError("mlp-dpcm slice lengths do not add up to the payload")
        offsets = np.cumsum((end,) + lengths)
        out = np.empty((h, w, 3), dtype=np.uint8)
        tables = self.model.tables(delta)

        def decode_slice(tiles: list, data: bytes) -> None:
            decoder = Decoder(tables, data, self._lanes(tiles))
            mapped = _MappedDecoder(decoder, smap)
            for group in tile_groups(tiles, per_group):
                heights = np.array([t[2] for t in group])
                widths = np.array([t[3] for t in group])
                rec = code_group(self.model, delta, tile, heights, widths, mapped, None)
                for i, (top, left, th, tw) in enumerate(group):
                    out[top : top + th, left : left + tw] = rec[i, :th, :tw]
            decoder.finish()

        slices = self._slices(h, w, count)
        self._run([lambda i=i: decode_slice(slices[i], payload[offsets[i] : offsets[i + 1]]) for i in range(count)])
        return from_coding_order(out)
