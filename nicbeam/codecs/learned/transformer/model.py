"""The trainable CNN-Transformer model (family ``tcm-hyperprior``): the ``mbt2018-mean`` mean-scale hyperprior
with Transformer-CNN mixture stages (:mod:`.blocks`) inside its analysis and synthesis transforms.

Layout (N channels, M latents; ``/k`` = resolution)::

    g_a: conv5 s2, GDN (/2) -> conv5 s2, GDN (/4) -> mix stage (/4) -> conv5 s2, GDN (/8) -> mix stage (/8) -> conv5 s2 (/16)
    g_s: deconv5 s2, IGDN (/8) -> mix stage (/8) -> deconv5 s2, IGDN (/4) -> mix stage (/4) -> deconv5 s2, IGDN -> deconv5 s2

Each mix stage is ``depth`` mixture blocks alternating W-MSA and SW-MSA. The convolutional layers, the
hyperprior (h_a, integer h_s, z density) and the gain units are those of :class:`MeanScaleHyperprior`, under
the same parameter names, so ``nicbeam train --init-from`` an ``mbt2018-mean`` checkpoint copies all of them,
and (mixture blocks start as the identity) the warm-started model starts exactly where that model is.
Everything else -- forward, loss, gains, export of the integer hyper-synthesis -- is inherited.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from nicbeam.codecs.learned.transformer.blocks import mixture_stage
from nicbeam.nn.models import DEFAULT_LAMBDAS, MeanScaleHyperprior, full_precision


class TransformerHyperprior(MeanScaleHyperprior):
    """Mean-scale hyperprior whose transforms mix convolutions with Swin window attention (Liu et al. 2023)."""

    family = "tcm-hyperprior"
    downsampling = 64
    #: ``--init-from`` checkpoints of these families also give their entropy-model densities (same z density)
    warm_start_families = ("mbt2018-mean",)

    def __init__(
        self, N: int = 64, M: int = 128, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
        window: int = 8, heads: int = 2, depth: int = 2,
    ) -> None:
        super().__init__(N, M, lambdas)
        self.window, self.heads, self.depth = window, heads, depth
        self.a_mix = nn.ModuleList([mixture_stage(N, heads, window, depth) for _ in range(2)])  # at /4, /8
        self.s_mix = nn.ModuleList([mixture_stage(N, heads, window, depth) for _ in range(2)])  # at /8, /4

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "window": self.window, "heads": self.heads, "depth": self.depth}

    def analysis(self, x: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        g, _ = self.gains(quality, x.shape[0], x.device)
        h = self.a_mix[0](self.g_a[:4](x))
        h = self.a_mix[1](self.g_a[4:6](h))
        with full_precision(h):  # the latents come out of a full-precision layer even under autocast
            y = self.g_a[6](h.to(self.g_a[6].weight.dtype))
        return y * g

    def synthesis(self, y_hat: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        _, ig = self.gains(quality, y_hat.shape[0], y_hat.device)
        h = self.s_mix[0](self.g_s[:2](y_hat * ig))
        h = self.s_mix[1](self.g_s[2:4](h))
        return self.g_s[4:](h)
