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


class SubpixelConvTranspose2d(nn.Module):
    """A stride-2 ``ConvTranspose2d`` (odd kernel, padding k//2, output_padding 1) computed as one ordinary
    convolution with 4x the output channels followed by a pixel shuffle: the same sums of the same products.

    Why: PyTorch's CPU float64 transposed convolution takes a slow path; float64 ``conv2d`` is faster for g_s's
    wide layers (see :func:`subpixel_deconvs`), and the exact-precision decoder runs g_s in float64. Each output phase
    (row parity, column parity) of the transposed convolution is a correlation of the input with the taps of
    the kernel of that parity, so the four phases become the four channel groups ``pixel_shuffle`` interleaves.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pad: int) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.pad = pad

    @classmethod
    def from_deconv(cls, deconv: nn.ConvTranspose2d) -> "SubpixelConvTranspose2d":
        k = deconv.kernel_size[0]
        if (deconv.kernel_size != (k, k) or deconv.stride != (2, 2) or deconv.padding != (k // 2, k // 2)
                or deconv.output_padding != (1, 1) or k % 2 == 0 or deconv.dilation != (1, 1) or deconv.groups != 1):
            raise ValueError(f"not a stride-2 'same' transposed convolution: {deconv}")
        w = deconv.weight.detach()  # (cin, cout, k, k)
        cin, cout = w.shape[:2]
        half = k // 2
        t = (half + 1) // 2  # input offsets -t..t reach some output phase
        taps = 2 * t + 1
        sub = w.new_zeros(cout, 2, 2, cin, taps, taps)
        for ry in range(2):
            for a in range(-t, t + 1):
                ky = ry + half - 2 * a  # output row 2u+ry takes input row u+a through kernel row ky
                if not 0 <= ky < k:
                    continue
                for rx in range(2):
                    for b in range(-t, t + 1):
                        kx = rx + half - 2 * b
                        if 0 <= kx < k:
                            sub[:, ry, rx, :, a + t, b + t] = w[:, :, ky, kx].T
        bias = None if deconv.bias is None else deconv.bias.detach().repeat_interleave(4)
        return cls(sub.reshape(cout * 4, cin, taps, taps).contiguous(), bias, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=self.pad), 2)


def subpixel_deconvs(module: nn.Module, min_out_channels: int = 16) -> nn.Module:
    """Replace the stride-2 ``ConvTranspose2d`` layers under ``module`` that have at least ``min_out_channels``
    outputs by :class:`SubpixelConvTranspose2d`. Measured in float64 on one CPU thread, g_s of the shipped
    hyperprior: its 64-channel layers 1.3-1.7x faster, its 3-channel output layer 4.8x *slower* (a thin GEMM)."""
    for name, child in module.named_children():
        if isinstance(child, nn.ConvTranspose2d):
            if child.out_channels >= min_out_channels:
                setattr(module, name, SubpixelConvTranspose2d.from_deconv(child))
        else:
            subpixel_deconvs(child, min_out_channels)
    return module
