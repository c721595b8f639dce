"""Exact integer entropy parameters of the channel-wise context model (``charm-hyperprior``), for encoder and decoder.

Integer stacks of :class:`nicbeam.entropy.integer_net.IntegerHyperSynthesis` (the same quantisation at export,
the same ``< 2**53`` bound checked at load, the same integer-valued float64 convolutions):

* ``hs``: the hyper-synthesis, z -> hyperprior parameters ``h`` (2M channels, fixed point);
* ``slice{i}``: slice ``i``'s transform over ``cat(h, y_hat of slices < i)``.

What a slice transform reads: ``h`` and the decoded earlier slices ``y_hat = symbol + mean`` as the integers
``symbol * 2**8 + mean_q`` (exact, as for the checkerboard's context), both requantised to the stack's input
fixed point (fractional bits chosen at export from the calibrated maximum). Its output and ``h``'s slice are each
rounded to ``COMBINE_FRAC_BITS`` fractional bits and added in int64 (the float model's residual form), then cut
to means (1/256) and scale indices exactly as for ``mbt2018-mean``.
"""

from __future__ import annotations

import torch

from nicbeam.entropy.integer_net import (
    COMBINE_FRAC_BITS, EP_INPUT_LIMIT, MEAN_FRAC_BITS, IntegerHyperSynthesis, ep_input_frac,
    mean_scale_from_accumulator, requantize,
)


def mean_scale_slice(params: torch.Tensor, i: int, k: int, m: int) -> torch.Tensor:
    """Slice ``i`` (channels ``i*k .. i*k+k-1``) of a (B, 2M, ...) means-then-log-scales tensor, as (B, 2k, ...):
    its means, then its log-scales; the layout of both the float model's and the integer network's parameters."""
    return torch.cat([params[:, i * k : (i + 1) * k], params[:, m + i * k : m + (i + 1) * k]], dim=1)


def quantise_channel_context(model, zs: torch.Tensor, slice_inputs: list[torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The integer stacks of ``model`` (a ChannelContextHyperprior), calibrated on hyper-latents ``zs`` and on
    each slice transform's float inputs ``slice_inputs[i]`` (``cat(h_s(z), y_hat of slices < i)``)."""
    hs = IntegerHyperSynthesis.from_float(model.h_s, zs)
    nets = [IntegerHyperSynthesis.from_float(t, x, in_frac=ep_input_frac(x), input_limit=EP_INPUT_LIMIT)
            for t, x in zip(model.slice_transforms, slice_inputs)]
    return IntegerChannelContext(hs, nets, model.M).tensors(prefix)


class IntegerChannelContext:
    """Exact (means, scale indices) of each slice given the earlier ones; built from the weights file's tensors."""

    def __init__(self, hs: IntegerHyperSynthesis, slice_nets: list[IntegerHyperSynthesis], m: int) -> None:
        if not slice_nets or m % len(slice_nets):
            raise ValueError(f"channel context: {len(slice_nets)} slices do not divide M={m}")
        self.hs, self.slice_nets, self.M = hs, list(slice_nets), m
        self.k = m // len(slice_nets)
        for i, net in enumerate(self.slice_nets):
            first, last = net.w0, getattr(net, f"w{len(net.specs) - 1}")
            if first.shape[1] != 2 * m + i * self.k or last.shape[0] != 2 * self.k:
                raise ValueError(f"channel context: slice {i}'s transform does not fit M={m} in {len(slice_nets)} slices")
            if any(spec["transposed"] or spec["stride"] != 1 for spec in net.specs):
                raise ValueError(f"channel context: slice {i}'s transform must keep the latent resolution")

    @property
    def slices(self) -> int:
        return len(self.slice_nets)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """``<prefix>N.*`` the hyper-synthesis (as mbt2018-mean) and ``<prefix>slice{i}.*`` the slice transforms."""
        out = self.hs.tensors(prefix)
        for i, net in enumerate(self.slice_nets):
            out.update(net.tensors(f"{prefix}slice{i}."))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str, m: int) -> "IntegerChannelContext":
        nets, i = [], 0
        while f"{prefix}slice{i}.0.weight" in tensors:
            nets.append(IntegerHyperSynthesis.from_tensors(tensors, f"{prefix}slice{i}."))
            i += 1
        return cls(IntegerHyperSynthesis.from_tensors(tensors, prefix), nets, m)

    def hyper(self, z: torch.Tensor) -> torch.Tensor:
        """Integer z (B, N, h, w) -> int64 hyperprior parameters (B, 2M, 4h, 4w) at ``hs.out_frac`` bits."""
        return self.hs(z)

    def slice_parameters(self, h: torch.Tensor, i: int, previous_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means float32, scale indices int64), each (B, k, H, W), of slice ``i``; ``previous_q``: the decoded
        slices ``0 .. i-1`` as int64 ``symbol * 2**8 + mean * 2**8`` (B, i*k, H, W)."""
        if previous_q.shape[1] != i * self.k:
            raise ValueError(f"slice {i} needs {i * self.k} decoded channels, got {previous_q.shape[1]}")
        net = self.slice_nets[i]
        x = torch.cat([requantize(h, self.hs.out_frac, net.in_frac),
                       requantize(previous_q.to(torch.int64), MEAN_FRAC_BITS, net.in_frac)], dim=1)
        acc = net(x)
        h_slice = mean_scale_slice(h, i, self.k, self.M)
        params = requantize(h_slice, self.hs.out_frac, COMBINE_FRAC_BITS) + requantize(acc, net.out_frac, COMBINE_FRAC_BITS)
        return mean_scale_from_accumulator(params, COMBINE_FRAC_BITS, self.k)
