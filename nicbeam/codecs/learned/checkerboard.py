"""``ckbd-hyperprior``: mean-scale hyperprior with a checkerboard context model (He et al. CVPR 2021), exact
entropy parameters on every platform, two fully parallel decoding passes.

Each tile's blob (range-coded words): z (hyper-latent, factorized integer tables, escapes flushed), then the
*anchor* symbols ``round(y - mean)`` grouped by scale index (index 0 first; inside a group in the raster order
of (channel, anchor position)) and their escapes, then the *non-anchor* symbols grouped the same way and their
escapes. The decoder reads z, computes the anchors' parameters, reads the anchors (escapes included: they are
the context), computes the non-anchors' parameters from them, and reads the non-anchors. All parameters come
from :mod:`nicbeam.entropy.checkerboard_net` (integer networks), so they are bit-identical to the encoder's
whatever its device, threads or batch; the synthesis runs in float64 as for the other learned codecs.

``refine=N`` (encoder only, as for ``mbt2018-mean``): the latents are optimised against the entropy parameters
of the *unrefined* latents (the non-anchors' context frozen at the unrefined anchors: the float context network
is not shipped), then coded with the exact parameters of the refined latents; the decoder is unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from nicbeam.codecs.learned.base import LearnedCodec
from nicbeam.codecs.learned.latents import TileLatents
from nicbeam.codecs.learned.hyperprior import read_hyper_latent, refine_against, setup_mean_scale_tables
from nicbeam.entropy.checkerboard_net import IntegerCheckerboard, y_hat_fixed_point
from nicbeam.entropy.coder import Decoder, Encoder
from nicbeam.entropy.grouped import decode_grouped, encode_grouped, encode_per_channel
from nicbeam.nn.checkerboard import anchor_mask


class CheckerboardHyperpriorCodec(LearnedCodec):
    name = "ckbd-hyperprior"
    description = ("learned: mean-scale hyperprior + checkerboard context (He et al. 2021), integer entropy-parameter "
                   "networks, two parallel decoding passes, gain-unit variable rate")
    weights_name = "ckbd-hyperprior"
    downsampling = 64

    def _setup(self, bundle) -> None:
        setup_mean_scale_tables(bundle)
        bundle.extras["int_ckbd"] = IntegerCheckerboard.from_tensors(bundle.tensors, "int_hs.", bundle.model.M)

    def _encode_tiles(self, x: torch.Tensor, quality: torch.Tensor,
                      latents_out: list[TileLatents] | None = None) -> list[bytes]:
        ex, model = self.bundle.extras, self.model
        net: IntegerCheckerboard = ex["int_ckbd"]
        y_dev = model.analysis(x, quality)
        z = torch.round(model.h_a(y_dev)).cpu()
        h = net.hyper(z)
        anchors = anchor_mask(*y_dev.shape[-2:])[0, 0]
        others = ~anchors
        means_a, idx_a = net.anchor_parameters(h, anchors)

        def second_pass(y: torch.Tensor):
            sym_a = torch.round(y[:, :, anchors] - means_a).to(torch.int64)
            return (sym_a, *net.non_anchor_parameters(h, anchors, y_hat_fixed_point(sym_a, means_a)))

        sym_a, means_n, idx_n = second_pass(y_dev.float().cpu())
        if self.params["refine"]:  # against the parameters of the unrefined latents (module docstring)
            y_dev = refine_against(self, y_dev, x, quality, _full_map(anchors, means_a, means_n),
                                   _full_map(anchors, idx_a, idx_n))
            sym_a, means_n, idx_n = second_pass(y_dev.float().cpu())  # the exact parameters of what is coded
        y = y_dev.float().cpu()
        sym_n = torch.round(y[:, :, others] - means_n).to(torch.int64)
        zs = z.to(torch.int64).numpy()
        blobs = []
        for b in range(x.shape[0]):
            enc = Encoder()
            encode_per_channel(enc, zs[b], ex["z_tables"])
            encode_grouped(enc, sym_a[b].numpy().ravel(), idx_a[b].numpy().ravel(), ex["g_tables"])
            encode_grouped(enc, sym_n[b].numpy().ravel(), idx_n[b].numpy().ravel(), ex["g_tables"])
            blobs.append(enc.finish())
            if latents_out is not None:  # y_hat as the decoder computes it: symbols + means in float32
                latents_out.append(_tile_latents(anchors, sym_a[b], means_a[b], sym_n[b], means_n[b], zs[b]))
        return blobs

    def _decode_tile_latents(self, blob: bytes, hp: int, wp: int, quality_index: int) -> TileLatents:
        ex = self.bundle.extras
        net: IntegerCheckerboard = ex["int_ckbd"]
        dec = Decoder(blob)
        z = read_hyper_latent(dec, hp, wp, ex["z_tables"])
        h = net.hyper(torch.from_numpy(z.astype(np.float64)))
        anchors = anchor_mask(hp // 16, wp // 16)[0, 0]
        means_a, idx_a = net.anchor_parameters(h, anchors)
        sym_a = torch.from_numpy(decode_grouped(dec, idx_a[0].numpy().ravel(), ex["g_tables"]).reshape(idx_a.shape))
        means_n, idx_n = net.non_anchor_parameters(h, anchors, y_hat_fixed_point(sym_a, means_a))
        sym_n = torch.from_numpy(decode_grouped(dec, idx_n[0].numpy().ravel(), ex["g_tables"]).reshape(idx_n.shape))
        return _tile_latents(anchors, sym_a[0], means_a[0], sym_n[0], means_n[0], z[0].astype(np.int64))


def _full_map(anchors: torch.Tensor, at_anchors: torch.Tensor, at_others: torch.Tensor) -> torch.Tensor:
    """(..., H, W) map from its values (..., P) at the anchors and (..., P') at the other positions."""
    out = at_anchors.new_zeros((*at_anchors.shape[:-1], *anchors.shape))
    out[..., anchors], out[..., ~anchors] = at_anchors, at_others
    return out


def _tile_latents(anchors: torch.Tensor, sym_a: torch.Tensor, means_a: torch.Tensor, sym_n: torch.Tensor,
                  means_n: torch.Tensor, z: np.ndarray) -> TileLatents:
    """One tile's (M, H, W) symbols and ``y_hat = symbol + mean`` (float32, exact) from the two passes."""
    symbols = _full_map(anchors, sym_a, sym_n)
    means = _full_map(anchors, means_a, means_n)
    y_hat = symbols.to(torch.float32) + means
    return TileLatents(y_hat.numpy(), symbols.numpy(), z)
