"""Learned image autoencoders: Balle 2017 factorized prior and Minnen 2018 mean-scale hyperprior, both
variable rate through gain units (Cui et al. 2021): one per-channel gain vector per quality applied to the
latent before quantisation and an inverse gain applied after it, trained with a random quality per sample.

Training protocol (what :class:`nicbeam.training.trainer.Trainer` relies on) is :class:`LearnedModel`:
``forward(x, quality) -> {"x_hat", "likelihoods"}``, ``rate_distortion_loss(out, x, lmbda)``, ``aux_loss()``,
``config`` (JSON-able constructor arguments) and ``family``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from nicbeam.nn.entropy_models import EntropyBottleneck, gaussian_likelihood
from nicbeam.nn.layers import GDN, conv, deconv, ste_round

#: CompressAI's MSE lambdas for qualities 1..8 (loss = lambda * 255^2 * MSE + bpp).
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
#: CompressAI's MS-SSIM lambdas for qualities 1..8 (loss = lambda * (1 - MS-SSIM) + bpp).
MS_SSIM_LAMBDAS = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)
DISTORTIONS = ("mse", "ms-ssim")


class LearnedModel(nn.Module):
    """Base of trainable codec models (the Trainer protocol)."""

    family: str = ""

    def __init__(self, lambdas: Sequence[float] = DEFAULT_LAMBDAS) -> None:
        super().__init__()
        self.lambdas = tuple(float(v) for v in lambdas)
        self.num_qualities = len(self.lambdas)

    @property
    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def aux_loss(self) -> torch.Tensor:
        """Loss for auxiliary parameters (none here: table supports are found by scanning the CDF)."""
        return torch.zeros(())

    def rate_distortion_loss(
        self, out: dict[str, Any], x: torch.Tensor, lmbda: torch.Tensor, distortion: str = "mse"
    ) -> dict[str, torch.Tensor]:
        """Per-sample ``lambda * 255^2 * MSE + bpp`` (``distortion="mse"``) or ``lambda * (1 - MS-SSIM) + bpp``
        (``"ms-ssim"``, pytorch-msssim, 5 scales: crops of at least 161 pixels), averaged over the batch;
        x in [0, 1]. The result always reports ``mse`` (and ``ms_ssim`` when it is the distortion)."""
        b, _, h, w = x.shape
        bits = sum(torch.log(lik).sum(dim=(1, 2, 3)) for lik in out["likelihoods"].values()) / -math.log(2.0)
        bpp = bits / (h * w)
        mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3))
        if distortion == "mse":
            loss = (lmbda * 255.0**2 * mse + bpp).mean()
            return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean()}
        if distortion != "ms-ssim":
            raise ValueError(f"distortion must be one of {DISTORTIONS}, not {distortion!r}")
        from pytorch_msssim import ms_ssim

        msssim = ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0, size_average=False)
        loss = (lmbda * (1 - msssim) + bpp).mean()
        return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "ms_ssim": msssim.mean()}


def coding_tensors_factorized(eb: EntropyBottleneck, prefix: str) -> dict[str, torch.Tensor]:
    from nicbeam.entropy.tables import factorized_tables

    tables = factorized_tables(eb.pmf_table, eb.channels)
    return {f"{prefix}.{k}": torch.from_numpy(v) for k, v in tables.items()}


def full_precision(t: torch.Tensor):
    """A region where autocast is off: the latents, the entropy models and the rates are computed at the
    parameters' precision when training runs the transforms in bfloat16 (``nicbeam train --autocast bf16``)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


class _GainMixin:
    """Shared by both families: the Balle GDN analysis/synthesis transforms and the gain units around them."""

    def _init_transforms(self, n: int, m: int) -> None:
        self.N, self.M = n, m
        self.g_a = nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
        )

    @property
    def config(self) -> dict[str, Any]:
        return {"N": self.N, "M": self.M, "lambdas": list(self.lambdas)}

    def analysis(self, x: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        g, _ = self.gains(quality, x.shape[0], x.device)
        h = self.g_a[:-1](x)
        with full_precision(h):  # the latents come out of a full-precision layer even under autocast
            y = self.g_a[-1](h.to(self.g_a[-1].weight.dtype))
        return y * g

    def synthesis(self, y_hat: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        _, ig = self.gains(quality, y_hat.shape[0], y_hat.device)
        return self.g_s(y_hat * ig)

    def _init_gains(self, m: int) -> None:
        top = max(self.lambdas)
        init = torch.tensor([math.sqrt(v / top) for v in self.lambdas]).reshape(-1, 1).repeat(1, m)
        self.gain = nn.Parameter(init.clone())
        self.inv_gain = nn.Parameter(1.0 / init)

    def gains(self, quality: torch.Tensor | None, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        if quality is None:
            quality = torch.full((batch,), self.num_qualities - 1, dtype=torch.long, device=device)
        g = torch.abs(self.gain[quality])[:, :, None, None]
        ig = torch.abs(self.inv_gain[quality])[:, :, None, None]
        return g, ig


class FactorizedPrior(_GainMixin, LearnedModel):
    """Balle, Laparra, Simoncelli 2017 / Balle et al. 2018 'factorized prior': GDN conv autoencoder + EB."""

    family = "bmshj2017-factorized"
    downsampling = 16

    def __init__(
        self, N: int = 96, M: int = 160, lambdas: Sequence[float] = DEFAULT_LAMBDAS, prior: str = "shared"
    ) -> None:
        super().__init__(lambdas)
        if prior not in ("shared", "per-quality"):
            raise ValueError(f"prior must be 'shared' or 'per-quality', not {prior!r}")
        self._init_transforms(N, M)
        self.prior = prior
        # 'per-quality': one density per channel *and quality*. A single density shared by all rate points
        # must fit both the narrow latents of quality 1 and the wide ones of quality 8, so its mass at 0 is
        # too low for low rates (measured: all-zero channels still cost 0.05-0.1 bit per element at q1).
        blocks = self.num_qualities if prior == "per-quality" else 1
        self.entropy_bottleneck = EntropyBottleneck(M * blocks)
        self._init_gains(M)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "prior": self.prior}

    def y_likelihood(self, y: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        """Per-element likelihood of (noisy or rounded) latents under the prior of each sample's quality."""
        if self.prior == "shared":
            return self.entropy_bottleneck.likelihood(y)
        if quality is None:
            quality = torch.full((y.shape[0],), self.num_qualities - 1, dtype=torch.long, device=y.device)
        lik = torch.empty_like(y)
        for q in torch.unique(quality).tolist():
            sel = quality == q
            lik[sel] = self.entropy_bottleneck.likelihood(y[sel], first=q * self.M)
        return lik

    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict[str, Any]:
        y = self.analysis(x, quality)
        with full_precision(y):
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y)
            lik = self.y_likelihood(y_noisy, quality)
        x_hat = self.synthesis(ste_round(y), quality)
        return {"x_hat": x_hat, "likelihoods": {"y": lik}}

    @torch.no_grad()
    def coding_tensors(self, calibration: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Integer tables stored with the weights: the factorized prior of y."""
        return coding_tensors_factorized(self.entropy_bottleneck, "tables.y")


class MeanScaleHyperprior(_GainMixin, LearnedModel):
    """Minnen, Balle, Toderici 2018 mean-scale hyperprior (without context model), gain-unit variable rate.

    The hyper-synthesis ``h_s`` ends in ``2 M`` channels (means, log-scales). Training uses the float
    network; at export it is quantised (post-training, calibrated on training crops) to the integer network
    of :mod:`nicbeam.entropy.integer_net`, which encoder and decoder both run, so its outputs are bit-exact
    everywhere. Quantisation error is small (weights 14 bit, activations 16 bit, means 1/256, log-scale bins
    of 0.105) and only costs a little rate; it never causes a mismatch.
    """

    family = "mbt2018-mean"
    downsampling = 64
    #: shipped weights carry only the integer h_s (the float one stays in training checkpoints)
    omitted_from_weights = ("h_s.",)

    def __init__(self, N: int = 96, M: int = 128, lambdas: Sequence[float] = DEFAULT_LAMBDAS) -> None:
        super().__init__(lambdas)
        self._init_transforms(N, M)
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)
        )
        # h_s: ReLU only, so it maps onto the integer network exactly (Balle, Johnston, Minnen 2019).
        self.h_s = nn.Sequential(
            deconv(N, N), nn.ReLU(inplace=True), deconv(N, N * 3 // 2), nn.ReLU(inplace=True),
            conv(N * 3 // 2, 2 * M, 3, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self._init_gains(M)

    def latent_parameters(self, y: torch.Tensor, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, log-scales) of the latents ``y`` given ``hyper = h_s(z)``: here h_s predicts them directly
        (a context model overrides this to use ``y`` too)."""
        means, log_scales = hyper.chunk(2, dim=1)
        return means, log_scales

    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict[str, Any]:
        y = self.analysis(x, quality)
        with full_precision(y):
            z = self.h_a(y)
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
            z_lik = self.entropy_bottleneck.likelihood(z_noisy)
            means, log_scales = self.latent_parameters(y, self.h_s(ste_round(z)))
            scales = torch.exp(log_scales)  # h_s predicts log-scales; the integer version indexes a log-spaced table
            if self.training:
                y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            else:
                y_noisy = torch.round(y - means) + means
            y_lik = gaussian_likelihood(y_noisy, scales, means)
            y_hat = ste_round(y - means) + means
        x_hat = self.synthesis(y_hat, quality)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    @torch.no_grad()
    def coding_tensors(self, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
        """Integer tables + integer h_s stored with the weights; ``calibration``: images (B, 3, H, W) in [0, 1]."""
        from nicbeam.entropy.integer_net import IntegerHyperSynthesis, scale_table
        from nicbeam.entropy.tables import gaussian_tables

        out = coding_tensors_factorized(self.entropy_bottleneck, "tables.z")
        zs = []
        for q in range(self.num_qualities):
            qq = torch.full((calibration.shape[0],), q, dtype=torch.long)
            zs.append(torch.round(self.h_a(self.analysis(calibration, qq))))
        int_hs = IntegerHyperSynthesis.from_float(self.h_s, torch.cat(zs))
        out.update(int_hs.tensors("int_hs."))
        out.update({f"tables.gauss.{k}": torch.from_numpy(v) for k, v in gaussian_tables(scale_table()).items()})
        return out


MODEL_CLASSES = {cls.family: cls for cls in (FactorizedPrior, MeanScaleHyperprior)}
