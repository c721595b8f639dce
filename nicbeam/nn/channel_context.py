"""``charm-hyperprior``: the mean-scale hyperprior with Minnen & Singh's channel-wise autoregressive context
(Minnen, Singh, ICIP 2020, "Channel-wise autoregressive entropy models for learned image compression").

The M latent channels are cut into S slices of M/S channels, coded one after the other; the entropy
parameters of slice ``i`` come from the hyperprior *and* the already decoded slices ``0 .. i-1`` (all their
positions, through a 3x3 convolution), so decoding is S fully parallel passes, not a raster loop. As in
``ckbd-hyperprior`` the parameters are a residual on the hyperprior's::

    params_i = h_s(z)[slice i] + slice_transform_i(cat(h_s(z), y_hat[slices < i]))

with ``slice_transform_i`` a 3x3 convolution, ReLU, 1x1, ReLU, 1x1 (ReLU only, so it maps exactly onto the
integer network), its last layer starting at zero: a model warm-started from an ``mbt2018-mean`` checkpoint of
the same N and M starts exactly where that model is. Left out from the paper: latent residual prediction (its
tanh has no exact integer form here, and the paper measures it as the smallest of the gains).

Coding runs an integer version of ``h_s`` and of each slice transform (:mod:`nicbeam.entropy.channel_context_net`),
built here at export by :meth:`ChannelContextHyperprior.coding_tensors`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nicbeam.entropy.channel_context_net import mean_scale_slice
from nicbeam.nn.layers import ste_round
from nicbeam.nn.models import DEFAULT_LAMBDAS, MeanScaleHyperprior


def slice_transform(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """3x3 conv -> ReLU -> 1x1 -> ReLU -> 1x1, the last layer at zero (the residual starts silent)."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, 1),
    )
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.zero_()
    return net


class ChannelContextHyperprior(MeanScaleHyperprior):
    """Mean-scale hyperprior + channel-wise context over S slices (S parallel passes), gain-unit variable rate."""

    family = "charm-hyperprior"
    downsampling = 64
    #: ``--init-from`` an mbt2018-mean checkpoint gives every tensor but the slice transforms
    warm_start_families = ("mbt2018-mean",)
    #: shipped weights carry only the integer versions of the networks that set the entropy parameters
    omitted_from_weights = ("h_s.", "slice_transforms.")

    def __init__(self, N: int = 64, M: int = 128, lambdas: Sequence[float] = DEFAULT_LAMBDAS, slices: int = 4,
                 hidden: int = 96) -> None:
        super().__init__(N, M, lambdas)
        if slices < 1 or M % slices:
            raise ValueError(f"slices={slices} must divide M={M}")
        self.slices, self.hidden = int(slices), int(hidden)
        k = M // slices
        self.slice_transforms = nn.ModuleList(slice_transform(2 * M + i * k, hidden, 2 * k) for i in range(slices))

    @property
    def config(self):
        return {**super().config, "slices": self.slices, "hidden": self.hidden}

    @property
    def slice_channels(self) -> int:
        return self.M // self.slices

    def slice_parameters(self, hyper: torch.Tensor, i: int, previous: torch.Tensor) -> torch.Tensor:
        """(means, log-scales) of slice ``i`` as one (B, 2k, H, W) tensor, from the hyperprior features and the
        decoded slices before it (``previous``: (B, i*k, H, W) y_hat)."""
        residual = self.slice_transforms[i](torch.cat([hyper, previous], dim=1))
        return mean_scale_slice(hyper, i, self.slice_channels, self.M) + residual

    def latent_parameters(self, y: torch.Tensor, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, log-scales) of all M channels, slice after slice; each slice's context is the earlier slices
        of ``y_hat`` rounded around their means, as the decoder sees them."""
        k = self.slice_channels
        means, log_scales, decoded = [], [], []
        for i in range(self.slices):
            previous = torch.cat(decoded, dim=1) if decoded else hyper[:, :0]
            mu, log_scale = self.slice_parameters(hyper, i, previous).chunk(2, dim=1)
            means.append(mu)
            log_scales.append(log_scale)
            decoded.append(ste_round(y[:, i * k : (i + 1) * k] - mu) + mu)
        return torch.cat(means, dim=1), torch.cat(log_scales, dim=1)

    @torch.no_grad()
    def coding_tensors(self, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
        """Integer tables + the integer h_s and slice transforms, calibrated on ``calibration`` (B, 3, H, W)
        images in [0, 1] at every quality."""
        from nicbeam.entropy.channel_context_net import quantise_channel_context
        from nicbeam.entropy.integer_net import scale_table
        from nicbeam.entropy.tables import gaussian_tables
        from nicbeam.nn.models import coding_tensors_factorized

        k = self.slice_channels
        zs, inputs = [], [[] for _ in range(self.slices)]
        for q in range(self.num_qualities):
            qq = torch.full((calibration.shape[0],), q, dtype=torch.long)
            y = self.analysis(calibration, qq)
            z = torch.round(self.h_a(y))
            hyper = self.h_s(z)
            means, _ = self.latent_parameters(y, hyper)
            y_hat = torch.round(y - means) + means
            zs.append(z)
            for i in range(self.slices):
                inputs[i].append(torch.cat([hyper, y_hat[:, : i * k]], dim=1))
        out = coding_tensors_factorized(self.entropy_bottleneck, "tables.z")
        out.update(quantise_channel_context(self, torch.cat(zs), [torch.cat(v) for v in inputs], "int_hs."))
        out.update({f"tables.gauss.{k}": torch.from_numpy(v) for k, v in gaussian_tables(scale_table()).items()})
        return out
