"""Exact integer entropy parameters of the checkerboard model (``ckbd-hyperprior``), for encoder and decoder.

Three integer stacks of :class:`nicbeam.entropy.integer_net.IntegerHyperSynthesis` (the same quantisation at
export, the same ``< 2**53`` bound checked at load, the same integer-valued float64 convolutions):

* ``hs``: the hyper-synthesis, z -> hyperprior parameters ``h`` (2M channels, fixed point);
* ``ctx``: the masked 5x5 context convolution over the decoded anchors;
* ``ep``: the entropy-parameter network (1x1 convolutions) over ``cat(h, ctx)``.

What the context model reads: the decoded anchors ``y_hat = symbol + mean`` on the fixed-point grid of the
means, i.e. the integer ``symbol * 2**8 + mean_q`` (``MEAN_FRAC_BITS`` = 8 fractional bits). Both terms are
integers the decoder has exactly (the symbol from the range decoder, ``mean_q`` from the integer network), so
the context input is exact with no rounding step of its own, and it is the very value the float model was
trained on (``y_hat``), only clipped to ``|y_hat| < 2**15`` (``CONTEXT_INPUT_LIMIT``), far outside the
latents' range. The alternative, symbols only, would hide the means from the context and differ from what
the synthesis receives.

Cost: the context convolution is evaluated only where it is used, as one matrix product per pass over the 12
taps of its mask gathered at the non-anchor positions (the same integer products as the full 5x5 convolution,
without its 13 zero taps and without the anchor outputs: 4x fewer multiply-adds; measured 3.2x faster at M=128 on a 768x512 image, 1 thread).

Combination: ``h`` and the ``ep`` output are each rounded to ``COMBINE_FRAC_BITS`` fractional bits and added
in int64 (``params = h + ep(...)``, the float model's residual form), then cut to means (1/256) and scale
indices exactly as for ``mbt2018-mean``. Anchors take ``ctx = 0``. The 1x1 ``ep`` runs only at the positions of
one pass (gathered), so each pass costs half the full map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nicbeam.entropy.integer_net import (  # noqa: F401 (y_hat_fixed_point: re-exported for the codec)
    COMBINE_FRAC_BITS, CONTEXT_INPUT_LIMIT, EP_INPUT_LIMIT, MEAN_FRAC_BITS, IntegerHyperSynthesis, ep_input_frac,
    mean_scale_from_accumulator, requantize, y_hat_fixed_point,
)


def quantise_checkerboard(model, zs: torch.Tensor, anchor_maps: torch.Tensor, ep_inputs: torch.Tensor,
                          prefix: str) -> dict[str, torch.Tensor]:
    """The three integer stacks of ``model`` (a CheckerboardHyperprior), calibrated on hyper-latents ``zs``,
    float anchor maps ``anchor_maps`` (y_hat at anchors, 0 elsewhere) and entropy-parameter inputs."""
    hs = IntegerHyperSynthesis.from_float(model.h_s, zs)
    ctx = IntegerHyperSynthesis.from_float(model.context.as_plain_conv(), anchor_maps, in_frac=MEAN_FRAC_BITS,
                                           input_limit=CONTEXT_INPUT_LIMIT)
    ep = IntegerHyperSynthesis.from_float(model.entropy_parameters, ep_inputs, in_frac=ep_input_frac(ep_inputs),
                                          input_limit=EP_INPUT_LIMIT)
    return IntegerCheckerboard(hs, ctx, ep, model.M).tensors(prefix)


class IntegerCheckerboard:
    """Exact (means, scale indices) of both checkerboard passes; built from the weights file's tensors."""

    def __init__(self, hs: IntegerHyperSynthesis, ctx: IntegerHyperSynthesis, ep: IntegerHyperSynthesis, m: int) -> None:
        self.hs, self.ctx, self.ep, self.M = hs, ctx, ep, m
        if ctx.in_frac != MEAN_FRAC_BITS or len(ctx.specs) != 1:
            raise ValueError("checkerboard context: one convolution over y_hat with 8 fractional bits expected")
        for i, spec in enumerate(ep.specs):
            w = getattr(ep, f"w{i}")
            if spec["transposed"] or spec["stride"] != 1 or spec["padding"] or tuple(w.shape[2:]) != (1, 1):
                raise ValueError("checkerboard entropy parameters: 1x1 convolutions expected")
        if ep.w0.shape[1] != 4 * m or getattr(ep, f"w{len(ep.specs) - 1}").shape[0] != 2 * m:
            raise ValueError(f"checkerboard entropy parameters do not fit M={m}")
        w = ctx.w0  # (2M, M, k, k) integer-valued float64
        k = w.shape[-1]
        #: the context's taps with a non-zero weight anywhere (dy, dx) and their weights as one (2M, taps * M) matrix
        self.taps = [(ky - k // 2, kx - k // 2) for ky in range(k) for kx in range(k) if bool(w[:, :, ky, kx].any())]
        self.tap_weight = torch.stack([w[:, :, ky + k // 2, kx + k // 2] for ky, kx in self.taps], 1).reshape(w.shape[0], -1)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """``<prefix>N.*`` the hyper-synthesis (as mbt2018-mean), ``<prefix>ctx.*`` and ``<prefix>ep.*``; the
        context kernel is stored as its non-zero taps only (``ctx.0.taps`` and their offsets ``ctx.0.tap_offsets``):
        the checkerboard mask zeroes 13 of the 25, so this halves the largest tensor of the file."""
        ctx = self.ctx.tensors(f"{prefix}ctx.")
        k = ctx.pop(f"{prefix}ctx.0.weight").shape[-1]
        ctx[f"{prefix}ctx.0.taps"] = self.tap_weight.reshape(self.tap_weight.shape[0], len(self.taps), -1).to(torch.int16)
        ctx[f"{prefix}ctx.0.tap_offsets"] = torch.tensor(self.taps, dtype=torch.int64).reshape(-1, 2) + k // 2
        ctx[f"{prefix}ctx.0.kernel_size"] = torch.tensor([k], dtype=torch.int64)
        return {**self.hs.tensors(prefix), **ctx, **self.ep.tensors(f"{prefix}ep.")}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str, m: int) -> "IntegerCheckerboard":
        tensors = dict(tensors)
        if f"{prefix}ctx.0.taps" in tensors:  # compact context kernel: rebuild the full one (zeros elsewhere)
            taps, offsets = tensors.pop(f"{prefix}ctx.0.taps"), tensors.pop(f"{prefix}ctx.0.tap_offsets")
            k = int(tensors.pop(f"{prefix}ctx.0.kernel_size")[0])
            if offsets.shape != (taps.shape[1], 2) or bool((offsets < 0).any()) or bool((offsets >= k).any()):
                raise ValueError("checkerboard context: tap offsets do not fit the kernel")
            weight = torch.zeros((taps.shape[0], taps.shape[2], k, k), dtype=taps.dtype)
            for i, (ky, kx) in enumerate(offsets.tolist()):
                weight[:, :, ky, kx] = taps[:, i]
            tensors[f"{prefix}ctx.0.weight"] = weight
        return cls(IntegerHyperSynthesis.from_tensors(tensors, prefix),
                   IntegerHyperSynthesis.from_tensors(tensors, f"{prefix}ctx."),
                   IntegerHyperSynthesis.from_tensors(tensors, f"{prefix}ep."), m)

    def hyper(self, z: torch.Tensor) -> torch.Tensor:
        """Integer z (B, N, h, w) -> int64 hyperprior parameters (B, 2M, 4h, 4w) at ``hs.out_frac`` bits."""
        return self.hs(z)

    def _parameters(self, h: torch.Tensor, ctx_acc: torch.Tensor | None, where: torch.Tensor):
        """(means, scale indices), each (B, M, P), at the P positions of the (H, W) bool map ``where``;
        ``ctx_acc``: the context accumulator (B, 2M, P) at those positions, None for zero context."""
        h_sel = h[:, :, where]  # (B, 2M, P), positions in raster order
        in_frac = self.ep.in_frac
        ctx = torch.zeros_like(h_sel) if ctx_acc is None else requantize(ctx_acc, self.ctx.out_frac, in_frac)
        ep_in = torch.cat([requantize(h_sel, self.hs.out_frac, in_frac), ctx], dim=1)
        ep_acc = self.ep(ep_in[:, :, None, :])[:, :, 0, :]
        params = (requantize(h_sel, self.hs.out_frac, COMBINE_FRAC_BITS)
                  + requantize(ep_acc, self.ep.out_frac, COMBINE_FRAC_BITS))
        return mean_scale_from_accumulator(params, COMBINE_FRAC_BITS, self.M)

    def anchor_parameters(self, h: torch.Tensor, anchors: torch.Tensor):
        """First pass: (means, scale indices) (B, M, P_anchor) from the hyperprior alone (context = 0)."""
        return self._parameters(h, None, anchors)

    def non_anchor_parameters(self, h: torch.Tensor, anchors: torch.Tensor, anchor_y_hat_q: torch.Tensor):
        """Second pass: (means, scale indices) (B, M, P_other) given the decoded anchors as the integers
        ``symbol * 2**8 + mean * 2**8`` (B, M, P_anchor)."""
        b, _, hh, ww = h.shape
        grid = torch.zeros((b, self.M, hh, ww), dtype=torch.float64)
        grid[:, :, anchors] = anchor_y_hat_q.clamp(-self.ctx.input_limit, self.ctx.input_limit).to(torch.float64)
        return self._parameters(h, self.context_at(grid, ~anchors), ~anchors)

    def context_at(self, grid: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """The context convolution's int64 accumulator (B, 2M, P) at the P positions of ``where`` only, from the
        integer-valued float64 map ``grid`` (B, M, H, W): equal to ``self.ctx(grid)[:, :, where]``, exactly
        (every product and partial sum is an integer below the bound checked at load)."""
        pad = max(max(abs(dy), abs(dx)) for dy, dx in self.taps) if self.taps else 0
        padded = F.pad(grid, (pad, pad, pad, pad))
        hh, ww = grid.shape[-2:]
        feats = torch.stack([padded[:, :, pad + dy : pad + dy + hh, pad + dx : pad + dx + ww][:, :, where]
                             for dy, dx in self.taps], 1) if self.taps else grid.new_zeros(grid.shape[0], 0, 0, int(where.sum()))
        acc = torch.matmul(self.tap_weight, feats.reshape(grid.shape[0], -1, feats.shape[-1]))
        return acc.to(torch.int64) + self.ctx.b0.reshape(1, -1, 1)
