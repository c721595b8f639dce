"""The conv-RNN encoder and decoder of Toderici et al. 2017 ("full resolution" layout), scaled down to train
on CPUs, and :class:`RNNCompressionModel`, the model ``nicbeam train`` trains (family ``toderici-rnn``).

Encoder: conv 3x3/2 -> three recurrent cells of stride 2 -> binarizer: 32 bits per 16x16 block and
iteration. Decoder: conv 1x1 -> four recurrent cells each followed by depth-to-space x2 -> conv 1x1 to RGB.
The paper's widths are 64/256/512/512 (encoder) and 512/512/256/128 (decoder); the defaults here are
32/64/96/96 and 96/96/64/32 (about 1/30 of the operations), so that a 32x32-patch step with 16 iterations
runs in well under a second on one CPU thread.

Training follows the paper: every step runs all iterations on the residual, the loss is the mean over
iterations of the L1 (or L2) norm of the residual, with stochastic binarization. The bit context model
(:mod:`.context`) trains alongside on the detached codes; it does not influence the autoencoder.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nicbeam.codecs.learned.rnn.binarizer import Binarizer
from nicbeam.codecs.learned.rnn.cells import make_cell
from nicbeam.codecs.learned.rnn.context import BitContextModel
from nicbeam.codecs.learned.rnn.framings import make_framing

BLOCK = 16
LOSSES = ("l1", "l2")


class RNNEncoder(nn.Module):
    def __init__(self, cell: str, channels: Sequence[int], bits: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels[0], 3, 2, padding=1)
        self.cells = nn.ModuleList(
            make_cell(cell, channels[i], channels[i + 1], kernel=3, stride=2, hidden_kernel=1) for i in range(3)
        )
        self.binarizer = Binarizer(channels[3], bits)

    def forward(self, r: torch.Tensor, states: list | None) -> tuple[torch.Tensor, list]:
        states = states or [None] * len(self.cells)
        h = self.conv(r)
        new = []
        for cell, state in zip(self.cells, states):
            h, s = cell(h, state)
            new.append(s)
        return self.binarizer(h), new


class RNNDecoder(nn.Module):
    def __init__(self, cell: str, channels: Sequence[int], bits: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(bits, channels[0], 1)
        ins = [channels[0]] + [c // 4 for c in channels[:3]]
        self.cells = nn.ModuleList(
            make_cell(cell, ins[i], channels[i], kernel=3, stride=1, hidden_kernel=1) for i in range(4)
        )
        self.out = nn.Conv2d(channels[3] // 4, 3, 1)

    def forward(self, codes: torch.Tensor, states: list | None) -> tuple[torch.Tensor, list]:
        states = states or [None] * len(self.cells)
        h = self.conv(codes)
        new = []
        for cell, state in zip(self.cells, states):
            h, s = cell(h, state)
            new.append(s)
            h = F.pixel_shuffle(h, 2)
        return self.out(h), new


class RNNCompressionModel(nn.Module):
    """Encoder + binarizer + decoder + framing, run for ``iterations`` steps; plus the bit context model.

    Follows the Trainer protocol (:mod:`nicbeam.training.trainer`) with ``quality`` = iterations - 1, and
    ``lambdas`` = the per-iteration loss weights (all 1: the paper's plain mean over iterations)."""

    family = "toderici-rnn"
    downsampling = BLOCK
    #: the float context model stays in training checkpoints; weights carry its integer version
    omitted_from_weights = ("context.",)

    def __init__(
        self,
        cell: str = "gru",
        framing: str = "one-shot",
        iterations: int = 16,
        bits: int = 32,
        enc_channels: Sequence[int] = (32, 64, 96, 96),
        dec_channels: Sequence[int] = (96, 96, 64, 32),
        context_hidden: int = 16,
        loss: str = "l1",
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        if any(c % 4 for c in dec_channels):
            raise ValueError("decoder widths must be multiples of 4 (depth-to-space)")
        self.cell, self.framing_name, self.iterations, self.bits = cell, framing, int(iterations), int(bits)
        self.enc_channels, self.dec_channels = tuple(enc_channels), tuple(dec_channels)
        self.context_hidden, self.loss = int(context_hidden), loss
        self.lambdas = (1.0,) * self.iterations
        self.num_qualities = self.iterations
        self.encoder = RNNEncoder(cell, self.enc_channels, bits)
        self.decoder = RNNDecoder(cell, self.dec_channels, bits)
        self.framing = make_framing(framing)
        self.context = BitContextModel(bits, context_hidden, self.iterations)

    @property
    def config(self) -> dict[str, Any]:
        return {"cell": self.cell, "framing": self.framing_name, "iterations": self.iterations, "bits": self.bits,
                "enc_channels": list(self.enc_channels), "dec_channels": list(self.dec_channels),
                "context_hidden": self.context_hidden, "loss": self.loss}

    # ------------------------------------------------------------------ the recurrence
    def _decode_step(self, codes: torch.Tensor, x_prev: torch.Tensor, states: list | None):
        self.framing.begin(x_prev)
        out, states = self.decoder(codes, states)
        return self.framing.reconstruct(x_prev, out), states

    def run(self, x: torch.Tensor, iterations: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encode ``x`` (B, 3, H, W) in [0, 1], H and W multiples of 16, for ``iterations`` steps: the +-1
        codes and the (centred) reconstruction of every iteration."""
        xc = x - 0.5
        x_prev = torch.zeros_like(xc)
        enc_states = dec_states = None
        codes, recons = [], []
        for _ in range(iterations):
            self.framing.begin(x_prev)
            b, enc_states = self.encoder(self.framing.encoder_input(xc - x_prev), enc_states)
            x_prev, dec_states = self._decode_step(b, x_prev, dec_states)
            codes.append(b)
            recons.append(x_prev)
        return codes, recons

    def decode_iterations(self, codes: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The image (B, 3, 16h, 16w) in [0, 1] (unclamped) after each iteration, from the +-1 codes
        (B, bits, h, w) of the iterations: a k-iteration decode is the k-th of these."""
        b, _, h, w = codes[0].shape
        x_prev = codes[0].new_zeros(b, 3, h * BLOCK, w * BLOCK)
        states = None
        for c in codes:
            x_prev, states = self._decode_step(c, x_prev, states)
            yield x_prev + 0.5

    def decode(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """The image after all the given iterations (see :meth:`decode_iterations`)."""
        for image in self.decode_iterations(codes):
            pass
        return image

    @torch.no_grad()
    def code_sensitivity(self, x: torch.Tensor) -> float:
        """Mean |D(b) - D(-b)| of the first decoded iteration, b the codes of ``x``: how much the decoder's output
        depends on its codes (near 0 at initialisation, the encoder gets no gradient and training stays grey)."""
        codes, _ = self.run(x, 1)
        return float((self.decode([codes[0]]) - self.decode([-codes[0]])).abs().mean())

    # ------------------------------------------------------------------ Trainer protocol
    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict[str, Any]:
        """All iterations in training; up to the highest requested quality otherwise. ``x_hat`` is each
        sample's reconstruction at its quality (iterations = quality + 1)."""
        if quality is None:
            quality = torch.full((x.shape[0],), self.iterations - 1, dtype=torch.long, device=x.device)
        steps = self.iterations if self.training else int(quality.max()) + 1
        codes, recons = self.run(x, steps)
        stacked = torch.stack(recons, dim=1)  # B, T, 3, H, W
        x_hat = stacked[torch.arange(x.shape[0], device=x.device), quality] + 0.5
        return {"x_hat": x_hat, "recons": stacked, "codes": torch.stack(codes, dim=1), "quality": quality,
                "likelihoods": {}}

    def rate_distortion_loss(self, out: dict[str, Any], x: torch.Tensor, lmbda: torch.Tensor,
                             distortion: str = "mse") -> dict[str, torch.Tensor]:
        """Mean over iterations of the residual's L1 (or L2) norm, plus the context model's code length
        (bits of detached codes, so it trains the context model only). Reports ``bpp`` (the context model's
        estimate at each sample's quality), ``mse`` at that quality and ``distortion`` (the mean over
        iterations). ``lmbda`` / ``distortion`` of the protocol are not used."""
        xc = (x - 0.5).unsqueeze(1)
        residual = out["recons"] - xc
        per_iter = residual.abs().mean(dim=(2, 3, 4)) if self.loss == "l1" else residual.pow(2).mean(dim=(2, 3, 4))
        weights = torch.tensor(self.lambdas[: per_iter.shape[1]], dtype=per_iter.dtype, device=per_iter.device)
        dist = (per_iter * weights).sum(dim=1) / weights.sum()
        h, w = x.shape[2:]
        bits = self.context.code_length(out["codes"].detach())  # B, T
        cum_bpp = bits.cumsum(dim=1) / (h * w)
        q = out["quality"]
        bpp = cum_bpp[torch.arange(x.shape[0], device=x.device), q]
        ctx_loss = bits.mean() / (h * w)
        mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3))
        return {"loss": dist.mean() + ctx_loss, "bpp": bpp.mean(), "mse": mse.mean(), "distortion": dist.mean()}

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())

    @property
    def loss_description(self) -> str:
        return (f"mean over {self.iterations} iterations of the residual's {self.loss.upper()} norm "
                "(Toderici et al. 2017) + the bit context model's cross-entropy on detached codes")

    @torch.no_grad()
    def coding_tensors(self, calibration: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The integer context model (calibrated on the codes of ``calibration`` images) and its probability
        table, stored with the weights."""
        from nicbeam.codecs.learned.rnn.context import IntegerBitContext

        if calibration is None:
            calibration = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        hp, wp = (-(-s // BLOCK) * BLOCK for s in calibration.shape[2:])
        calibration = F.pad(calibration, (0, wp - calibration.shape[3], 0, hp - calibration.shape[2]), mode="replicate")
        was_training = self.training
        self.eval()
        codes, _ = self.run(calibration, self.iterations)
        self.train(was_training)
        return IntegerBitContext.from_float(self.context, torch.stack(codes, dim=1)).tensors("tables.ctx.")
