"""Layers shared by learned codecs: GDN / inverse GDN (Balle et al. 2016) and conv helpers.

Follows the design of CompressAI's ``compressai/layers/gdn.py`` (non-negative reparametrisation of beta and
gamma with a lower bound whose gradient still flows upwards) without depending on CompressAI.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad):
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad < 0)
        return pass_through.to(grad.dtype) * grad, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound) whose gradient is passed when it would move x up (so a stuck value can recover)."""
    return _LowerBound.apply(x, torch.tensor(bound, dtype=x.dtype, device=x.device))


class NonNegative(nn.Module):
    """Maps a free parameter p to max(p, sqrt(min + pedestal))**2 - pedestal >= min."""

    pedestal = 2.0**-18

    def __init__(self, minimum: float = 0.0) -> None:
        super().__init__()
        self.minimum = minimum
        self.bound = (minimum + self.pedestal) ** 0.5

    def init(self, value: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(value + self.pedestal, min=self.pedestal))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return lower_bound(p, self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalisation: y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2) (inverse: times)."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = NonNegative(beta_min)
        self.gamma_reparam = NonNegative(0.0)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()
