"""Integer hyper-synthesis (Balle, Johnston, Minnen 2019, "Integer networks for data compression with
latent-variable models"), evaluated exactly on any machine and with any thread count.

The float hyper-synthesis ``h_s`` (transposed convs / convs with ReLU between them) is quantised once, at
export: weights to ``WEIGHT_BITS``-bit integers ``W_int = round(W * 2**wf)``, biases to integers at the
accumulator's scale, activations to unsigned ``ACT_BITS``-bit fixed point (ReLU and clipping fused with the
requantisation, which is an integer floor-shift). Convolutions run with torch on *integer-valued float64*
tensors on the CPU: every product and every partial sum is an integer of magnitude below 2**53, so float64
represents all of them exactly and the result does not depend on summation order, blocking, threads or
batch size. :func:`accumulator_bound` checks that bound for every layer when the network is built.

Outputs: means as exact fixed point (``MEAN_FRAC_BITS`` fractional bits) and scale indices into a fixed,
log-spaced scale table (``index = floor((log_scale_q8 - LOG_SCALE_MIN_Q8) / LOG_SCALE_STEP_Q8)``).

The same class evaluates other integer stacks (``ckbd-hyperprior``'s context convolution and entropy-parameter
network): their input is signed fixed point with ``in_frac`` fractional bits, clipped to ``input_limit``, both
stored with the layers (``<prefix>meta``; absent for the hyper-synthesis, whose input z is an integer).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_BITS = 14  # signed: |W_int| <= 2**13 - 1
ACT_BITS = 16  # unsigned activations 0 .. 2**16 - 1
INPUT_LIMIT = (1 << 15) - 1  # |z| is clipped to this before the network
MEAN_FRAC_BITS = 8
LOG_SCALE_FRAC_BITS = 8
LOG_SCALE_MIN_Q8 = round(math.log(0.11) * 256)  # -565
LOG_SCALE_STEP_Q8 = 27  # ln-scale step 27/256 = 0.105
NUM_SCALES = 72  # scales 0.11 .. ~220
EXACT_LIMIT = 1 << 53


def scale_table() -> np.ndarray:
    """Representative scale (bin centre in the log domain) of each scale index."""
    j = np.arange(NUM_SCALES, dtype=np.float64)
    return np.exp((LOG_SCALE_MIN_Q8 + (j + 0.5) * LOG_SCALE_STEP_Q8) / 256.0)


def accumulator_bound(weight: torch.Tensor, bias: torch.Tensor, input_max: int, transposed: bool, stride: int) -> int:
    """Largest |partial sum| a layer can reach: sum over one output's taps of |W| * input_max, plus |bias|.

    For a transposed conv of stride s only about 1/s^2 of the taps meet an output, but we bound with all of
    them (sum over in-channels and the whole kernel), which is looser and simpler.
    """
    w = weight.abs().to(torch.int64)
    per_out = w.sum(dim=(0, 2, 3)) if transposed else w.sum(dim=(1, 2, 3))
    return int(per_out.max()) * int(input_max) + int(bias.abs().max())


class IntegerHyperSynthesis(nn.Module):
    """Exact integer evaluation of a ConvTranspose2d/Conv2d + ReLU stack; built by :meth:`from_float`."""

    def __init__(self, layers: Sequence[dict], in_frac: int = 0, input_limit: int = INPUT_LIMIT) -> None:
        """``in_frac``: fractional bits of the (integer) input; ``input_limit``: |input| is clipped to it."""
        super().__init__()
        self.in_frac, self.input_limit = int(in_frac), int(input_limit)
        self.specs = []
        for i, layer in enumerate(layers):
            self.register_buffer(f"w{i}", torch.as_tensor(layer["weight"], dtype=torch.float64))
            self.register_buffer(f"b{i}", torch.as_tensor(layer["bias"], dtype=torch.int64))
            self.specs.append({k: int(layer[k]) for k in ("transposed", "stride", "padding", "output_padding", "shift", "acc_frac")})
        self._check_bounds()

    def _check_bounds(self) -> None:
        input_max = self.input_limit
        for i, spec in enumerate(self.specs):
            w, b = getattr(self, f"w{i}"), getattr(self, f"b{i}")
            assert torch.equal(w, torch.round(w)) and float(w.abs().max()) < 2 ** (WEIGHT_BITS - 1), "weights not int"
            bound = accumulator_bound(w, b, input_max, bool(spec["transposed"]), spec["stride"])
            assert bound < EXACT_LIMIT, f"layer {i}: accumulator bound {bound} >= 2**53, not exact in float64"
            input_max = (1 << ACT_BITS) - 1

    @property
    def out_frac(self) -> int:
        return self.specs[-1]["acc_frac"]

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {}
        for i, spec in enumerate(self.specs):
            out[f"{prefix}{i}.weight"] = getattr(self, f"w{i}").to(torch.int16)  # |W| < 2**13
            out[f"{prefix}{i}.bias"] = getattr(self, f"b{i}")
            out[f"{prefix}{i}.spec"] = torch.tensor([spec[k] for k in ("transposed", "stride", "padding", "output_padding", "shift", "acc_frac")], dtype=torch.int64)
        if (self.in_frac, self.input_limit) != (0, INPUT_LIMIT):  # the hyper-synthesis files stay as they were
            out[f"{prefix}meta"] = torch.tensor([self.in_frac, self.input_limit], dtype=torch.int64)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "IntegerHyperSynthesis":
        layers, i = [], 0
        while f"{prefix}{i}.weight" in tensors:
            t, s, p, op, shift, acc = (int(v) for v in tensors[f"{prefix}{i}.spec"])
            layers.append({"weight": tensors[f"{prefix}{i}.weight"], "bias": tensors[f"{prefix}{i}.bias"],
                           "transposed": t, "stride": s, "padding": p, "output_padding": op, "shift": shift, "acc_frac": acc})
            i += 1
        meta = tensors.get(f"{prefix}meta")
        if meta is None:
            return cls(layers)
        return cls(layers, in_frac=int(meta[0]), input_limit=int(meta[1]))

    @classmethod
    @torch.no_grad()
    def from_float(cls, h_s: nn.Sequential, calibration_z: torch.Tensor, headroom: float = 4.0,
                   in_frac: int = 0, input_limit: int = INPUT_LIMIT) -> "IntegerHyperSynthesis":
        """Quantise ``h_s``; activation fixed-point ranges come from ``calibration_z`` (max * headroom).
        ``calibration_z`` holds float inputs; the integer network's input is ``round(input * 2**in_frac)``."""
        convs = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        # float activation maxima after each hidden ReLU
        a = calibration_z.float()
        maxima = []
        for m in h_s:
            a = m(a)
            if isinstance(m, nn.ReLU):
                maxima.append(float(a.max()))
        layers = []
        first_frac = in_frac  # z is integer (0); other stacks take fixed-point inputs
        for i, m in enumerate(convs):
            w = m.weight.detach().double()
            b = m.bias.detach().double()
            w_max = float(w.abs().max())
            # an all-zero layer (e.g. a zero-initialised residual branch) keeps integer weights (all 0)
            wf = int(math.floor(math.log2((2 ** (WEIGHT_BITS - 1) - 1) / w_max))) if w_max > 0 else 0
            w_int = torch.round(w * 2.0**wf)
            acc_frac = wf + in_frac
            b_int = torch.round(b * 2.0**acc_frac).to(torch.int64)
            last = i == len(convs) - 1
            if last:
                out_frac = acc_frac
                shift = 0
            else:
                top = max(maxima[i], 1e-3) * headroom
                out_frac = int(math.floor(math.log2(((1 << ACT_BITS) - 1) / top)))
                out_frac = min(out_frac, acc_frac)
                shift = acc_frac - out_frac
            transposed = isinstance(m, nn.ConvTranspose2d)
            layers.append({
                "weight": w_int, "bias": b_int, "transposed": int(transposed), "stride": m.stride[0],
                "padding": m.padding[0], "output_padding": m.output_padding[0] if transposed else 0,
                "shift": shift, "acc_frac": acc_frac,
            })
            in_frac = out_frac
        return cls(layers, in_frac=first_frac, input_limit=input_limit)

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: integer-valued (B, C, h, w) tensor -> int64 accumulator of the last layer (``acc_frac`` bits)."""
        a = torch.clamp(z.to(torch.float64).cpu(), -self.input_limit, self.input_limit)
        n = len(self.specs)
        for i, spec in enumerate(self.specs):
            w = getattr(self, f"w{i}")
            if spec["transposed"]:
                acc = F.conv_transpose2d(a, w, None, spec["stride"], spec["padding"], spec["output_padding"])
            else:
                acc = F.conv2d(a, w, None, spec["stride"], spec["padding"])
            acc = acc.to(torch.int64) + getattr(self, f"b{i}").reshape(1, -1, 1, 1)
            if i == n - 1:
                return acc
            acc = torch.div(acc, 1 << spec["shift"], rounding_mode="floor")
            a = torch.clamp(acc, 0, (1 << ACT_BITS) - 1).to(torch.float64)  # ReLU + clip
        raise AssertionError("empty network")

    def entropy_parameters(self, z: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means as float32 = int / 2**8 exactly, scale indices int64), each (B, M, H, W)."""
        return mean_scale_from_accumulator(self(z), self.out_frac, m)


def mean_scale_from_accumulator(acc: torch.Tensor, frac: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 (B, 2M, H, W) fixed point with ``frac`` bits (means, then log-scales) -> (means as float32 =
    int / 2**8 exactly, scale indices int64), each (B, M, H, W)."""
    means_acc, ls_acc = acc[:, :m], acc[:, m:]
    means_q = _requant(means_acc, frac, MEAN_FRAC_BITS).clamp_(-(1 << 23) + 1, (1 << 23) - 1)  # exact in fp32
    ls_q = _requant(ls_acc, frac, LOG_SCALE_FRAC_BITS)
    idx = torch.div(ls_q - LOG_SCALE_MIN_Q8, LOG_SCALE_STEP_Q8, rounding_mode="floor").clamp_(0, NUM_SCALES - 1)
    means = means_q.to(torch.float64) / (1 << MEAN_FRAC_BITS)
    return means.to(torch.float32), idx


def _requant(acc: torch.Tensor, frac: int, bits: int) -> torch.Tensor:
    """Round-half-up from ``frac`` to ``bits`` fractional bits, in int64 (exact)."""
    if frac > bits:
        d = frac - bits
        return torch.div(acc + (1 << (d - 1)), 1 << d, rounding_mode="floor")
    if frac == bits:
        return acc
    return acc * (1 << (bits - frac))


#: the exact fixed-point rescaling above, for other integer stacks built on this module (ckbd-hyperprior)
requantize = _requant


# ----------------------------------------------------------------- shared by the context models' integer stacks
COMBINE_FRAC_BITS = 16
#: |symbol * 2**8 + mean_q| is clipped to this before the context convolution (|y_hat| < 2**15)
CONTEXT_INPUT_LIMIT = (1 << 23) - 1
#: |ep input| (fixed point) is clipped to this; its fractional bits are chosen at export from the calibrated
#: maximum (at most ``MAX_EP_INPUT_FRAC``). 2**23 keeps the first layer's bound near 2**46 at M=192
EP_INPUT_LIMIT = (1 << 23) - 1
MAX_EP_INPUT_FRAC = 16


def ep_input_frac(ep_inputs: torch.Tensor, headroom: float = 4.0) -> int:
    """Fractional bits for the entropy-parameter network's input: its calibrated max * headroom fits ``EP_INPUT_LIMIT``."""
    top = max(float(ep_inputs.abs().max()), 1e-3) * headroom
    return max(0, min(MAX_EP_INPUT_FRAC, int(math.floor(math.log2(EP_INPUT_LIMIT / top)))))


def y_hat_fixed_point(symbols: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``(symbol + mean) * 2**8`` as int64, exact: means are multiples of 2**-8 in float32."""
    return symbols.to(torch.int64) * (1 << MEAN_FRAC_BITS) + torch.round(means.to(torch.float64) * (1 << MEAN_FRAC_BITS)).to(torch.int64)
