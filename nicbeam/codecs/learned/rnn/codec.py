"""The registered RNN codecs (Toderici et al.): one class per variant of the survey's table, all the same
:class:`RNNCodec` configured by cell type and framing; weights ``nicbeam/weights/<codec name>.safetensors``.

``quality`` is the number of iterations K (1..16): 32 bits per 16x16 block each, 0.125 bpp per iteration
before entropy coding. ``entropy=context`` range-codes the bits with the learned context model,
``entropy=none`` stores them packed (the table's no-entropy-coding baseline).

Payload (layered, container flag 1): ``pack_layers`` of K layers, one per iteration; a layer is
``pack_chunks`` of one blob per tile (raster order, tiles as in :mod:`nicbeam.codecs.learned.base`), the
blob being that tile's bits of that iteration (see :mod:`.bitcoding`). A prefix of k layers decodes to the
k-iteration image; :func:`.progressive.truncate_iterations` cuts streams. A stream may hold fewer layers
than its ``quality`` (cut by :func:`nicbeam.codecs.container.truncate_layers`), never more.

Determinism: the bits are decoded exactly (integer context model); the decoder network then runs in float64
(precision "exact", as the other learned codecs' synthesis), so pixels do not depend on threads or batches.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from nicbeam.codecs.container import Header, pack_chunks, pack_layers, unpack_chunks, unpack_layers
from nicbeam.codecs.errors import CodecError, PayloadError
from nicbeam.codecs.learned.base import _SYNTH_LOCK, LearnedCodec, _groups
from nicbeam.codecs.learned.rnn.binarizer import from_bits, to_bits
from nicbeam.codecs.learned.rnn.bitcoding import decode_context, decode_raw, encode_context, encode_raw
from nicbeam.codecs.learned.rnn.context import IntegerBitContext
from nicbeam.codecs.params import ParamSpec

MAX_ITERATIONS = 16


class RNNCodec(LearnedCodec):
    """Base of the eight variants; subclasses set ``name``, ``cell`` and ``framing``."""

    cell: ClassVar[str]
    framing: ClassVar[str]
    layered = True
    #: a stream cut to k layers states quality=k (see :mod:`.progressive`)
    quality_is_layer_count = True
    downsampling = 16
    param_specs = (
        ParamSpec("quality", int, 8, 1, MAX_ITERATIONS,
                  doc="iterations: each adds 32 bits per 16x16 block (0.125 bpp before entropy coding)"),
        ParamSpec("entropy", str, "context", choices=("context", "none"),
                  doc="context: range coding with the learned bit context model; none: raw packed bits"),
        ParamSpec("tile", int, 1024, 64, 4096, doc="tile side in pixels (multiple of 64); larger images are tiled"),
        ParamSpec("bpp", float, 0.0, 0.0, 64.0,
                  doc="target payload bits per pixel (0 = off): keep the most iterations, up to quality, whose "
                      "payload fits (at least one); the header then states the iterations kept"),
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            cls.weights_name = cls.name
            cls.description = f"learned: Toderici et al. conv-RNN, {cls.cell} cells, {cls.framing} framing, progressive"

    # ----------------------------------------------------------------- model
    @property
    def bundle(self):
        """The loaded weights, refused unless they hold this variant's network."""
        bundle = LearnedCodec.bundle.fget(self)
        config = bundle.config
        if bundle.family != "toderici-rnn" or (config.get("cell"), config.get("framing")) != (self.cell, self.framing):
            raise CodecError(f"{bundle.path} holds {bundle.family} {config.get('cell')}/{config.get('framing')}, "
                             f"not the {self.cell}/{self.framing} network of {self.name}")
        return bundle

    def _setup(self, bundle) -> None:
        if bundle.family == "toderici-rnn":
            bundle.extras["context"] = IntegerBitContext.from_tensors(bundle.tensors, "tables.ctx.")

    @property
    def decoder_model(self):
        """The model that decodes: a float64 copy (precision "exact") or the float32 model ("fast")."""
        bundle = self.bundle
        if self.precision == "fast":
            return bundle.model
        with _SYNTH_LOCK:
            if "model64" not in bundle.extras:
                bundle.extras["model64"] = copy.deepcopy(bundle.model).double()
        return bundle.extras["model64"]

    def _bits_shape(self, hp: int, wp: int) -> tuple[int, int, int]:
        return (self.model.bits, hp // 16, wp // 16)

    # ----------------------------------------------------------------- encode
    @torch.no_grad()
    def _encode_many(self, images: Sequence[np.ndarray]) -> list[bytes]:
        k = self.params["quality"]
        jobs = [(i, t, im[top : top + th, left : left + tw])
                for i, im in enumerate(images) for t, (top, left, th, tw) in enumerate(self.tiles(*im.shape[:2]))]
        bits: dict[tuple[int, int], np.ndarray] = {}
        for group in _groups(jobs, key=lambda j: j[2].shape, size=self._batch_size):
            codes, _ = self.model.run(self._to_tensor([j[2] for j in group]), k)
            stacked = to_bits(torch.stack(codes, dim=1)).cpu().numpy()  # B, K, bits, h, w
            for job, b in zip(group, stacked):
                bits[(job[0], job[1])] = b
        payloads = []
        for i, im in enumerate(images):
            n = len(self.tiles(*im.shape[:2]))
            layers = [pack_chunks([self._encode_bits(bits[(i, t)], it) for t in range(n)]) for it in range(k)]
            payloads.append(pack_layers(layers[: self._iterations_within_target(layers, im)]))
        return payloads

    def _iterations_within_target(self, layers: list[bytes], image: np.ndarray) -> int:
        """All layers, or with ``bpp`` set the longest prefix whose payload fits the target (at least 1)."""
        target = self.params["bpp"]
        if not target:
            return len(layers)
        budget = target * image.shape[0] * image.shape[1] / 8
        size, keep = 4, 0  # the layer count, then each layer's u32 length + bytes
        for layer in layers:
            size += 4 + len(layer)
            if size > budget:
                break
            keep += 1
        return max(1, keep)

    def _wrap(self, image: Any, payload: bytes) -> bytes:
        """The header states the iterations the payload holds (fewer than ``quality`` under a ``bpp`` target)."""
        kept = int.from_bytes(payload[:4], "big")
        if kept == self.params["quality"]:
            return super()._wrap(image, payload)
        sibling = type(self)(weights=self._weights_arg, device=self._device, precision=self.precision,
                             **{**self.params, "quality": kept})
        return LearnedCodec._wrap(sibling, image, payload)

    def _encode_bits(self, bits: np.ndarray, iteration: int) -> bytes:
        if self.params["entropy"] == "none":
            return encode_raw(bits[iteration])
        prev = bits[iteration - 1] if iteration else None
        return encode_context(self.bundle.extras["context"], bits[iteration], prev, iteration)

    # ----------------------------------------------------------------- decode
    def _split(self, payload: bytes, n_tiles: int) -> list[bytes]:  # pragma: no cover - layered payloads only
        raise NotImplementedError

    def _decode_bits(self, layers: list[bytes], n_tiles: int, shapes: list[tuple[int, int, int]],
                     entropy: str) -> list[np.ndarray]:
        """Per tile, its bits (k, bits, h, w) from the k layers."""
        ctx = self.bundle.extras["context"]
        per_layer = [unpack_chunks(layer, 0, n_tiles, "tile") for layer in layers]
        out = []
        for t, shape in enumerate(shapes):
            decoded: list[np.ndarray] = []
            for it, blobs in enumerate(per_layer):
                if entropy == "none":
                    decoded.append(decode_raw(blobs[t], shape))
                else:
                    prev = decoded[-1] if decoded else None
                    decoded.append(decode_context(ctx, blobs[t], prev, it, shape))
            out.append(np.stack(decoded))
        return out

    def tile_bits(self, payload: bytes, header: Header) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """Per tile of ``header``'s image, its (top, left, height, width) and the bits (k, bits, h, w) its
        payload carries, read without running the network (decode and analyses of the codes share it)."""
        layers = unpack_layers(payload)
        quality = int(header.params["quality"])
        if not 1 <= len(layers) <= quality:
            raise PayloadError(f"{self.name}: {len(layers)} layers for a stream of quality {quality}")
        tiles = self.tiles(header.height, header.width)
        shapes = [self._bits_shape(*self.padded(th, tw)) for _, _, th, tw in tiles]
        return list(zip(tiles, self._decode_bits(layers, len(tiles), shapes, str(header.params["entropy"]))))

    @torch.no_grad()
    def _decode_many(self, items: Sequence[tuple[bytes, Header]]) -> list[np.ndarray]:
        outputs, jobs = [], []
        for i, (payload, header) in enumerate(items):
            outputs.append(np.empty((header.height, header.width, 3), dtype=np.uint8))
            for (top, left, th, tw), b in self.tile_bits(payload, header):
                jobs.append((i, top, left, th, tw, b))
        model = self.decoder_model
        dtype = next(model.parameters()).dtype
        for group in _groups(jobs, key=lambda j: j[5].shape, size=self._batch_size):
            codes = from_bits(torch.from_numpy(np.stack([j[5] for j in group])), dtype).to(self._device)
            x_hat = model.decode(list(codes.unbind(dim=1)))
            pixels = x_hat.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for (i, top, left, th, tw, _), px in zip(group, pixels):
                outputs[i][top : top + th, left : left + tw] = px[:th, :tw]
        return outputs


def _variant(codec_name: str, cell: str, framing: str) -> type[RNNCodec]:
    return type(f"RNNCodec_{codec_name}", (RNNCodec,), {"name": codec_name, "cell": cell, "framing": framing,
                                                          "__module__": __name__})


# the eight variants of Toderici et al. 2017's table
GruOneShot = _variant("rnn-gru-oneshot", "gru", "one-shot")
LstmResidualScaling = _variant("rnn-lstm-residual-scaling", "lstm", "residual-scaling")
LstmOneShot = _variant("rnn-lstm-oneshot", "lstm", "one-shot")
LstmAdditive = _variant("rnn-lstm-additive", "lstm", "additive")
ResGruOneShot = _variant("rnn-resgru-oneshot", "residual-gru", "one-shot")
ResGruResidualScaling = _variant("rnn-resgru-residual-scaling", "residual-gru", "residual-scaling")
AssocLstmOneShot = _variant("rnn-assoclstm-oneshot", "assoc-lstm", "one-shot")
GruResidualScaling = _variant("rnn-gru-residual-scaling", "gru", "residual-scaling")

#: codec name -> class (the registry's import paths point at these names)
CODECS: dict[str, type[RNNCodec]] = {cls.name: cls for cls in (
    GruOneShot, LstmResidualScaling, LstmOneShot, LstmAdditive, ResGruOneShot, ResGruResidualScaling,
    AssocLstmOneShot, GruResidualScaling)}
#: codec name -> (cell, framing)
VARIANTS: dict[str, tuple[str, str]] = {name: (cls.cell, cls.framing) for name, cls in CODECS.items()}
