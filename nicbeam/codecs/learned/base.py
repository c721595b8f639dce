"""Shared machinery of learned codecs: weights, device, padding, tiling, batching, payload framing.

Geometry: an image is cut into tiles of at most ``tile x tile`` pixels (one tile when it fits); each tile is
padded on the bottom/right by edge replication to a multiple of the model's downsampling factor (16 or 64),
coded independently, decoded, and cropped back. Tiles bound peak memory (activations of one batch of tiles),
at the cost of visible seams at low rates because neighbouring tiles share no context: there is no overlap
or blending, and tile edges fall on multiples of ``tile`` pixels so the decoder knows the grid from the
header alone.

Payload (version 1): ``u8 version`` then, per tile in raster order, ``u32 length`` + the tile's range-coded
words (see the subclass for what a tile contains).

Reconstruction determinism: the entropy-decoded latents are exact by construction (integer tables, integer
hyper-synthesis). The float synthesis transform is then evaluated in **float64**: in float32 a different
thread count changes the convolution summation order enough to flip about 20 of 1.2 M Kodak pixel values by
one level (measured); in float64 the differences (~1e-15 relative) would have to land within ~1e-12 of a
rounding boundary to show, so decoded pixels are identical across threads, batch sizes and devices in
practice (this last step is not a mathematical guarantee, unlike the latents). It costs ~3x synthesis time
on CPU, with the wide transposed convolutions run as sub-pixel convolutions (faster in float64; see
``nicbeam.nn.layers.subpixel_deconvs``, benchmarks/bench_vs_compressai.py); ``precision="fast"`` opts into
float32 synthesis instead.

Batching: ``encode_batch`` / ``decode_batch`` run tiles of equal padded size through the transforms in
batches of up to ``max_batch`` tiles and ``max_batch_pixels`` pixels; entropy coding is per tile and exact, so the stream of an image does not
depend on which images it was batched with.
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nicbeam.codecs import container
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header, pack_chunks, unpack_chunks
from nicbeam.codecs.errors import BitstreamError, InvalidParameterError, PayloadError
from nicbeam.codecs.learned.latents import Latents, TileLatents, assemble, to_int32
from nicbeam.codecs.learned.refine import bf16_is_fast, refine_latents
from nicbeam.codecs.learned.weights import Bundle, default_device, load_bundle, resolve_weights
from nicbeam.codecs.params import ParamSpec
from nicbeam.nn.layers import subpixel_deconvs

PAYLOAD_VERSION = 1
_SYNTH_LOCK = threading.Lock()


class LearnedCodec(Codec):
    """Base for learned codecs; subclasses implement ``_encode_tiles`` and ``_decode_tile_latents``."""

    weights_name: ClassVar[str]
    downsampling: ClassVar[int] = 16
    max_batch: ClassVar[int] = 8
    #: at most this many (padded) pixels per transform batch: bounds peak memory together with ``tile``
    max_batch_pixels: ClassVar[int] = 1 << 21
    param_specs = (
        ParamSpec("quality", int, 6, 1, 16, doc="rate point 1 (lowest rate) .. N (highest), one per training lambda of the weights (shipped: 10)"),
        ParamSpec("tile", int, 1024, 64, 4096, doc="tile side in pixels (multiple of 64); larger images are tiled"),
        ParamSpec("refine", int, 0, 0, 2000, doc="encoder-side latent refinement steps (SGA; 0 = off): lower rate-distortion "
                  "cost for ~0.4 s per step per Kodak image on one CPU thread; the decoder is unchanged"),
    )

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        precision: str = "exact",
        **params: Any,
    ) -> None:
        """``precision`` (decoding only, not part of the stream): ``"exact"`` runs the synthesis transform in
        float64, so decoded pixels do not depend on threads, batch or device in practice; ``"fast"`` runs it
        in float32 (~2.8x faster on CPU; a few pixels per image may differ by one level between thread
        counts). Latents and entropy decoding are exact either way."""
        super().__init__(**params)
        if self.params["tile"] % 64:
            raise InvalidParameterError(f"parameter tile={self.params['tile']} must be a multiple of 64")
        if precision not in ("exact", "fast"):
            raise InvalidParameterError(f"precision must be 'exact' or 'fast', not {precision!r}")
        self.precision = precision
        self._weights_arg = weights
        self._weights_path = resolve_weights(weights if weights is not None else self.weights_name)
        self._device = torch.device(device) if device is not None else default_device()
        self._bundle_cache: Bundle | None = None

    # ----------------------------------------------------------------- model
    @property
    def bundle(self) -> Bundle:
        if self._bundle_cache is None:
            bundle = load_bundle(self._weights_path, self._device)
            if self.params["quality"] > bundle.model.num_qualities:
                raise InvalidParameterError(
                    f"{self.name}: quality {self.params['quality']} > {bundle.model.num_qualities} rate points of this model"
                )
            with _SYNTH_LOCK:
                if not bundle.extras.get("_ready"):  # tables are built once per loaded weights file
                    self._setup(bundle)
                    bundle.extras["_ready"] = True
            self._bundle_cache = bundle
        return self._bundle_cache

    def _setup(self, bundle: Bundle) -> None:
        """Subclass hook: build entropy tables etc. once per bundle (store them in ``bundle.extras``)."""

    @property
    def model(self):
        return self.bundle.model

    @property
    def synthesis_dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "exact" else torch.float32

    @property
    def synthesis_model(self):
        """The model whose synthesis decodes: a float64 copy (precision "exact", see the module docstring)
        or the float32 model itself ("fast")."""
        bundle = self.bundle
        if self.precision == "fast":
            return bundle.model
        with _SYNTH_LOCK:
            if "model64" not in bundle.extras:  # float64 copy for decoding, made once per weights file
                model64 = copy.deepcopy(bundle.model).double()
                subpixel_deconvs(model64.g_s)  # same function; float64 conv2d is faster than its deconv on CPU
                bundle.extras["model64"] = model64
        return bundle.extras["model64"]

    @property
    def model_digest(self) -> bytes:
        return self.bundle.digest

    @property
    def device(self) -> str:
        return str(self._device)

    def implementation(self) -> str:
        from importlib.metadata import version

        return (f"nicbeam learned codec ({self.bundle.family}, torch {torch.__version__}, "
                f"constriction {version('constriction')} range coder)")

    def _from_stream_params(self, params: dict) -> "LearnedCodec":
        return type(self)(weights=self._weights_arg, device=self._device, precision=self.precision, **params)

    # ----------------------------------------------------------------- geometry
    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        t = self.params["tile"]
        return [(top, left, min(t, height - top), min(t, width - left))
                for top in range(0, height, t) for left in range(0, width, t)]

    def padded(self, h: int, w: int) -> tuple[int, int]:
        d = self.downsampling
        return -(-h // d) * d, -(-w // d) * d

    def _batch_size(self, key: tuple) -> int:
        """Tiles per batch for tiles of this shape (image tile shape or latent shape)."""
        if len(key) == 3 and key[2] == 3:  # H x W x 3 image tile
            pixels = self.padded(key[0], key[1])
            pixels = pixels[0] * pixels[1]
        else:  # (M, h, w) latent at 1/16 resolution
            pixels = key[-2] * key[-1] * 256
        return max(1, min(self.max_batch, self.max_batch_pixels // pixels))

    def _to_tensor(self, tiles: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = tiles[0].shape[:2]
        hp, wp = self.padded(h, w)
        x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).to(self._device, torch.float32).div_(255.0)
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        return x

    # ----------------------------------------------------------------- encode
    def _encode_payload(self, image: np.ndarray) -> bytes:
        return self._encode_many([image])[0]

    def encode_batch(self, images: Sequence[Any]) -> list[bytes]:
        checked = [self._check_input(im) for im in images]
        payloads = self._encode_many(checked)
        return [self._wrap(im, p) for im, p in zip(checked, payloads)]

    def encode_batch_with_latents(self, images: Sequence[Any]) -> list[tuple[bytes, Latents]]:
        """Like ``encode_batch``, with each image's latents exactly as its stream codes them (taken on the
        encoder side; ``decode_latents`` of the stream returns the same arrays)."""
        checked = [self._check_input(im) for im in images]
        tile_latents: dict[tuple[int, int], TileLatents] = {}
        payloads = self._encode_many(checked, tile_latents)
        out = []
        for i, (im, payload) in enumerate(zip(checked, payloads)):
            grid = self.tiles(*im.shape[:2])
            image_latents = assemble([tile_latents[(i, k)] for k in range(len(grid))], grid)
            stream = self._wrap(im, payload)
            out.append((stream, self._latents(image_latents, container.parse_header(stream))))
        return out

    def encode_with_latents(self, image: Any) -> tuple[bytes, Latents]:
        """One image: its stream and its latents."""
        return self.encode_batch_with_latents([image])[0]

    @torch.no_grad()
    def _encode_many(self, images: Sequence[np.ndarray],
                     latents_out: dict[tuple[int, int], TileLatents] | None = None) -> list[bytes]:
        """Payloads of ``images``; with ``latents_out``, also each (image, tile)'s coded latents."""
        jobs = []  # (image index, tile index, tile array)
        for i, im in enumerate(images):
            for k, (top, left, th, tw) in enumerate(self.tiles(*im.shape[:2])):
                jobs.append((i, k, im[top : top + th, left : left + tw]))
        blobs: dict[tuple[int, int], bytes] = {}
        q = self.params["quality"] - 1
        for group in _groups(jobs, key=lambda j: j[2].shape, size=self._batch_size):
            x = self._to_tensor([j[2] for j in group])
            quality = torch.full((len(group),), q, dtype=torch.long, device=self._device)
            group_latents: list[TileLatents] = []
            # the latents argument only when asked for: subclasses written before it keep working for streams
            coded = self._encode_tiles(x, quality) if latents_out is None else self._encode_tiles(x, quality, group_latents)
            for job, blob in zip(group, coded):
                blobs[(job[0], job[1])] = blob
            if latents_out is not None:
                for job, tile in zip(group, group_latents):
                    latents_out[(job[0], job[1])] = tile
        payloads = []
        for i, im in enumerate(images):
            n = len(self.tiles(*im.shape[:2]))
            payloads.append(bytes([PAYLOAD_VERSION]) + pack_chunks([blobs[(i, k)] for k in range(n)]))
        return payloads

    def _encode_tiles(self, x: torch.Tensor, quality: torch.Tensor,
                      latents_out: list[TileLatents] | None = None) -> list[bytes]:
        """One blob per tile of the batch ``x``; appends each tile's coded latents to ``latents_out`` if given."""
        raise NotImplementedError

    def _refine(self, y: torch.Tensor, x: torch.Tensor, quality: torch.Tensor, center: torch.Tensor, rate_bits) -> torch.Tensor:
        """``y`` refined for ``params["refine"]`` steps against the model's own rate and the training
        distortion (MSE at each quality's lambda), see :mod:`nicbeam.codecs.learned.refine`. Callers check
        ``params["refine"]`` first, so that the rate model is only built when it is used."""
        model = self.model
        lmbda = torch.tensor(model.lambdas, dtype=y.dtype, device=y.device)[quality]
        fast = bf16_is_fast(y.device)

        def synthesis(y_tilde: torch.Tensor) -> torch.Tensor:
            # bfloat16 where the hardware runs it natively (1.5x faster here, same result measured on
            # kodim05: 30.33 vs 30.32 dB); only the search uses it, the coded latents stay exact
            with torch.autocast(device_type=y.device.type, dtype=torch.bfloat16, enabled=fast):
                return model.synthesis(y_tilde, quality).float()

        return refine_latents(y, x, center=center, lmbda=lmbda, rate_bits=rate_bits, synthesis=synthesis,
                              steps=self.params["refine"])

    # ----------------------------------------------------------------- decode
    def _decode_payload(self, payload: bytes, header: Header) -> np.ndarray:
        return self._decode_many([(payload, header)])[0]

    def decode_batch(self, streams: Sequence[bytes]) -> list[Any]:
        items = []
        for data in streams:
            header, payload = container.unpack(data)
            decoder = self._decoder_for(header)  # checks codec, version, params and the weights digest
            if decoder.bundle is not self.bundle:
                return [self.decode(s) for s in streams]  # different weights: no shared batch
            items.append((payload, header))
        try:
            images = self._decode_many(items)
        except BitstreamError:
            raise
        except Exception as exc:
            raise PayloadError(f"{self.name} payload could not be decoded: {type(exc).__name__}: {exc}") from exc
        for image, (_, header) in zip(images, items):
            self._check_output(image, header)
        return images

    def _split(self, payload: bytes, n_tiles: int) -> list[bytes]:
        if not payload or payload[0] != PAYLOAD_VERSION:
            raise PayloadError(f"{self.name}: unknown payload version {payload[:1].hex()}")
        return unpack_chunks(payload, 1, n_tiles, "tile")

    @torch.no_grad()
    def _decode_many(self, items: Sequence[tuple[bytes, Header]]) -> list[np.ndarray]:
        self.bundle  # load
        outputs, jobs = [], []
        for i, (payload, header) in enumerate(items):
            tiles = self.tiles(header.height, header.width)
            blobs = self._split(payload, len(tiles))
            outputs.append(np.empty((header.height, header.width, 3), dtype=np.uint8))
            q = int(header.params["quality"]) - 1
            for (top, left, th, tw), blob in zip(tiles, blobs):
                y_hat = self._decode_tile(blob, *self.padded(th, tw), q)
                jobs.append((i, top, left, th, tw, q, y_hat))
        for group in _groups(jobs, key=lambda j: tuple(j[6].shape), size=self._batch_size):
            y_hat = torch.stack([j[6] for j in group]).to(self._device, self.synthesis_dtype)
            quality = torch.tensor([j[5] for j in group], dtype=torch.long, device=self._device)
            x_hat = self.synthesis_model.synthesis(y_hat, quality)
            pixels = x_hat.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for (i, top, left, th, tw, _, _), px in zip(group, pixels):
                outputs[i][top : top + th, left : left + tw] = px[:th, :tw]
        return outputs

    def _decode_tile(self, blob: bytes, hp: int, wp: int, quality_index: int) -> torch.Tensor:
        """Entropy-decode one tile of padded size hp x wp (coded at 0-based ``quality_index``) into
        y_hat (M, hp/16, wp/16), float32 on the CPU."""
        return torch.from_numpy(self._decode_tile_latents(blob, hp, wp, quality_index).y_hat)

    def _decode_tile_latents(self, blob: bytes, hp: int, wp: int, quality_index: int) -> TileLatents:
        """Entropy-decode one tile's latents (``y_hat`` float32, the coded symbols, ``z_hat``)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- latents only
    def decode_latents(self, data: bytes, *, max_pixels: int = container.DEFAULT_MAX_PIXELS) -> Latents:
        """Entropy-decode only the latents of a stream (no synthesis transform); the same checks as ``decode``
        (container checksums, codec, parameters, weights digest), and BitstreamError on any defect."""
        header, payload = container.unpack(data, max_pixels=max_pixels)
        decoder = self._decoder_for(header)
        try:
            return decoder._decode_latents_payload(payload, header)
        except BitstreamError:
            raise
        except Exception as exc:
            raise PayloadError(f"{self.name} latents could not be decoded: {type(exc).__name__}: {exc}") from exc

    @torch.no_grad()
    def _decode_latents_payload(self, payload: bytes, header: Header) -> Latents:
        self.bundle  # load (tables)
        grid = self.tiles(header.height, header.width)
        blobs = self._split(payload, len(grid))
        q = int(header.params["quality"]) - 1
        tiles = [self._decode_tile_latents(blob, *self.padded(th, tw), q) for (_, _, th, tw), blob in zip(grid, blobs)]
        return self._latents(assemble(tiles, grid), header)

    def _latents(self, tiles: TileLatents, header: Header) -> Latents:
        """An image's assembled latents with the stream's identity (codec, parameters, digest, size)."""
        return Latents(
            codec=header.codec,
            params=dict(header.params),
            model_digest=header.model_digest_hex,
            height=header.height,
            width=header.width,
            y_hat=np.ascontiguousarray(tiles.y_hat, dtype=np.float32),
            y_symbols=to_int32(tiles.y_symbols, "y symbol"),
            z_hat=None if tiles.z_hat is None else to_int32(tiles.z_hat, "z_hat"),
        )


def _groups(jobs: list, key, size):
    """Jobs grouped by ``key`` (first-seen order), in chunks of at most ``size(key)``."""
    buckets: dict[Any, list] = {}
    for job in jobs:
        buckets.setdefault(key(job), []).append(job)
    for k, bucket in buckets.items():
        n = size(k)
        for start in range(0, len(bucket), n):
            yield bucket[start : start + n]
