"""Differentiable entropy models used in training: the factorized EntropyBottleneck and a Gaussian
conditional likelihood (Balle et al. 2017/2018), after CompressAI's ``entropy_models.py``.

At coding time these float models are *not* evaluated: :mod:`nicbeam.entropy.tables` turns them into
integer probability tables once, at export, and both encoder and decoder use only those tables.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

LIKELIHOOD_BOUND = 1e-9
SCALE_BOUND = 0.11


class EntropyBottleneck(nn.Module):
    """Per-channel non-parametric density (a monotone MLP CDF per channel), convolved with U(-1/2, 1/2)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        self.filters = tuple(filters)
        dims = (1,) + self.filters + (1,)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cumulative(self, inputs: torch.Tensor, first: int = 0) -> torch.Tensor:
        """inputs: (C, 1, N) -> logits of the CDF at those points, same shape, using the densities of
        channels ``first .. first + C - 1`` (a block of a bank of densities, e.g. one block per quality)."""
        rows = slice(first, first + inputs.shape[0])
        logits = inputs
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix[rows].to(inputs.dtype)), logits) + bias[rows].to(inputs.dtype)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i][rows].to(inputs.dtype)) * torch.tanh(logits)
        return logits

    def likelihood(self, y: torch.Tensor, first: int = 0) -> torch.Tensor:
        """P(y_hat in [y - 1/2, y + 1/2]) per element; y is (B, C, H, W), modelled by channels first..first+C-1."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cumulative(v - 0.5, first)
        upper = self.logits_cumulative(v + 0.5, first)
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lik.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return torch.clamp(lik, min=LIKELIHOOD_BOUND)

    @torch.no_grad()
    def pmf_table(self, lo: int, hi: int) -> np.ndarray:
        """float64 probabilities of the integers lo..hi for every channel: (C, hi - lo + 1), on the CPU."""
        pts = torch.arange(lo, hi + 1, dtype=torch.float64).reshape(1, 1, -1).repeat(self.channels, 1, 1)
        lower = self.logits_cumulative(pts - 0.5)
        upper = self.logits_cumulative(pts + 0.5)
        sign = -torch.sign(lower + upper)
        pmf = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return pmf.reshape(self.channels, -1).cpu().numpy()


def gaussian_likelihood(y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
    """P(y_hat in [y - 1/2, y + 1/2]) under N(mean, scale^2); scales are bounded below by 0.11."""
    v = y - means if means is not None else y
    v = torch.abs(v)
    s = torch.clamp(scales, min=SCALE_BOUND)
    upper = 0.5 * torch.erfc(-((0.5 - v) / s) / math.sqrt(2.0))
    lower = 0.5 * torch.erfc(-((-0.5 - v) / s) / math.sqrt(2.0))
    return torch.clamp(upper - lower, min=LIKELIHOOD_BOUND)
