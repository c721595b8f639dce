"""``ckbd-hyperprior``: the mean-scale hyperprior with a wider latent and He et al.'s checkerboard context model
(He, Zheng, Sun, Wang, Qin, CVPR 2021, "Checkerboard context model for efficient learned image compression").

The latent grid is split like a checkerboard: *anchors* (``(row + col) % 2 == 0``) are coded first with
entropy parameters from the hyperprior alone; *non-anchors* are coded second, conditioned on the hyperprior and
on a masked 5x5 convolution over the decoded anchors. Both passes are fully parallel (no raster-order loop).

Entropy parameters (means, log-scales; 2M channels) are a residual on the mean-scale hyperprior's::

    params = h_s(z) + entropy_parameters(cat(h_s(z), ctx))      ctx = 0 for anchors,
                                                                 ctx = context(anchors of y_hat) for non-anchors

with ``entropy_parameters`` three 1x1 convolutions (4M -> 10M/3 -> 8M/3 -> 2M, ReLU between: ReLU, unlike
He et al.'s LeakyReLU, so it maps exactly onto the integer network) whose last layer starts at zero. A model
warm-started from an ``mbt2018-mean`` checkpoint of the same N and M therefore starts exactly where that model
is, and learns how much the context should move each parameter.

Coding runs an integer version of ``h_s``, ``context`` and ``entropy_parameters``
(:mod:`nicbeam.entropy.checkerboard_net`), built here at export by :meth:`coding_tensors`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nicbeam.nn.layers import ste_round
from nicbeam.nn.models import DEFAULT_LAMBDAS, MeanScaleHyperprior


def anchor_mask(height: int, width: int, device=None) -> torch.Tensor:
    """(1, 1, H, W) bool: True on anchors, the latents of the first pass (``(row + col) % 2 == 0``)."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return ((rows + cols) % 2 == 0)[None, None]


class CheckerboardContext(nn.Conv2d):
    """5x5 convolution over the anchor map whose taps are only those that reach an anchor from a non-anchor
    (odd ``dy + dx``: 12 of 25), so the context of a non-anchor depends on decoded anchors only."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 5) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        k = torch.arange(kernel)
        self.register_buffer("mask", ((k[:, None] + k[None, :]) % 2 == 1).to(torch.float32), persistent=False)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)

    def as_plain_conv(self) -> nn.Sequential:
        """A plain ``Conv2d`` with the mask multiplied in (what the integer network quantises)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, padding=self.padding)
        with torch.no_grad():
            conv.weight.copy_(self.masked_weight())
            conv.bias.copy_(self.bias)
        return nn.Sequential(conv)


class CheckerboardHyperprior(MeanScaleHyperprior):
    """Mean-scale hyperprior + checkerboard context (two parallel passes), gain-unit variable rate."""

    family = "ckbd-hyperprior"
    downsampling = 64
    #: ``--init-from`` an mbt2018-mean checkpoint also gives its z density (same hyperprior)
    warm_start_families = ("mbt2018-mean",)
    #: shipped weights carry only the integer versions of the networks that set the entropy parameters
    omitted_from_weights = ("h_s.", "context.", "entropy_parameters.")

    def __init__(self, N: int = 64, M: int = 192, lambdas: Sequence[float] = DEFAULT_LAMBDAS) -> None:
        super().__init__(N, M, lambdas)
        self.context = CheckerboardContext(M, 2 * M)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * M, 10 * M // 3, 1), nn.ReLU(inplace=True),
            nn.Conv2d(10 * M // 3, 8 * M // 3, 1), nn.ReLU(inplace=True),
            nn.Conv2d(8 * M // 3, 2 * M, 1),
        )
        with torch.no_grad():  # the residual branch starts at zero: params = h_s(z) at first
            self.entropy_parameters[-1].weight.zero_()
            self.entropy_parameters[-1].bias.zero_()

    def parameters_from(self, hyper: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """Entropy parameters (B, 2M, H, W) from hyperprior features and context features (float)."""
        return hyper + self.entropy_parameters(torch.cat([hyper, ctx], dim=1))

    def checkerboard_parameters(self, y: torch.Tensor, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means, log-scales, anchor mask) for the latents ``y``: anchors from the hyperprior, non-anchors
        also from the context of the anchors of ``y_hat`` (rounded around their means, as the decoder sees them)."""
        anchors = anchor_mask(y.shape[-2], y.shape[-1], y.device)
        p_anchor = self.parameters_from(hyper, torch.zeros_like(hyper))
        mu_anchor = p_anchor[:, : self.M]
        y_hat_anchor = (ste_round(y - mu_anchor) + mu_anchor) * anchors
        p_other = self.parameters_from(hyper, self.context(y_hat_anchor))
        params = torch.where(anchors, p_anchor, p_other)
        means, log_scales = params.chunk(2, dim=1)
        return means, log_scales, anchors

    def latent_parameters(self, y: torch.Tensor, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, log-scales) from the two checkerboard passes, for the mean-scale hyperprior's training forward."""
        means, log_scales, _ = self.checkerboard_parameters(y, hyper)
        return means, log_scales

    @torch.no_grad()
    def coding_tensors(self, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
        """Integer tables + the integer h_s, context and entropy-parameter networks, calibrated on
        ``calibration`` (B, 3, H, W) images in [0, 1] at every quality."""
        from nicbeam.entropy.checkerboard_net import quantise_checkerboard
        from nicbeam.entropy.integer_net import scale_table
        from nicbeam.entropy.tables import gaussian_tables
        from nicbeam.nn.models import coding_tensors_factorized

        zs, anchor_maps, ep_inputs = [], [], []
        for q in range(self.num_qualities):
            qq = torch.full((calibration.shape[0],), q, dtype=torch.long)
            y = self.analysis(calibration, qq)
            z = torch.round(self.h_a(y))
            hyper = self.h_s(z)
            means, _, anchors = self.checkerboard_parameters(y, hyper)
            y_hat_anchor = (torch.round(y - means) + means) * anchors
            ctx = self.context(y_hat_anchor)
            zs.append(z)
            anchor_maps.append(y_hat_anchor)
            ep_inputs += [torch.cat([hyper, torch.zeros_like(hyper)], 1), torch.cat([hyper, ctx], 1)]
        out = coding_tensors_factorized(self.entropy_bottleneck, "tables.z")
        out.update(quantise_checkerboard(self, torch.cat(zs), torch.cat(anchor_maps), torch.cat(ep_inputs), "int_hs."))
        out.update({f"tables.gauss.{k}": torch.from_numpy(v) for k, v in gaussian_tables(scale_table()).items()})
        return out
