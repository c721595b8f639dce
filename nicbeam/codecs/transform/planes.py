"""Context-adaptive coding of 2-D planes of quantised integers, shared by the dct and dwt codecs.

Two plane coders, both vectorised over groups whose contexts depend only on earlier groups:

* :func:`encode_plane` / :func:`decode_plane` for zero-heavy planes (one DCT frequency across all blocks, one
  wavelet subband). A row is coded as its even columns, then its odd columns; a symbol's context combines a
  caller-given *base* context (e.g. frequency band and the block's lower frequencies, or the wavelet parent)
  with the levels of its already-coded spatial neighbours: the row above, and for odd columns also the left
  and right neighbours.
* :func:`encode_predicted` / :func:`decode_predicted` for smooth planes (DCT DC values, the wavelet LL band):
  each value is predicted by LOCO-I's median edge detector from its left, upper and upper-left neighbours and
  the residual is coded with a context of the local gradient; anti-diagonals are the groups (wavefront).
"""

from __future__ import annotations

import numpy as np

from nicbeam.entropy.adaptive import (
    LEVEL_CAP,
    REMAINDER_DIRECT,
    AdaptiveDecoder,
    AdaptiveEncoder,
    AdaptiveModels,
)

#: Bucket of the weighted neighbour level sum (0..4*LEVEL_CAP) used in the spatial context.
_NEIGHBOUR_BUCKET = np.array([0, 1, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5], dtype=np.int64)
#: Spatial contexts per base context: neighbour bucket (6) times column parity (2).
SPATIAL_CONTEXTS = 12
#: Remainder contexts per remainder base: quiet or busy neighbourhood.
REMAINDER_SPLIT = 2
#: Gradient-activity buckets of the predicted-plane coder.
ACTIVITY_CONTEXTS = 8
_ACTIVITY_EDGES = np.array([1, 2, 3, 5, 9, 17, 33], dtype=np.int64)


def level_models(n_base: int) -> AdaptiveModels:
    """Level models for ``n_base`` base contexts, with a prior leaning towards zero in quiet neighbourhoods."""
    n = n_base * SPATIAL_CONTEXTS
    quiet = (np.arange(n) % SPATIAL_CONTEXTS) // 2 == 0
    initial = np.where(quiet[:, None], np.array([12, 2, 1, 1]), np.array([4, 3, 2, 2]))
    return AdaptiveModels(n, LEVEL_CAP + 1, initial)


def remainder_models(n_base: int) -> AdaptiveModels:
    """Remainder models (two per base: quiet or busy neighbourhood), prior falling off with the remainder."""
    initial = np.maximum(1, 8 >> np.minimum(np.arange(REMAINDER_DIRECT + 1), 3))
    return AdaptiveModels(n_base * REMAINDER_SPLIT, REMAINDER_DIRECT + 1, initial)


def predicted_models(n_base: int) -> tuple[AdaptiveModels, AdaptiveModels]:
    """Level and remainder models of the predicted-plane coder for ``n_base`` base contexts."""
    return (AdaptiveModels(n_base * ACTIVITY_CONTEXTS, LEVEL_CAP + 1),
            AdaptiveModels(n_base * ACTIVITY_CONTEXTS, REMAINDER_DIRECT + 1))


def _spatial_contexts(levels: np.ndarray, top: np.ndarray | None) -> np.ndarray:
    """The spatial context of every cell, computed at once (encoder side: all levels are known)."""
    rows, cols = levels.shape
    padded = np.zeros((rows + 1, cols + 2), dtype=np.int64)
    if top is not None:
        padded[0, 1:-1] = top
    padded[1:, 1:-1] = levels
    above = padded[:-1, 1:-1]
    even = 2 * above + padded[:-1, :-2] + padded[:-1, 2:]
    odd = 2 * above + padded[1:, :-2] + padded[1:, 2:]
    parity = np.arange(cols) % 2
    weighted = np.where(parity == 0, even, odd)
    return _NEIGHBOUR_BUCKET[weighted] * 2 + parity


def encode_plane(enc: AdaptiveEncoder, models: AdaptiveModels, rem_models: AdaptiveModels, values: np.ndarray,
                 base: np.ndarray | int, rem_base: int, top: np.ndarray | None = None) -> np.ndarray:
    """Code a plane of signed integers; returns its levels (what later planes' contexts may use)."""
    mags = np.abs(values.astype(np.int64))
    levels = np.minimum(mags, LEVEL_CAP)
    spatial = _spatial_contexts(levels, top)
    contexts = np.asarray(base, dtype=np.int64) * SPATIAL_CONTEXTS + spatial
    for r in range(values.shape[0]):
        enc.symbols(levels[r, 0::2], models, contexts[r, 0::2])
        enc.symbols(levels[r, 1::2], models, contexts[r, 1::2])
    capped = levels == LEVEL_CAP
    enc.remainders(mags[capped], rem_models, rem_base * REMAINDER_SPLIT + (spatial[capped] >= 6))
    enc.signs(values.ravel())
    return levels


def decode_plane(dec: AdaptiveDecoder, models: AdaptiveModels, rem_models: AdaptiveModels, shape: tuple[int, int],
                 base: np.ndarray | int, rem_base: int, top: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_plane`: the signed values and the levels."""
    rows, cols = shape
    base = np.broadcast_to(np.asarray(base, dtype=np.int64) * SPATIAL_CONTEXTS, shape)
    padded = np.zeros((rows + 1, cols + 2), dtype=np.int64)
    if top is not None:
        padded[0, 1:-1] = top
    spatial = np.zeros(shape, dtype=np.int64)
    for r in range(rows):
        prev, cur = padded[r], padded[r + 1]
        even = _NEIGHBOUR_BUCKET[2 * prev[1:cols + 1:2] + prev[0:cols:2] + prev[2:cols + 2:2]] * 2
        spatial[r, 0::2] = even
        cur[1:cols + 1:2] = dec.symbols(models, base[r, 0::2] + even)
        odd = _NEIGHBOUR_BUCKET[2 * prev[2:cols + 1:2] + cur[1:cols:2] + cur[3:cols + 2:2]] * 2 + 1
        spatial[r, 1::2] = odd
        cur[2:cols + 1:2] = dec.symbols(models, base[r, 1::2] + odd)
    levels = padded[1:, 1:-1]
    mags = levels.copy()
    capped = levels == LEVEL_CAP
    mags[capped] = dec.remainders(rem_models, rem_base * REMAINDER_SPLIT + (spatial[capped] >= 6))
    return dec.signs(mags), levels


def _activity(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.searchsorted(_ACTIVITY_EDGES, np.abs(a - c) + np.abs(b - c), side="right")


def _med(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector: min/max of left and above at an edge, else the planar a + b - c."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))


def _diagonals(rows: int, cols: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for d in range(rows + cols - 1):
        r = np.arange(max(0, d - cols + 1), min(rows, d + 1))
        out.append((r, d - r))
    return out


def _neighbours(padded: np.ndarray, r: np.ndarray, c: np.ndarray, has_top: bool):
    """Left, above and upper-left values of cells (r, c) in the (rows+1, cols+1) padded plane, with edge rules."""
    a, b, ul = padded[r + 1, c], padded[r, c + 1], padded[r, c]
    first_col = c == 0
    a = np.where(first_col, b, a)
    ul = np.where(first_col, b, ul)
    if not has_top:
        first_row = r == 0
        b = np.where(first_row, a, b)
        ul = np.where(first_row, a, ul)
    return a, b, ul


def encode_predicted(enc: AdaptiveEncoder, models: tuple[AdaptiveModels, AdaptiveModels], values: np.ndarray,
                     base: int, top: np.ndarray | None = None) -> None:
    """Code a smooth plane of signed integers by MED prediction, anti-diagonal by anti-diagonal."""
    rows, cols = values.shape
    padded = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    if top is not None:
        padded[0, 1:] = top
    padded[1:, 1:] = values
    level_m, rem_m = models
    for r, c in _diagonals(rows, cols):
        a, b, ul = _neighbours(padded, r, c, top is not None)
        ctx = base * ACTIVITY_CONTEXTS + _activity(a, b, ul)
        residual = values[r, c] - _med(a, b, ul)
        mags = np.abs(residual)
        enc.levels(mags, level_m, ctx)
        capped = mags >= LEVEL_CAP
        enc.remainders(mags[capped], rem_m, ctx[capped])
        enc.signs(residual)


def decode_predicted(dec: AdaptiveDecoder, models: tuple[AdaptiveModels, AdaptiveModels], shape: tuple[int, int],
                     base: int, top: np.ndarray | None = None, limit: int = 1 << 30) -> np.ndarray:
    """Inverse of :func:`encode_predicted`; values are clipped to +-``limit`` so garbage cannot overflow."""
    rows, cols = shape
    padded = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    if top is not None:
        padded[0, 1:] = top
    level_m, rem_m = models
    for r, c in _diagonals(rows, cols):
        a, b, ul = _neighbours(padded, r, c, top is not None)
        ctx = base * ACTIVITY_CONTEXTS + _activity(a, b, ul)
        mags = dec.levels(level_m, ctx)
        capped = mags >= LEVEL_CAP
        mags[capped] = dec.remainders(rem_m, ctx[capped])
        padded[r + 1, c + 1] = np.clip(_med(a, b, ul) + dec.signs(mags), -limit, limit)
    return padded[1:, 1:]
