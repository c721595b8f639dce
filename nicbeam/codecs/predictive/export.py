"""Export of a trained MLP-DPCM model to the integer tensors the codec runs (no float at coding time).

Each layer becomes integer weights ``W`` and bias ``b`` plus a right shift ``k``: ``h' = clip(floor((h @ W + b)
/ 2**k), 0, ACT_CLIP)`` (hidden layers) on integer activations ``h``. The output layer gives the mean in 1/8
pixel (``MEAN_FRACTIONS``) relative to the reference and the index into a log-spaced grid of ``NUM_SCALES``
scales. The probability tables (one row of 256 integer frequencies summing to 2**16 per fraction and scale) are
computed here, once, in float64, and shipped: the coder only ever reads integers.

Two sizings (``precision``): ``"float32"`` (the default since issue 13's speed work) keeps every partial sum of
every layer below 2**24, so the coder runs its products in float32 BLAS, exactly: activations are clipped to
``F32_ACT_CLIP`` (11 bits) and each layer takes the largest weight scale whose bound still fits; ``"float64"``
is the first export (13-bit weights, 16-bit activations, bound 2**53), kept so older weights can be rebuilt.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nicbeam.codecs.predictive.context import NUM_FEATURES
from nicbeam.entropy.tables import PMF_TOTAL, quantize_pmf

#: mean resolution: 1/8 pixel (table rows per scale)
MEAN_FRACTIONS = 8
#: scale grid size (log-spaced from SCALE_MIN to SCALE_MAX)
NUM_SCALES = 64
#: integer weights are at most this in magnitude, activations are clipped to ACT_CLIP (calibrated near 2**14)
WEIGHT_LIMIT = 1 << 13
ACT_TARGET = 1 << 14
ACT_CLIP = 1 << 16
#: float32 sizing: activations 0..F32_ACT_CLIP (calibrated maxima near F32_ACT_TARGET), partial sums < 2**24
F32_ACT_CLIP = (1 << 11) - 1
F32_ACT_TARGET = 1 << 10
F32_EXACT = 1 << 24
#: the input features are integers of magnitude <= 255 (see intmlp)
INPUT_LIMIT = 255


def scale_grid() -> np.ndarray:
    from nicbeam.nn.dpcm import SCALE_MAX, SCALE_MIN

    return SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** (np.arange(NUM_SCALES) / (NUM_SCALES - 1))


def residual_tables() -> np.ndarray:
    """(NUM_SCALES * MEAN_FRACTIONS, 256) int32: row ``s * MEAN_FRACTIONS + f`` is the pmf of the residual
    ``x - floor(mean)`` in -128..127 (symbol = residual + 128) for a logistic of scale grid[s] centred at
    (f + 0.5) / MEAN_FRACTIONS; every entry >= 1, rows sum to 2**16."""
    e = np.arange(-128, 128, dtype=np.float64)
    rows = []
    for s in scale_grid():
        for f in range(MEAN_FRACTIONS):
            m = (f + 0.5) / MEAN_FRACTIONS
            upper = 1.0 / (1.0 + np.exp(-(e + 0.5 - m) / s))
            lower = 1.0 / (1.0 + np.exp(-(e - 0.5 - m) / s))
            freq = quantize_pmf(upper - lower, 0.0)  # last entry: an escape we do not use
            freq[int(np.argmax(freq[:-1]))] += freq[-1]
            rows.append(freq[:-1])
    table = np.stack(rows).astype(np.int32)
    assert (table.sum(axis=1) == PMF_TOTAL).all() and table.min() >= 1
    return table


def _shift_for(max_abs: float, target: float) -> int:
    """Largest k with max_abs * 2**k <= target (max_abs 0 -> a moderate default)."""
    if max_abs <= 0:
        return 8
    return int(math.floor(math.log2(target / max_abs)))


def _layers(mlp: torch.nn.Sequential) -> list[torch.nn.Conv2d]:
    return [m for m in mlp if isinstance(m, torch.nn.Conv2d)]


@torch.no_grad()
def activation_maxima(model, calibration: torch.Tensor | None) -> list[list[float]]:
    """Per channel MLP, the largest activation after each hidden ReLU on the calibration crops."""
    from nicbeam.nn.dpcm import INPUT_SCALE, channel_inputs, reference_and_features

    hidden = len(model.hidden)
    if calibration is None:
        return [[64.0] * hidden for _ in range(3)]
    px = model.to_pixels(calibration)
    ref, neigh = reference_and_features(px)
    result = []
    for c in range(3):
        h = channel_inputs(px, ref, neigh, c) / INPUT_SCALE
        maxima = []
        for conv in _layers(model.mlps[c])[:-1]:
            h = torch.relu(conv(h))
            maxima.append(float(h.max()))
        result.append(maxima)
    return result


@torch.no_grad()
def _f32_weight_exp(w: torch.Tensor, b: torch.Tensor, act_exp: int, in_limit: float) -> int:
    """Largest k with every column's ``sum |round(w * 2**k)| * in_limit + |round(b * 2**(k + act_exp))|``
    below 2**24 (the float32-exact bound the coder checks)."""
    col = float(w.abs().sum(dim=0).max()) * in_limit + float(b.abs().max()) * 2.0**act_exp
    k = _shift_for(col, F32_EXACT / 2)
    while True:
        wi, bi = torch.round(w * 2.0**k), torch.round(b * 2.0 ** (k + act_exp))
        if float((wi.abs().sum(dim=0) * in_limit + bi.abs()).max()) < F32_EXACT:
            return k
        k -= 1


@torch.no_grad()
def integer_tensors(model, calibration: torch.Tensor | None, precision: str = "float32") -> dict[str, torch.Tensor]:
    """``int.c{c}.l{l}.{weight,bias,shift,clip}`` for every layer of the three channel MLPs, plus
    ``tables.pmf`` and ``tables.scales`` (float64, used only to re-index scales for near-lossless).
    ``precision``: ``"float32"`` (exact in float32 BLAS, faster decoding) or ``"float64"``."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be float32 or float64, not {precision!r}")
    f32 = precision == "float32"
    from nicbeam.nn.dpcm import INPUT_SCALE, MEAN_SCALE, SCALE_MIN

    log_min = math.log(SCALE_MIN)
    step = math.log(scale_grid()[1] / scale_grid()[0])
    maxima = activation_maxima(model, calibration)
    out: dict[str, torch.Tensor] = {}
    for c in range(3):
        convs = _layers(model.mlps[c])
        act_exp = 0  # exponent of the current input's fixed point (integer features: 2**0)
        in_limit = float(INPUT_LIMIT)
        for l, conv in enumerate(convs):
            w = conv.weight.detach().double().reshape(conv.out_channels, conv.in_channels).T.clone()  # (in, out)
            b = conv.bias.detach().double().clone()
            if l == 0:
                w = w / INPUT_SCALE
            last = l == len(convs) - 1
            if last:  # column 0: mean offset in 1/MEAN_FRACTIONS pixel; column 1: scale index (rounded)
                w[:, 0] *= MEAN_SCALE * MEAN_FRACTIONS
                b[0] *= MEAN_SCALE * MEAN_FRACTIONS
                w[:, 1] /= step
                b[1] = (b[1] - log_min) / step + 0.5
            if f32:
                w_exp = _f32_weight_exp(w, b, act_exp, in_limit)
            else:
                w_exp = _shift_for(float(w.abs().max()), WEIGHT_LIMIT)
            wi = torch.round(w * 2.0**w_exp)
            bi = torch.round(b * 2.0 ** (w_exp + act_exp))
            clip = F32_ACT_CLIP if f32 else ACT_CLIP
            next_exp = 0 if last else _shift_for(maxima[c][l], F32_ACT_TARGET if f32 else ACT_TARGET)
            out[f"int.c{c}.l{l}.weight"] = wi.to(torch.int32)
            out[f"int.c{c}.l{l}.bias"] = bi.to(torch.int64)
            out[f"int.c{c}.l{l}.shift"] = torch.tensor([w_exp + act_exp - next_exp], dtype=torch.int32)
            out[f"int.c{c}.l{l}.clip"] = torch.tensor([clip], dtype=torch.int32)
            act_exp, in_limit = next_exp, float(clip)
    out["tables.pmf"] = torch.from_numpy(residual_tables())
    out["tables.scales"] = torch.from_numpy(scale_grid())
    assert out["int.c0.l0.weight"].shape[0] == NUM_FEATURES
    return out
