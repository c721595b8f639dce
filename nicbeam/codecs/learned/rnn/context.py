"""The learned context model of the binary codes, and its exact integer evaluation for range coding.

The probability that bit (iteration t, channel c, position p) is 1 comes from a small convolutional model
over bits already known to the decoder (a convolutional stand-in for the papers' BinaryRNN):

* the previous iteration's 32 bits in the 3x3 neighbourhood of p, through a hidden layer (conv 3x3 ->
  ReLU -> conv 1x1);
* the current iteration's channels 0..c-1 in the 3x3 neighbourhood (a channel-masked conv 3x3);
* a bias per (iteration, channel).

Codes enter as +-1 and unknown positions (iteration 1's "previous iteration", borders, later channels) as 0.
Decoding one iteration is therefore 32 vectorised steps, one per channel.

For coding, :class:`IntegerBitContext` evaluates the same function on integers only: weights quantised at
export (12-bit), activations requantised with floor shifts, convolutions of integer-valued float64 tensors
whose every partial sum is an integer below 2**53 (so exact whatever the summation order, threads or
machine, as in :mod:`nicbeam.entropy.integer_net`), the logit in 1/256 steps, and the probability of a 1
read from a table of 16-bit frequencies built at export and stored with the weights. Encoder and decoder
therefore derive identical probabilities from identical integers; no float rounding can differ between them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nicbeam.entropy.integer_net import EXACT_LIMIT, accumulator_bound
from nicbeam.entropy.tables import PMF_BITS

WEIGHT_BITS = 12
ACT_BITS = 16
LOGIT_FRAC_BITS = 8
LOGIT_LIMIT = 14 << LOGIT_FRAC_BITS  # |logit| <= 14: p in [8e-7, 1 - 8e-7] before the 16-bit table clamp


class BitContextModel(nn.Module):
    """Float context model, trained on detached codes with the cross-entropy of the bits."""

    def __init__(self, bits: int = 32, hidden: int = 16, iterations: int = 16) -> None:
        super().__init__()
        self.prev = nn.Conv2d(bits, hidden, 3, padding=1)
        self.mix = nn.Conv2d(hidden, bits, 1)
        self.cur = nn.Conv2d(bits, bits, 3, padding=1, bias=False)
        self.bias = nn.Parameter(torch.zeros(iterations, bits))
        mask = torch.zeros(bits, bits, 1, 1)
        for c in range(bits):
            mask[c, :c] = 1.0  # output channel c sees current-iteration channels < c only
        self.register_buffer("mask", mask, persistent=False)

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, bits, h, w) of +-1 -> logits of P(bit = 1), same shape."""
        b, t, c, h, w = codes.shape
        prev = torch.cat([torch.zeros_like(codes[:, :1]), codes[:, :-1]], dim=1).reshape(b * t, c, h, w)
        cur = codes.reshape(b * t, c, h, w)
        z = self.mix(F.relu(self.prev(prev))) + F.conv2d(cur, self.cur.weight * self.mask, padding=1)
        return z.reshape(b, t, c, h, w) + self.bias[:t, :, None, None]

    def code_length(self, codes: torch.Tensor) -> torch.Tensor:
        """Bits (B, T) the model needs for each sample's codes of each iteration."""
        target = (codes > 0).to(codes.dtype)
        nats = F.binary_cross_entropy_with_logits(self.logits(codes), target, reduction="none")
        return nats.sum(dim=(2, 3, 4)) / math.log(2.0)


def probability_table() -> np.ndarray:
    """Frequency (out of 2**16) of a 1 for each logit -LOGIT_LIMIT..LOGIT_LIMIT (in 1/256), in [1, 2**16 - 1].
    Computed once at export and stored with the weights: decoders only look it up."""
    logit = np.arange(-LOGIT_LIMIT, LOGIT_LIMIT + 1, dtype=np.float64) / (1 << LOGIT_FRAC_BITS)
    p = 1.0 / (1.0 + np.exp(-logit))
    return np.clip(np.round(p * (1 << PMF_BITS)), 1, (1 << PMF_BITS) - 1).astype(np.int32)


def _quantize(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Integer weights round(w * 2**frac) with the largest frac keeping |w_int| < 2**(WEIGHT_BITS-1)."""
    top = float(w.abs().max())
    frac = int(math.floor(math.log2((2 ** (WEIGHT_BITS - 1) - 1) / top))) if top > 0 else WEIGHT_BITS
    frac = max(0, min(frac, 24))
    return torch.round(w.double() * 2.0**frac), frac


def _requant(acc: torch.Tensor, frac: int, bits: int) -> torch.Tensor:
    """int64 fixed point from ``frac`` to ``bits`` fractional bits, rounding half up (exact)."""
    if frac > bits:
        d = frac - bits
        return torch.div(acc + (1 << (d - 1)), 1 << d, rounding_mode="floor")
    return acc * (1 << (bits - frac))


class IntegerBitContext:
    """Exact integer version of :class:`BitContextModel`; see the module docstring."""

    PARTS = ("prev_w", "prev_b", "mix_w", "mix_b", "cur_w", "bias", "spec", "p1")

    def __init__(self, t: dict[str, torch.Tensor]) -> None:
        self.prev_w = t["prev_w"].to(torch.float64)
        self.prev_b = t["prev_b"].to(torch.int64)
        self.mix_w = t["mix_w"].to(torch.float64)
        self.mix_b = t["mix_b"].to(torch.int64)
        self.cur_w = t["cur_w"].to(torch.float64)
        self.bias = t["bias"].to(torch.int64)
        self.prev_frac, self.act_frac, self.mix_frac, self.cur_frac = (int(v) for v in t["spec"])
        self.p1 = t["p1"].to(torch.int64).numpy()
        self.iterations, self.bits = self.bias.shape
        if self.p1.shape != (2 * LOGIT_LIMIT + 1,) or self.p1.min() < 1 or self.p1.max() >= 1 << PMF_BITS:
            raise ValueError("context probability table has the wrong size or range")
        for name in ("prev_w", "mix_w", "cur_w"):
            w = getattr(self, name)
            if not torch.equal(w, torch.round(w)) or float(w.abs().max()) >= 2 ** (WEIGHT_BITS - 1):
                raise ValueError(f"context weights {name} are not {WEIGHT_BITS}-bit integers")
        for c in range(self.bits):
            if self.cur_w[c, c:].abs().sum() != 0:
                raise ValueError("context weights are not causal over channels")
        bounds = [accumulator_bound(self.prev_w, self.prev_b, 1, False, 1),
                  accumulator_bound(self.mix_w, self.mix_b, (1 << ACT_BITS) - 1, False, 1),
                  accumulator_bound(self.cur_w, torch.zeros(1, dtype=torch.int64), 1, False, 1)]
        if max(bounds) >= EXACT_LIMIT:
            raise ValueError("context model accumulators could exceed 2**53")

    @classmethod
    @torch.no_grad()
    def from_float(cls, model: BitContextModel, codes: torch.Tensor, headroom: float = 4.0) -> "IntegerBitContext":
        """Quantise ``model``; the hidden activations' fixed point is calibrated on ``codes`` (B, T, bits, h, w)."""
        b, t, c, h, w = codes.shape
        prev = torch.cat([torch.zeros_like(codes[:, :1]), codes[:, :-1]], dim=1).reshape(b * t, c, h, w)
        top = max(float(F.relu(model.prev(prev.float())).max()), 1e-3) * headroom
        prev_w, prev_frac = _quantize(model.prev.weight)
        act_frac = min(prev_frac, int(math.floor(math.log2(((1 << ACT_BITS) - 1) / top))))
        mix_w, mix_w_frac = _quantize(model.mix.weight)
        cur_w, cur_frac = _quantize(model.cur.weight * model.mask)
        tensors = {
            "prev_w": prev_w, "prev_b": torch.round(model.prev.bias.double() * 2.0**prev_frac).to(torch.int64),
            "mix_w": mix_w,
            "mix_b": torch.round(model.mix.bias.double() * 2.0 ** (act_frac + mix_w_frac)).to(torch.int64),
            "cur_w": cur_w, "bias": torch.round(model.bias.double() * 2.0**LOGIT_FRAC_BITS).to(torch.int64),
            "spec": torch.tensor([prev_frac, act_frac, act_frac + mix_w_frac, cur_frac], dtype=torch.int64),
            "p1": torch.from_numpy(probability_table()),
        }
        return cls(tensors)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Storage form (weights as int16) for the weights file."""
        return {
            f"{prefix}prev_w": self.prev_w.to(torch.int16), f"{prefix}prev_b": self.prev_b,
            f"{prefix}mix_w": self.mix_w.to(torch.int16), f"{prefix}mix_b": self.mix_b,
            f"{prefix}cur_w": self.cur_w.to(torch.int16), f"{prefix}bias": self.bias,
            f"{prefix}spec": torch.tensor([self.prev_frac, self.act_frac, self.mix_frac, self.cur_frac], dtype=torch.int64),
            f"{prefix}p1": torch.from_numpy(self.p1.astype(np.int32)),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "IntegerBitContext":
        return cls({part: tensors[prefix + part] for part in cls.PARTS})

    # ------------------------------------------------------------------ evaluation (exact)
    def prev_logits(self, prev_codes: np.ndarray, iteration: int) -> torch.Tensor:
        """int64 (bits, h, w) logit part (1/256 units) from the previous iteration's codes (+-1 int8, or all
        zero for the first iteration) plus the (iteration, channel) bias."""
        a = torch.from_numpy(prev_codes.astype(np.float64))[None]
        acc = F.conv2d(a, self.prev_w, padding=1).to(torch.int64) + self.prev_b.reshape(1, -1, 1, 1)
        act = torch.div(acc, 1 << (self.prev_frac - self.act_frac), rounding_mode="floor").clamp_(0, (1 << ACT_BITS) - 1)
        mix = F.conv2d(act.to(torch.float64), self.mix_w).to(torch.int64) + self.mix_b.reshape(1, -1, 1, 1)
        return _requant(mix[0], self.mix_frac, LOGIT_FRAC_BITS) + self.bias[iteration].reshape(-1, 1, 1)

    def cur_logits(self, cur_codes: np.ndarray, channel: int | None = None) -> torch.Tensor:
        """int64 logit part from the current iteration's codes (+-1 where known, 0 elsewhere): for one
        ``channel`` (h, w) or all (bits, h, w); channel c only reads channels < c."""
        a = torch.from_numpy(cur_codes.astype(np.float64))[None]
        w = self.cur_w if channel is None else self.cur_w[channel : channel + 1]
        acc = F.conv2d(a, w, padding=1).to(torch.int64)[0]
        out = _requant(acc, self.cur_frac, LOGIT_FRAC_BITS)
        return out if channel is None else out[0]

    def frequencies(self, logit: torch.Tensor) -> np.ndarray:
        """Frequency (out of 2**16) of a 1 for each integer logit."""
        idx = logit.clamp(-LOGIT_LIMIT, LOGIT_LIMIT).numpy() + LOGIT_LIMIT
        return self.p1[idx]
