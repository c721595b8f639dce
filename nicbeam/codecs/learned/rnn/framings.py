"""Reconstruction framings of Toderici et al. 2017: how the decoder's output of each iteration becomes the
image, and what the encoder sees next.

* ``one-shot``: the decoder outputs the whole image every iteration, ``x_t = D_t``; the encoder is fed the
  residual ``r_{t-1} = x - x_{t-1}`` (``r_0 = x``). The decoder's state carries the earlier iterations.
* ``additive``: the decoder outputs a correction, ``x_t = x_{t-1} + D_t``.
* ``residual-scaling``: additive, with the residual scaled up by a gain ``g_t`` predicted from the
  reconstruction so far (so both sides know it): the encoder sees ``g_t r_{t-1}``, ``x_t = x_{t-1} + D_t / g_t``.
  The gain net follows the paper (stride-2 convolutions, ELU + 2 so that ``g > 1``), one gain per 16x16 block.

Images here are centred, ``x - 0.5`` in [-0.5, 0.5].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Framing(nn.Module):
    """Base: ``encoder_input(residual, x_prev)`` and ``reconstruct(x_prev, decoded)``; gains cached per step."""

    name = ""

    def begin(self, x_prev: torch.Tensor) -> None:
        """Called at the start of each iteration with the reconstruction so far."""

    def encoder_input(self, residual: torch.Tensor) -> torch.Tensor:
        return residual

    def reconstruct(self, x_prev: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class OneShot(Framing):
    name = "one-shot"

    def reconstruct(self, x_prev, decoded):
        return decoded


class Additive(Framing):
    name = "additive"

    def reconstruct(self, x_prev, decoded):
        return x_prev + decoded


class ResidualScaling(Additive):
    name = "residual-scaling"

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for _ in range(4):  # 16x downsampling: one gain per 16x16 block
            layers += [nn.Conv2d(ch, width, 3, 2, padding=1), nn.ELU()]
            ch = width
        layers.append(nn.Conv2d(ch, 1, 1))
        self.net = nn.Sequential(*layers)
        self._gain: torch.Tensor | None = None

    def gain(self, x_prev: torch.Tensor) -> torch.Tensor:
        """Per-pixel gain (B, 1, H, W) >= 1, constant over each 16x16 block."""
        g = F.elu(self.net(x_prev)) + 2.0
        return g.repeat_interleave(16, dim=2).repeat_interleave(16, dim=3)[..., : x_prev.shape[2], : x_prev.shape[3]]

    def begin(self, x_prev):
        self._gain = self.gain(x_prev)

    def encoder_input(self, residual):
        return residual * self._gain

    def reconstruct(self, x_prev, decoded):
        return x_prev + decoded / self._gain


FRAMINGS: dict[str, type[Framing]] = {f.name: f for f in (OneShot, Additive, ResidualScaling)}


def make_framing(name: str) -> Framing:
    if name not in FRAMINGS:
        raise ValueError(f"unknown framing {name!r}; choose one of {', '.join(FRAMINGS)}")
    return FRAMINGS[name]()
