"""Swin-style window self-attention (Liu et al. ICCV 2021) and Transformer-CNN mixture blocks (Liu, Sun,
Katto, CVPR 2023) on feature maps of any size (mixture blocks take NCHW maps, Swin blocks (B, H, W, C)).

Windows: a map whose height/width are not multiples of the window is padded on the bottom/right; padded
tokens are masked out as attention *keys*, so they cannot change any valid output (their own outputs are
cropped away). Shifted windows (SW-MSA) roll the padded grid by half a window; tokens that the roll brought
together from opposite borders carry different region labels and do not attend to each other. In the
original (unrolled) frame this is a plain partition: rows ``p`` and ``p'`` share a window iff
``(p - shift) // window == (p' - shift) // window`` (the same for columns), which the tests check against a
brute-force global attention.

Masked pairs get ``MASKED`` (-1e9) added to their logits, so a valid row's masked weights are exactly 0 after
the softmax and a row with no valid key (a window entirely in the padding) stays finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: added to the logits of masked (query, key) pairs: exp() of it underflows to exactly 0 next to any real
#: logit in float32/float64/bfloat16, yet it stays finite, so a row with no allowed key (a window entirely in
#: the padding) gives finite, ignored values instead of NaN (which would reach the gradients)
MASKED = -1e9


def region_labels(hp: int, wp: int, window: int, shift: int, device=None) -> torch.Tensor:
    """(hp, wp) int64 label of each position's (shifted) window in the unrolled frame: equal labels = same window."""
    rows = torch.div(torch.arange(hp, device=device) - shift, window, rounding_mode="floor")
    cols = torch.div(torch.arange(wp, device=device) - shift, window, rounding_mode="floor")
    return (rows[:, None] + 1) * (wp + 2) + (cols[None, :] + 1)


def relative_position_index(window: int) -> torch.Tensor:
    """(T, T) index into the (2w-1)^2 relative-position bias table for tokens of one window (T = w*w)."""
    yy, xx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([yy.flatten(), xx.flatten()])  # (2, T)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def partition(grid: torch.Tensor, window: int) -> torch.Tensor:
    """(B, Hp, Wp, ...) -> (B * nW, window*window, ...) windows in raster order."""
    b, hp, wp = grid.shape[:3]
    rest = grid.shape[3:]
    t = grid.reshape(b, hp // window, window, wp // window, window, *rest)
    t = t.transpose(2, 3)
    return t.reshape(b * (hp // window) * (wp // window), window * window, *rest)


def unpartition(windows: torch.Tensor, b: int, hp: int, wp: int, window: int) -> torch.Tensor:
    """Inverse of :func:`partition`."""
    rest = windows.shape[2:]
    t = windows.reshape(b, hp // window, wp // window, window, window, *rest)
    return t.transpose(2, 3).reshape(b, hp, wp, *rest)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias (Swin)."""

    #: True: training runs PyTorch's ``scaled_dot_product_attention`` too, instead of
    #: :func:`attention_for_training` (the same values; kept as the baseline of ``benchmarks/bench_train_step.py``)
    sdpa_in_training: bool = False

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.dim, self.heads, self.window = dim, heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        """(heads, T, T) relative-position bias of one window."""
        t = self.window * self.window
        return self.bias_table[self.bias_index.reshape(-1)].reshape(t, t, self.heads).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """``windows`` (B, nW, T, C); ``allowed`` (nW, T, T) bool (query x key, shared by the B images) or None
        when every key is allowed. Masked logits get ``MASKED`` added: their softmax weight is exactly 0."""
        b, nw, t, c = windows.shape
        qkv = self.qkv(windows).reshape(b * nw, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B * nW, heads, T, d)
        mask = self.position_bias()[None]
        if allowed is not None:
            mask = mask + torch.where(allowed, 0.0, MASKED).to(mask.dtype)[:, None]
        if torch.is_grad_enabled() and (q.requires_grad or mask.requires_grad) and not self.sdpa_in_training:
            out = attention_for_training(q.reshape(b, nw, self.heads, t, -1), k.reshape(b, nw, self.heads, t, -1),
                                         v.reshape(b, nw, self.heads, t, -1), mask.to(q.dtype))
            out = out.reshape(b * nw, self.heads, t, -1)
        else:
            # one mask per window, materialised: PyTorch's fused CPU attention takes it (~2x faster than the
            # plain form measured here) only then, not broadcast
            mask = mask.expand(b, nw, -1, -1, -1).reshape(b * nw, self.heads, t, t).to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, nw, t, c))


def attention_for_training(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v, written out for training. With gradients PyTorch's CPU
    ``scaled_dot_product_attention`` takes its plain (math) form, whose "safe softmax" also scans every row for
    an all ``-inf`` mask (``isneginf``, ``all``, ``where``); our masks are finite (``MASKED``), and the plain
    softmax makes a whole bf16 + channels-last ``tcm-hyperprior`` training step 1.13x faster
    (``benchmarks/bench_train_step.py --sdpa-baseline``; 1.20x in a first A/B run)."""
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return (logits + mask).softmax(-1) @ v


class SwinBlock(nn.Module):
    """Pre-norm Swin block on channels-last maps (B, H, W, C): (shifted) window attention and an MLP, both
    residual; any spatial size."""

    def __init__(self, dim: int, heads: int, window: int, shifted: bool, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def attend(self, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Attention over a padded grid (B, Hp, Wp, C) whose valid part is the top-left ``height x width``;
        returns (B, Hp, Wp, C). Values in the padded part cannot change the valid part of the result."""
        b, hp, wp, c = grid.shape
        w = self.window
        # one window covers the whole map: shifting would only cut it into regions (Swin does the same)
        shift = self.shift if (height > w or width > w) else 0
        allowed = None
        if shift or (hp, wp) != (height, width):
            labels = region_labels(hp, wp, w, shift, grid.device)
            valid = torch.zeros(hp, wp, dtype=torch.bool, device=grid.device)
            valid[:height, :width] = True
            if shift:
                grid = torch.roll(grid, (-shift, -shift), dims=(1, 2))
                labels = torch.roll(labels, (-shift, -shift), dims=(0, 1))
                valid = torch.roll(valid, (-shift, -shift), dims=(0, 1))
            lab = partition(labels[None], w)  # (nW, T)
            ok = partition(valid[None], w)
            allowed = (lab[:, :, None] == lab[:, None, :]) & ok[:, None, :]
        windows = partition(grid, w)
        out = self.attn(windows.reshape(b, -1, *windows.shape[1:]), allowed)
        out = unpartition(out.flatten(0, 1), b, hp, wp, w)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return out

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = t.shape
        hp, wp = -(-h // self.window) * self.window, -(-w // self.window) * self.window
        grid = self.norm1(t)
        if (hp, wp) != (h, w):
            grid = F.pad(grid, (0, 0, 0, wp - w, 0, hp - h))
        t = t + self.attend(grid, h, w)[:, :h, :w]
        return t + self.mlp(self.norm2(t))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU and a skip (the convolutional half of a mixture block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.01),
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.01),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MixtureBlock(nn.Module):
    """Transformer-CNN mixture block (Liu et al. 2023): a 1x1 projection splits the channels into a
    convolutional half (local) and a Swin half (non-local), a 1x1 projection merges them, residual around all.

    Works on NCHW maps in channels-last memory (:func:`mixture_stage` converts once), so the 1x1 projections
    and the Swin half run on (B, H, W, C) views without copies. The merging projection starts at zero, so a
    fresh block is the identity: a model whose other layers are warm-started from ``mbt2018-mean`` starts out
    computing that model (up to float rounding: channels-last convolutions sum in another order)."""

    def __init__(self, channels: int, heads: int, window: int, shifted: bool) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"mixture block needs an even channel count, not {channels}")
        half = channels // 2
        self.split = nn.Linear(channels, channels)
        self.conv_branch = ResidualBlock(half)
        self.swin_branch = SwinBlock(half, heads, window, shifted)
        self.merge = nn.Linear(channels, channels)
        nn.init.zeros_(self.merge.weight)
        nn.init.zeros_(self.merge.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)  # B, H, W, C (a view when x is channels-last)
        a, b = self.split(t).chunk(2, dim=-1)
        a = a.permute(0, 3, 1, 2)
        if a.dtype == torch.float64:  # the float64 (exact decoding) convolution is ~25% faster on NCHW-contiguous input
            a = a.contiguous()
        local = self.conv_branch(a).permute(0, 2, 3, 1)
        merged = self.merge(torch.cat([local, self.swin_branch(b)], dim=-1))
        return (t + merged).permute(0, 3, 1, 2)


class _ChannelsLast(nn.Module):
    """Puts a map into channels-last memory (same values), the layout the mixture blocks work in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def mixture_stage(channels: int, heads: int, window: int, depth: int) -> nn.Sequential:
    """``depth`` mixture blocks alternating W-MSA and SW-MSA (depth 2: one of each)."""
    blocks = [MixtureBlock(channels, heads, window, shifted=bool(i % 2)) for i in range(depth)]
    return nn.Sequential(_ChannelsLast(), *blocks)
