"""Convolutional recurrent cells of the Toderici et al. encoder/decoder: ConvLSTM, associative LSTM,
ConvGRU and residual GRU, with one interface so the networks are built by configuration.

Every cell maps ``(x, state) -> (output, new_state)``; ``state`` is ``None`` at the first iteration
(zeros are made to fit ``x``). The input convolution carries the cell's kernel and stride (the encoder's
cells downsample by 2), the hidden-to-hidden convolution keeps the resolution.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

State = Optional[tuple[torch.Tensor, ...]]


class RecurrentCell(nn.Module):
    """Base: ``in_ch -> hidden`` channels, input conv of ``kernel``/``stride``, hidden conv of ``hidden_kernel``."""

    #: gate channels per hidden channel in the input and hidden convolutions
    gates: int = 1
    #: tensors in the state
    state_size: int = 1

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3, stride: int = 1, hidden_kernel: int = 1) -> None:
        super().__init__()
        self.hidden = hidden
        self.stride = stride
        self.x2h = nn.Conv2d(in_ch, self.x_channels(hidden), kernel, stride, padding=kernel // 2)
        self.h2h = nn.Conv2d(hidden, self.h_channels(hidden), hidden_kernel, padding=hidden_kernel // 2, bias=False)
        with torch.no_grad():
            self.init_biases(self.x2h.bias)

    def init_biases(self, bias: torch.Tensor) -> None:
        """Adjust the input convolution's freshly initialised bias in place (gate offsets); default: as is.

        Only fresh networks see this: loaded weights and checkpoints replace it."""

    def x_channels(self, hidden: int) -> int:
        """Output channels of the input convolution."""
        return self.gates * hidden

    def h_channels(self, hidden: int) -> int:
        """Output channels of the hidden convolution."""
        return self.gates * hidden

    def zero_state(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, _, h, w = x.shape
        h, w = -(-h // self.stride), -(-w // self.stride)
        return tuple(x.new_zeros(b, self.hidden, h, w) for _ in range(self.state_size))

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        state = state if state is not None else self.zero_state(x)
        return self.step(self.x2h(x), state)

    def step(self, gx: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        raise NotImplementedError


class ConvLSTMCell(RecurrentCell):
    """LSTM with convolutions (Shi et al. 2015), as in Toderici 2016/2017."""

    gates, state_size = 4, 2

    def init_biases(self, bias):
        """Input, forget and output gates start at sigmoid(1) = 0.73 rather than 0.5 (the forget bias of
        Jozefowicz et al. 2015, applied to i and o too). With all three at 0 the first output is
        0.5 * tanh(0.5 * tanh(g)) ~ g / 4 per cell, and through the decoder's four stacked cells a fresh
        decoder barely depends on its codes (``benchmarks/rnn_init_sensitivity.py``: 1.1-1.5e-4, against
        2.3-2.7e-3 for the GRU; with the offsets 2.3-3.0e-3), so one-shot training never left a grey image."""
        n = self.hidden
        bias[: 3 * n] += 1.0

    def step(self, gx, state):
        h, c = state
        i, f, o, g = (gx + self.h2h(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvGRUCell(RecurrentCell):
    """GRU with convolutions (Cho et al. 2014); the reset gate acts on the hidden convolution's output."""

    gates, state_size = 3, 1

    def step(self, gx, state):
        (h,) = state
        rx, zx, nx = gx.chunk(3, dim=1)
        rh, zh, nh = self.h2h(h).chunk(3, dim=1)
        r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
        h = (1 - z) * torch.tanh(nx + r * nh) + z * h
        return h, (h,)


class ResidualGRUCell(ConvGRUCell):
    """Toderici 2017's GRU/ResNet hybrid: a GRU whose output adds a projection of its input,
    ``o_t = h_t + W_ox x_t`` (the projection is a fourth block of the input convolution)."""

    def x_channels(self, hidden: int) -> int:  # the three gates and W_ox x
        return 4 * hidden

    def step(self, gx, state):
        gates, skip = gx[:, : 3 * self.hidden], gx[:, 3 * self.hidden :]
        h, (h_state,) = super().step(gates, state)
        return h + skip, (h_state,)


class AssociativeLSTMCell(RecurrentCell):
    """Associative LSTM (Danihelka et al. 2016) with one memory copy, convolutional as in Toderici 2016.

    The hidden vector holds ``hidden/2`` complex numbers (real halves then imaginary halves). Gates i, f, o
    are real; the update u, input key r_i and output key r_o are complex and bounded
    (``bound(z) = z / max(1, |z|)``); ``c = f c + r_i (*) (i u)``, ``h = o bound(r_o (*) c)`` with (*) the
    elementwise complex product (holographic binding)."""

    state_size = 2

    def init_biases(self, bias):
        """The keys r_in and r_out start near 1 + 0j (binding starts as the identity) and the gates i and o at
        sigmoid(1). With keys near 0 each cell's first output is a product of three small numbers and a fresh
        four-cell decoder's output moves by less than 3e-11 when every code bit flips; with this start
        2.2-2.5e-3, as the GRU's (``benchmarks/rnn_init_sensitivity.py``)."""
        k = self.hidden // 2
        i, _, o = bias[: 3 * k].chunk(3)  # the layout ``step`` reads: real gates, then complex u, r_in, r_out
        _, r_in, r_out = bias[3 * k :].chunk(3)
        for view in (i, o, r_in[:k], r_out[:k]):  # r[:k]: the real halves
            view += 1.0

    def x_channels(self, hidden: int) -> int:
        if hidden % 2:
            raise ValueError(f"associative LSTM needs an even hidden size, got {hidden}")
        return 3 * (hidden // 2) + 3 * hidden

    h_channels = x_channels

    def step(self, gx, state):
        h, c = state
        k = self.hidden // 2
        g = gx + self.h2h(h)
        i, f, o = (torch.sigmoid(t).repeat(1, 2, 1, 1) for t in g[:, : 3 * k].chunk(3, dim=1))
        u, r_in, r_out = (_bound(t) for t in g[:, 3 * k :].chunk(3, dim=1))
        c = f * c + _cmul(r_in, i * u)
        h = o * _bound(_cmul(r_out, c))
        return h, (h, c)


def _cmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise complex product of tensors holding (real, imaginary) halves along dim 1."""
    ar, ai = a.chunk(2, dim=1)
    br, bi = b.chunk(2, dim=1)
    return torch.cat([ar * br - ai * bi, ar * bi + ai * br], dim=1)


def _bound(z: torch.Tensor) -> torch.Tensor:
    """Complex numbers (halves along dim 1) scaled to modulus at most 1."""
    re, im = z.chunk(2, dim=1)
    modulus = torch.sqrt(re * re + im * im + 1e-12)
    return z / torch.clamp(modulus, min=1.0).repeat(1, 2, 1, 1)


CELLS: dict[str, type[RecurrentCell]] = {
    "lstm": ConvLSTMCell,
    "assoc-lstm": AssociativeLSTMCell,
    "gru": ConvGRUCell,
    "residual-gru": ResidualGRUCell,
}


def make_cell(kind: str, in_ch: int, hidden: int, **kwargs) -> RecurrentCell:
    """A cell of type ``kind`` (one of :data:`CELLS`)."""
    if kind not in CELLS:
        raise ValueError(f"unknown cell type {kind!r}; choose one of {', '.join(CELLS)}")
    return CELLS[kind](in_ch, hidden, **kwargs)
