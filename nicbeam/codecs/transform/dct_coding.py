"""Context-adaptive coding of quantised 8x8 DCT coefficients (the dct codec's entropy coder).

Per component and stripe: the DC plane by MED prediction (wavefront), then the 63 AC frequencies in zigzag
order, each as one plane over all blocks (see :func:`planes.encode_plane`). An AC symbol's base context is
the component type (luma/chroma), the frequency band and the levels already coded for the next-lower
horizontal and vertical frequency of the same block; the plane coder adds the same frequency's levels in the
neighbouring blocks. Models adapt across stripes and are shared by Cb and Cr.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nicbeam.codecs.transform import planes
from nicbeam.codecs.transform.blocks import FREQ_LEFT, FREQ_UP
from nicbeam.entropy.adaptive import LEVEL_CAP, AdaptiveDecoder, AdaptiveEncoder, AdaptiveModels

#: Frequency band of zigzag index k (1..63): the first five alone, then growing groups.
BAND = np.searchsorted(np.array([2, 3, 4, 5, 6, 10, 15, 21, 28, 36, 45]), np.arange(64), side="right")
N_BANDS = int(BAND.max()) + 1
_INTRA = LEVEL_CAP + 2  # intra-block buckets: empty block so far, quiet neighbours, neighbour level sum 1..3+
#: |AC(0,1)| of a linear ramp is about 0.4 times the DC difference of the blocks left and right of it.
_RAMP_RATIO = 0.4
#: Largest DC level magnitude a decoder accepts (DCT of 8-bit samples with step >= 1 stays far below).
DC_LIMIT = 1 << 16


@dataclass
class DctModels:
    """All adaptive models of one dct stream, plus the last block row of the previous stripe per component."""

    ac: AdaptiveModels = field(default_factory=lambda: planes.level_models(2 * N_BANDS * _INTRA))
    ac_rem: AdaptiveModels = field(default_factory=lambda: planes.remainder_models(2 * N_BANDS))
    dc: tuple[AdaptiveModels, AdaptiveModels] = field(default_factory=lambda: planes.predicted_models(2))
    dc_top: dict[int, np.ndarray] = field(default_factory=dict)
    ac_top: dict[int, np.ndarray] = field(default_factory=dict)


def _dc_gradients(dc: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted levels of the first horizontal and vertical AC from the DC ramp across neighbouring blocks.

    Integer DC levels in, so encoder and decoder agree; edges replicate. Used as the 'lower frequency' of
    zigzag 1 and 2, whose only lower frequency is the DC.
    """
    padded = np.pad(dc.astype(np.int64), 1, mode="edge")
    horizontal = np.abs(padded[1:-1, 2:] - padded[1:-1, :-2])
    vertical = np.abs(padded[2:, 1:-1] - padded[:-2, 1:-1])
    scale = _RAMP_RATIO * steps[0]
    return (np.minimum(np.rint(horizontal * (scale / steps[1])), LEVEL_CAP).astype(np.int64),
            np.minimum(np.rint(vertical * (scale / steps[2])), LEVEL_CAP).astype(np.int64))


def _intra_base(levels: np.ndarray, k: int, kind: int, nonzero: np.ndarray, ramps) -> np.ndarray:
    """Base contexts of frequency k from the block's own lower frequencies (``levels`` has a zero column 64)."""
    if k <= 2:
        near = ramps[k - 1]
    else:
        near = np.minimum(levels[:, :, FREQ_LEFT[k]] + levels[:, :, FREQ_UP[k]], LEVEL_CAP)
    intra = np.where(near > 0, near + 1, (nonzero > 0).astype(np.int64))
    return (kind * N_BANDS + BAND[k]) * _INTRA + intra


def encode_component(enc: AdaptiveEncoder, models: DctModels, q: np.ndarray, component: int,
                     steps: np.ndarray) -> None:
    """Code one component's levels ``(rows, cols, 64)`` of one stripe (``steps``: its zigzag quantiser steps)."""
    kind = min(component, 1)
    rows, cols, _ = q.shape
    planes.encode_predicted(enc, models.dc, q[:, :, 0], kind, models.dc_top.get(component))
    levels = np.zeros((rows, cols, 65), dtype=np.int64)  # column 0 (DC) and 64 (none) stay 0
    nonzero = np.zeros((rows, cols), dtype=np.int64)
    ramps = _dc_gradients(q[:, :, 0], steps)
    top = models.ac_top.get(component)
    for k in range(1, 64):
        base = _intra_base(levels, k, kind, nonzero, ramps)
        levels[:, :, k] = planes.encode_plane(enc, models.ac, models.ac_rem, q[:, :, k], base,
                                              kind * N_BANDS + BAND[k], None if top is None else top[:, k])
        nonzero += levels[:, :, k] > 0
    models.dc_top[component] = q[-1, :, 0].astype(np.int64)
    models.ac_top[component] = levels[-1]


def decode_component(dec: AdaptiveDecoder, models: DctModels, rows: int, cols: int, component: int,
                     steps: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_component`: int64 levels ``(rows, cols, 64)``."""
    kind = min(component, 1)
    q = np.zeros((rows, cols, 64), dtype=np.int64)
    q[:, :, 0] = planes.decode_predicted(dec, models.dc, (rows, cols), kind, models.dc_top.get(component), DC_LIMIT)
    levels = np.zeros((rows, cols, 65), dtype=np.int64)
    nonzero = np.zeros((rows, cols), dtype=np.int64)
    ramps = _dc_gradients(q[:, :, 0], steps)
    top = models.ac_top.get(component)
    for k in range(1, 64):
        q[:, :, k], levels[:, :, k] = planes.decode_plane(
            dec, models.ac, models.ac_rem, (rows, cols), _intra_base(levels, k, kind, nonzero, ramps),
            kind * N_BANDS + BAND[k], None if top is None else top[:, k])
        nonzero += levels[:, :, k] > 0
    models.dc_top[component] = q[-1, :, 0].copy()
    models.ac_top[component] = levels[-1]
    return q
