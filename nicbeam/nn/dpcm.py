"""The MLP-DPCM predictor (training side): per channel, a small MLP maps the integer causal context of a pixel
(see :mod:`nicbeam.codecs.predictive.context`) to the mean and scale of a discretized logistic over its value.

The codec runs an integer export of these MLPs (:mod:`nicbeam.codecs.predictive.intmlp`); this module only
trains them, on the Trainer protocol: ``forward`` returns the per-sub-pixel likelihoods and
``rate_distortion_loss`` is the negative log-likelihood in bits per sub-pixel (the lossless code length).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nicbeam.codecs.predictive.context import CHANNEL_ORDER, NUM_FEATURES, OFFSETS, REACH_LEFT, REACH_RIGHT, REACH_UP

#: integer context features are divided by this before the first layer (the integer export folds it in)
INPUT_SCALE = 32.0
#: the mean offset the MLP outputs is in units of MEAN_SCALE pixels (the integer export folds it in)
MEAN_SCALE = 4.0
#: the scales the coder can represent (log-spaced grid); training clamps log-scale to the same range
SCALE_MIN, SCALE_MAX = 0.2, 64.0


def reference_and_features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, 3, H, W) integer-valued floats in coding order -> (ref (B, 3, H, W), neighbour features
    (B, 36, H, W): offset-major, channel-minor, each minus its channel's reference, 0 outside the tile)."""
    b, _, h, w = x.shape
    xp = F.pad(x, (REACH_LEFT, REACH_RIGHT, REACH_UP, 0))
    ones = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), (REACH_LEFT, REACH_RIGHT, REACH_UP, 0))

    def shifted(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        return t[:, :, REACH_UP + dy : REACH_UP + dy + h, REACH_LEFT + dx : REACH_LEFT + dx + w]

    n, wv, nw = shifted(xp, -1, 0), shifted(xp, 0, -1), shifted(xp, -1, -1)
    mn_, mw_ = shifted(ones, -1, 0) > 0, shifted(ones, 0, -1) > 0
    hi, lo = torch.maximum(n, wv), torch.minimum(n, wv)
    med = torch.where(nw >= hi, lo, torch.where(nw <= lo, hi, n + wv - nw))
    ref = torch.where(mn_ & mw_, med, torch.where(mw_, wv, torch.where(mn_, n, torch.full_like(n, 128.0))))
    feats = []
    for dy, dx in OFFSETS:
        m = shifted(ones, dy, dx)
        feats.append((shifted(xp, dy, dx) - ref) * m)
    return ref, torch.stack(feats, dim=1).reshape(b, len(OFFSETS) * 3, h, w)


def channel_inputs(x: torch.Tensor, ref: torch.Tensor, neigh: torch.Tensor, c: int) -> torch.Tensor:
    """The NUM_FEATURES integer inputs of channel ``c``'s MLP (before INPUT_SCALE)."""
    cur = torch.zeros_like(x[:, :2])
    if c >= 1:
        cur[:, :c] = x[:, :c] - ref[:, :c]
    return torch.cat([neigh, cur, ref[:, c : c + 1] - 128.0], dim=1)


def discretized_logistic_log2(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log2 of the mass of the unit bin around integer ``x`` under a logistic (no edge bins: the coder wraps
    residuals modulo 256, whose mass beyond the pixel range is negligible)."""
    inv_s = torch.exp(-log_scale)
    plus = (x - mean + 0.5) * inv_s
    minus = (x - mean - 0.5) * inv_s
    logp = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(-inv_s))
    return logp.clamp(min=-16 * math.log(2)) / math.log(2)


class MlpDpcm(nn.Module):
    """Three MLPs (one per channel, coding order G, R, B) on the causal context; Trainer protocol."""

    family = "mlp-dpcm"
    lossless = True  # trained on the lossless code length: no lambdas, no distortion
    loss_description = "none (lossless): loss = negative log2-likelihood of the discretized logistic, bits per sub-pixel"
    downsampling = 2  # crops must be even: training images are 2x2 box-downscaled (see ``downscale``)

    def __init__(self, hidden: Sequence[int] = (64, 64), downscale: int = 2) -> None:
        super().__init__()
        self.hidden = [int(v) for v in hidden]
        self.downscale = int(downscale)
        self.lambdas = (1.0,)
        self.num_qualities = 1
        self.mlps = nn.ModuleList()
        for _ in range(3):
            layers: list[nn.Module] = []
            fan_in = NUM_FEATURES
            for width in self.hidden:
                layers += [nn.Conv2d(fan_in, width, 1), nn.ReLU()]
                fan_in = width
            out = nn.Conv2d(fan_in, 2, 1)
            nn.init.zeros_(out.weight)
            nn.init.constant_(out.bias, 0.0)
            out.bias.data[1] = math.log(4.0)
            self.mlps.append(nn.Sequential(*layers, out))

    @property
    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "downscale": self.downscale}

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Trainer input in [0, 1], RGB -> integer values 0..255 in coding order, 2x2 box-downscaled when
        ``downscale`` is 2 (it removes the JPEG 4:2:0 chroma smoothing and block edges of the training photos)."""
        x = torch.round(x * 255.0)[:, list(CHANNEL_ORDER)]
        if self.downscale > 1:
            x = torch.floor(F.avg_pool2d(x, self.downscale) + 0.5)
        return x

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_scale), each (B, 3, H, W), for integer pixels x in coding order (teacher forcing)."""
        ref, neigh = reference_and_features(x)
        means, log_scales = [], []
        for c in range(3):
            o = self.mlps[c](channel_inputs(x, ref, neigh, c) / INPUT_SCALE)
            means.append(ref[:, c] + o[:, 0] * MEAN_SCALE)
            log_scales.append(o[:, 1].clamp(math.log(SCALE_MIN), math.log(SCALE_MAX)))
        return torch.stack(means, 1), torch.stack(log_scales, 1)

    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict[str, Any]:
        px = self.to_pixels(x)
        mean, log_scale = self.predict(px)
        return {"x_hat": x, "pixels": px, "log2_likelihood": discretized_logistic_log2(px, mean, log_scale)}

    def rate_distortion_loss(self, out: dict[str, Any], x: torch.Tensor, lmbda: torch.Tensor,
                             distortion: str = "mse") -> dict[str, torch.Tensor]:
        """Lossless code length: loss = bits per sub-pixel, bpp = bits per pixel (3 sub-pixels); mse 0."""
        bits_per_subpixel = -out["log2_likelihood"].mean()
        return {"loss": bits_per_subpixel, "bpp": 3 * bits_per_subpixel, "mse": torch.zeros(())}

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())

    @torch.no_grad()
    def coding_tensors(self, calibration: torch.Tensor | None = None, precision: str = "float32") -> dict[str, torch.Tensor]:
        """Integer MLPs and probability tables for the codec (see :mod:`nicbeam.codecs.predictive.export`)."""
        from nicbeam.codecs.predictive.export import integer_tensors

        return integer_tensors(self, calibration, precision)
