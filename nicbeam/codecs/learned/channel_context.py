"""``charm-hyperprior``: mean-scale hyperprior with a channel-wise context model (Minnen & Singh 2020), exact
entropy parameters on every platform, one fully parallel decoding pass per channel slice.

Each tile's blob (range-coded words): z (hyper-latent, factorized integer tables, escapes flushed), then for
each slice in order its symbols ``round(y - mean)`` grouped by scale index (index 0 first; inside a group in
the raster order of (channel, position)) and their escapes. The decoder reads z, then slice after slice
computes the slice's parameters from the hyperprior and the slices before it and reads its symbols. All
parameters come from :mod:`nicbeam.entropy.channel_context_net` (integer networks), so they are bit-identical
to the encoder's whatever its device, threads or batch; the synthesis runs in float64 as for the other learned
codecs.

``refine=N`` (encoder only, as for ``mbt2018-mean``): the latents are optimised against the entropy parameters
of the *unrefined* latents (the slices' context frozen at the unrefined latents: the float slice transforms are
not shipped), then coded with the exact parameters of the refined latents; the decoder is unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from nicbeam.codecs.learned.base import LearnedCodec
from nicbeam.codecs.learned.hyperprior import read_hyper_latent, refine_against, setup_mean_scale_tables
from nicbeam.codecs.learned.latents import TileLatents
from nicbeam.entropy.channel_context_net import IntegerChannelContext
from nicbeam.entropy.coder import Decoder, Encoder
from nicbeam.entropy.grouped import decode_grouped, encode_grouped, encode_per_channel
from nicbeam.entropy.integer_net import y_hat_fixed_point


class ChannelContextHyperpriorCodec(LearnedCodec):
    name = "charm-hyperprior"
    description = ("learned: mean-scale hyperprior + channel-wise context (Minnen & Singh 2020), integer "
                   "entropy-parameter networks, one parallel decoding pass per slice, gain-unit variable rate")
    weights_name = "charm-hyperprior"
    downsampling = 64

    def _setup(self, bundle) -> None:
        setup_mean_scale_tables(bundle)
        net = IntegerChannelContext.from_tensors(bundle.tensors, "int_hs.", bundle.model.M)
        if net.slices != bundle.model.slices:
            raise ValueError(f"weights hold {net.slices} slice transforms, the model {bundle.model.slices}")
        bundle.extras["int_charm"] = net

    def _slices(self, h: torch.Tensor, symbols_of):
        """Symbols, means and scale indices of every slice, each (B, M, H, W), slice after slice: slice ``i``'s
        parameters from ``h`` and the slices before it, then its symbols from ``symbols_of(i, means, indices)``
        (the encoder rounds its latents, the decoder reads the range coder), so both run the same passes."""
        net: IntegerChannelContext = self.bundle.extras["int_charm"]
        symbols, means, indices, decoded = [], [], [], h.new_zeros((h.shape[0], 0, *h.shape[2:]))
        for i in range(net.slices):
            mu, idx = net.slice_parameters(h, i, decoded)
            sym = symbols_of(i, mu, idx)
            decoded = torch.cat([decoded, y_hat_fixed_point(sym, mu)], dim=1)
            symbols.append(sym)
            means.append(mu)
            indices.append(idx)
        return torch.cat(symbols, 1), torch.cat(means, 1), torch.cat(indices, 1)

    def _encode_slices(self, h: torch.Tensor, y: torch.Tensor):
        """``_slices`` of the latents ``y`` (B, M, H, W) as the encoder codes them: ``round(y - mean)``."""
        k = self.bundle.extras["int_charm"].k
        return self._slices(h, lambda i, mu, idx: torch.round(y[:, i * k : (i + 1) * k] - mu).to(torch.int64))

    def _encode_tiles(self, x: torch.Tensor, quality: torch.Tensor,
                      latents_out: list[TileLatents] | None = None) -> list[bytes]:
        ex, model = self.bundle.extras, self.model
        net: IntegerChannelContext = ex["int_charm"]
        y_dev = model.analysis(x, quality)
        z = torch.round(model.h_a(y_dev)).cpu()
        h = net.hyper(z)
        symbols, means, idx = self._encode_slices(h, y_dev.float().cpu())
        if self.params["refine"]:  # against the parameters of the unrefined latents (module docstring)
            y_dev = refine_against(self, y_dev, x, quality, means, idx)
            symbols, means, idx = self._encode_slices(h, y_dev.float().cpu())  # the exact parameters of what is coded
        zs = z.to(torch.int64).numpy()
        k = net.k
        blobs = []
        for b in range(x.shape[0]):
            enc = Encoder()
            encode_per_channel(enc, zs[b], ex["z_tables"])
            for i in range(net.slices):
                part = slice(i * k, (i + 1) * k)
                encode_grouped(enc, symbols[b, part].numpy().ravel(), idx[b, part].numpy().ravel(), ex["g_tables"])
            blobs.append(enc.finish())
            if latents_out is not None:  # y_hat as the decoder computes it: symbols + means in float32
                latents_out.append(TileLatents((symbols[b].to(torch.float32) + means[b]).numpy(), symbols[b].numpy(), zs[b]))
        return blobs

    def _decode_tile_latents(self, blob: bytes, hp: int, wp: int, quality_index: int) -> TileLatents:
        ex = self.bundle.extras
        dec = Decoder(blob)
        z = read_hyper_latent(dec, hp, wp, ex["z_tables"])
        h = ex["int_charm"].hyper(torch.from_numpy(z.astype(np.float64)))
        symbols, means, _ = self._slices(h, lambda i, mu, idx: torch.from_numpy(
            decode_grouped(dec, idx[0].numpy().ravel(), ex["g_tables"]).reshape(idx.shape)))
        return TileLatents((symbols[0].to(torch.float32) + means[0]).numpy(), symbols[0].numpy(), z[0].astype(np.int64))
