"""``mbt2018-mean``: Minnen et al. 2018 mean-scale hyperprior (no context model), exact on every platform.

Each tile's blob: z (hyper-latent, factorized integer tables, escapes flushed), then the symbols
``round(y - mean)`` grouped by scale index (index 0 first; raster order over channel, row, column inside a
group), then their escapes. Means and scale indices come from the integer hyper-synthesis
(:mod:`nicbeam.entropy.integer_net`) evaluated exactly from z, so encoder and decoder agree bit for bit
whatever device, thread count or batch the encoder used; y_hat = symbol + mean is exact in float32.
"""

from __future__ import annotations

import numpy as np
import torch

from nicbeam.codecs.learned.base import LearnedCodec
from nicbeam.codecs.learned.latents import TileLatents
from nicbeam.entropy.coder import Decoder, Encoder, TableSet
from nicbeam.entropy.grouped import decode_grouped, decode_per_channel, encode_grouped, encode_per_channel
from nicbeam.entropy.integer_net import IntegerHyperSynthesis, scale_table
from nicbeam.nn.entropy_models import gaussian_likelihood


def setup_mean_scale_tables(bundle) -> None:
    """What every mean-scale hyperprior codec codes with, into ``bundle.extras``: z's factorized tables, the
    Gaussian tables of the scale indices, and each scale index's scale (for ``refine``)."""
    ex = bundle.extras
    ex["z_tables"] = TableSet.from_tensors(bundle.tensors, "tables.z")
    ex["g_tables"] = TableSet.from_tensors(bundle.tensors, "tables.gauss")
    ex["scale_values"] = torch.from_numpy(scale_table()).to(torch.float32)  # scale of each scale index


def read_hyper_latent(dec: Decoder, hp: int, wp: int, tables: TableSet) -> np.ndarray:
    """The hyper-latent z (1, N, hp/64, wp/64) int64 of a tile of padded size hp x wp, read from the start of its
    blob (channel after channel, then its escapes), as every mean-scale hyperprior codec writes it."""
    zh, zw = hp // 64, wp // 64
    return decode_per_channel(dec, zh * zw, tables).reshape(1, -1, zh, zw)


def refine_against(codec: LearnedCodec, y: torch.Tensor, x: torch.Tensor, quality: torch.Tensor,
                   means: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``y`` refined (``codec.params["refine"]`` steps) against the Gaussian rate of fixed entropy parameters
    (means, scale indices; on the CPU), the ones the decoder computes for the unrefined latents."""
    dev_means = means.to(y.device)
    scales = codec.bundle.extras["scale_values"][indices].to(y.device)
    return codec._refine(y, x, quality, dev_means, lambda y_tilde: -torch.log2(
        gaussian_likelihood(y_tilde, scales, dev_means)).sum(dim=(1, 2, 3)))


class MeanScaleHyperpriorCodec(LearnedCodec):
    name = "mbt2018-mean"
    description = "learned: Minnen 2018 mean-scale hyperprior, integer hyper-synthesis, gain-unit variable rate"
    weights_name = "mbt2018-mean"
    downsampling = 64

    def _setup(self, bundle) -> None:
        setup_mean_scale_tables(bundle)
        bundle.extras["int_hs"] = IntegerHyperSynthesis.from_tensors(bundle.tensors, "int_hs.")

    def _encode_tiles(self, x: torch.Tensor, quality: torch.Tensor,
                      latents_out: list[TileLatents] | None = None) -> list[bytes]:
        ex, model = self.bundle.extras, self.model
        y = model.analysis(x, quality)
        z = torch.round(model.h_a(y)).cpu()
        means, idx = ex["int_hs"].entropy_parameters(z, model.M)
        if self.params["refine"]:  # y given z: the entropy parameters stay those the decoder will compute
            y = refine_against(self, y, x, quality, means, idx)
        sym = torch.round(y.float().cpu() - means).to(torch.int64).numpy()
        zs = z.to(torch.int64).numpy()
        idx = idx.numpy()
        blobs = []
        for b in range(x.shape[0]):
            enc = Encoder()
            encode_per_channel(enc, zs[b], ex["z_tables"])
            encode_grouped(enc, sym[b].ravel(), idx[b].ravel(), ex["g_tables"])
            blobs.append(enc.finish())
            if latents_out is not None:  # y_hat computed as the decoder computes it: symbols + means in float32
                y_hat = torch.from_numpy(sym[b].astype(np.float32)) + means[b]
                latents_out.append(TileLatents(y_hat.numpy(), sym[b], zs[b]))
        return blobs

    def _decode_tile_latents(self, blob: bytes, hp: int, wp: int, quality_index: int) -> TileLatents:
        ex, model = self.bundle.extras, self.model
        dec = Decoder(blob)
        z = torch.from_numpy(read_hyper_latent(dec, hp, wp, ex["z_tables"]).astype(np.float64))
        means, idx = ex["int_hs"].entropy_parameters(z, model.M)
        symbols = decode_grouped(dec, idx[0].numpy().ravel(), ex["g_tables"]).reshape(means.shape[1:])
        y_hat = torch.from_numpy(symbols.astype(np.float32)) + means[0]
        return TileLatents(y_hat.numpy(), symbols, z[0].numpy().astype(np.int64))
