"""The binarizer of Toderici et al.: a 1x1 convolution to ``bits`` channels, tanh, then sign.

In training the sign is replaced by stochastic binarization (Raiko et al. 2015): ``b = +1`` with probability
``(1 + t) / 2`` else ``-1``, an unbiased estimate of ``t = tanh(.)``, with the gradient passed straight
through to ``t``. At coding time ``b = sign(t)`` with ``sign(0) = +1``, so every output is exactly +-1.
"""

from __future__ import annotations

import torch
from torch import nn


class Binarizer(nn.Module):
    def __init__(self, in_ch: int, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.proj = nn.Conv2d(in_ch, bits, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """+-1 codes (B, bits, H, W): stochastic with a straight-through gradient in training, sign otherwise."""
        t = torch.tanh(self.proj(h))
        if self.training:
            b = torch.where(torch.rand_like(t) < (1 + t) / 2, 1.0, -1.0).to(t.dtype)
            return b + (t - t.detach())  # exactly +-1, gradient of t
        return sign(t)


def sign(t: torch.Tensor) -> torch.Tensor:
    """+1 where t >= 0, -1 elsewhere (never 0)."""
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


def to_bits(codes: torch.Tensor) -> torch.Tensor:
    """+-1 codes -> uint8 bits (1 for +1)."""
    return (codes > 0).to(torch.uint8)


def from_bits(bits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 bits -> +-1 codes."""
    return bits.to(dtype) * 2 - 1
