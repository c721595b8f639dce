"""Wavefront coding of tiles with the integer MLP predictor: the loop shared by encoder and decoder.

Inside a tile a pixel's context reaches REACH_RIGHT columns to the right on the rows above, so pixel (y, x)
only needs pixels of earlier *wavefront steps* ``t = x + (REACH_RIGHT + 1) * y``. Every pixel of a step, in
every tile of a group of tiles (tiles are independent), is predicted in one batch: one gather of the context,
one integer matrix product for the neighbour part of the three first layers, then per channel the rest of
its MLP and one vectorised rANS call. Encoder and decoder run this same loop, so they see the same contexts
(the encoder writes the reconstruction, not the source, into the buffer: near-lossless stays in sync).

Decoding and near-lossless encoding run this loop compiled (:mod:`nicbeam.codecs.predictive.kernel`); the
numpy loop here is its reference (tests compare them) and serves the tests' per-batch records. ``parallel``
is a third, loop-free way for lossless encoding (every context is known, so all pixels are predicted in large
teacher-forced batches); the codec encodes with the kernel, which measured 1.3x faster (kodim01, same bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nicbeam.codecs.predictive.context import CHANNEL_ORDER, OFFSETS, REACH_LEFT, REACH_RIGHT, REACH_UP
from nicbeam.codecs.predictive.export import MEAN_FRACTIONS
from nicbeam.codecs.predictive.weights import PredictiveModel, alphabet

SLOPE = REACH_RIGHT + 1
_DY = np.array([dy for dy, _ in OFFSETS])
_DX = np.array([dx for _, dx in OFFSETS])
_I_N, _I_W, _I_NW = OFFSETS.index((-1, 0)), OFFSETS.index((0, -1)), OFFSETS.index((-1, -1))


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of every tile, row-major."""
    return [(top, left, min(tile, height - top), min(tile, width - left))
            for top in range(0, height, tile) for left in range(0, width, tile)]


def tile_groups(tiles: list, per_group: int) -> list[list]:
    """Consecutive tiles batched together, ``per_group`` at most (bounds memory)."""
    return [tiles[i : i + per_group] for i in range(0, len(tiles), per_group)]


@dataclass
class Schedule:
    """The pixels of a group of tiles in coding order and the step boundaries."""

    g: np.ndarray
    y: np.ndarray
    x: np.ndarray
    bounds: np.ndarray  # pixels of step s are [bounds[s], bounds[s + 1])

    @classmethod
    def build(cls, heights: np.ndarray, widths: np.ndarray, tile: int) -> "Schedule":
        n = len(heights)
        g, y, x = (a.reshape(-1) for a in np.meshgrid(np.arange(n), np.arange(tile), np.arange(tile), indexing="ij"))
        keep = (y < heights[g]) & (x < widths[g])
        g, y, x = g[keep], y[keep], x[keep]
        step = x + SLOPE * y
        order = np.argsort(step, kind="stable")  # within a step: tile order, then row
        step = step[order]
        bounds = np.searchsorted(step, np.arange(int(step[-1]) + 2))
        return cls(g[order], y[order], x[order], bounds)

    def max_batch(self) -> int:
        return int(np.diff(self.bounds).max())


def _contexts(flat: np.ndarray, base: np.ndarray, avail: np.ndarray, nb_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(references (3, B), neighbour features (36, B)) of the pixels at buffer positions ``base``; ``avail``
    (12, B) says which neighbours exist. Feature-major: the pixel axis is the contiguous one."""
    vals = flat[nb_off[:, None] + base]
    v = vals.reshape(len(OFFSETS), 3, len(base))
    north, west, nw = v[_I_N], v[_I_W], v[_I_NW]
    has_n, has_w = avail[_I_N] > 0, avail[_I_W] > 0
    hi, lo = np.maximum(north, west), np.minimum(north, west)
    med = np.where(nw >= hi, lo, np.where(nw <= lo, hi, north + west - nw))
    ref = np.where(has_n & has_w, med, np.where(has_w, west, np.where(has_n, north, 128.0))).astype(flat.dtype, copy=False)
    v -= ref
    v *= avail[:, None, :]
    return ref, vals


#: pixels per batch of the parallel (teacher-forced) lossless encoder
PARALLEL_CHUNK = 1 << 15


def code_group(model: PredictiveModel, delta: int, tile: int, heights: np.ndarray, widths: np.ndarray,
               coder, source: np.ndarray | None, record: list | None = None, parallel: bool = False,
               compiled: bool = True) -> np.ndarray:
    """Code one group of tiles. ``source``: (G, tile, tile, 3) uint8 in coding order when encoding (``coder``
    takes ``encode(scale, frac, symbol)``), None when decoding (``coder.decode(scale, frac)`` gives the
    symbols). Returns the reconstruction, same shape. ``parallel`` (lossless encoding only): every context is
    known up front, so all pixels are predicted in large batches, then handed to ``coder`` in wavefront order.
    ``record`` (tests): gets ``(g, y, x, c, features, mean, scale)`` per channel batch. ``compiled``: run the
    loop as :mod:`nicbeam.codecs.predictive.kernel` (same integers; the numpy loop below is its reference)."""
    n = len(heights)
    sched = Schedule.build(heights, widths, tile)
    pw = tile + REACH_LEFT + REACH_RIGHT
    predictor = model.predictor
    dtype = predictor.dtype  # buffer of integer pixel values in the MLP's dtype: no conversions per batch
    buf = np.zeros((n, tile + REACH_UP, pw, 3), dtype=dtype)
    flat = buf.reshape(-1)
    nb_off = ((_DY * pw + _DX)[:, None] * 3 + np.arange(3)[None, :]).reshape(-1)  # (36,)
    # per pixel, in coding order: buffer position and which neighbours exist (the tile border cuts them off)
    base_all = ((sched.g * (tile + REACH_UP) + sched.y + REACH_UP) * pw + sched.x + REACH_LEFT) * 3
    yy, xx = sched.y + _DY[:, None], sched.x + _DX[:, None]
    avail_all = ((yy >= 0) & (xx >= 0) & (xx < widths[sched.g])).astype(dtype)  # (12, pixels)
    step_q, m = 2 * delta + 1, alphabet(delta)
    half = m // 2
    if source is not None:
        src = source.reshape(-1).astype(np.int64)
        src_all = ((sched.g * tile + sched.y) * tile + sched.x) * 3
    if parallel:
        if source is None or delta:
            raise ValueError("parallel coding needs the source and delta 0")
        buf[:, REACH_UP:, REACH_LEFT : REACH_LEFT + tile] = source
        total = len(base_all)
        out = np.zeros((3, 3, total), dtype=np.int64)  # (scale, fraction, symbol) x channel x pixel
        for a in range(0, total, PARALLEL_CHUNK):
            b = min(total, a + PARALLEL_CHUNK)
            ref, neigh = _contexts(flat, base_all[a:b], avail_all[:, a:b], nb_off)
            partial = predictor.first_layer_neighbours(neigh)
            current = np.zeros((2, b - a), dtype=dtype)
            for c in range(3):
                mean, scale = predictor.channel(c, partial, current, ref[c])
                x = src[src_all[a:b] + c]
                p = mean // MEAN_FRACTIONS
                out[:, c, a:b] = scale, mean % MEAN_FRACTIONS, (x - p + half) % m
                if c < 2:
                    current[c] = x - ref[c]
        for s in range(len(sched.bounds) - 1):
            a, b = sched.bounds[s], sched.bounds[s + 1]
            for c in range(3 if a < b else 0):
                coder.encode(out[0, c, a:b], out[1, c, a:b], out[2, c, a:b])
        return source.copy()
    if compiled and record is None:
        _run_kernel(predictor, delta, flat, base_all, avail_all, sched.bounds, nb_off, coder,
                    src if source is not None else None, src_all if source is not None else None)
        return buf[:, REACH_UP:, REACH_LEFT : REACH_LEFT + tile].astype(np.uint8)
    for s in range(len(sched.bounds) - 1):
        a, b = sched.bounds[s], sched.bounds[s + 1]
        if a == b:
            continue
        base = base_all[a:b]
        ref, neigh = _contexts(flat, base, avail_all[:, a:b], nb_off)
        partial = predictor.first_layer_neighbours(neigh)
        current = np.zeros((2, len(base)), dtype=dtype)
        for c in range(3):
            ref_c = ref[c]
            mean, scale = predictor.channel(c, partial, current, ref_c)
            if record is not None:  # (B, 39) features in the training layout
                g, y, x = sched.g[a:b], sched.y[a:b], sched.x[a:b]
                record.append((g, y, x, c, np.concatenate([neigh, current, (ref_c - 128.0)[None]]).T.copy(), mean, scale))
            p = mean // MEAN_FRACTIONS
            frac = mean % MEAN_FRACTIONS
            if source is not None:
                e = src[src_all[a:b] + c] - p
                q = np.sign(e) * ((np.abs(e) + delta) // step_q)
                coder.encode(scale, frac, (q + half) % m)
                recon = np.clip(p + q * step_q, 0, 255)
            elif delta == 0:  # symbol = (x - p + 128) mod 256
                recon = (p + coder.decode(scale, frac) + 128) & 255
            else:
                sym = coder.decode(scale, frac)
                q_low = -((p + delta) // step_q)
                q = q_low + (sym - half - q_low) % m
                recon = np.clip(p + q * step_q, 0, 255)
            flat[base + c] = recon
            if c < 2:
                current[c] = recon - ref_c
    return buf[:, REACH_UP:, REACH_LEFT : REACH_LEFT + tile].astype(np.uint8)


def _run_kernel(predictor, delta: int, flat: np.ndarray, base_all: np.ndarray, avail_all: np.ndarray,
                bounds: np.ndarray, nb_off: np.ndarray, coder, src: np.ndarray | None, src_all: np.ndarray | None) -> None:
    """The compiled loop: decoding drives ``coder`` (a decoder with ``.decoder`` and ``.smap``) in place;
    encoding collects every (scale, fraction, symbol), then hands them to ``coder`` step by step, channel by
    channel, as the numpy loop does."""
    from nicbeam.codecs.errors import PayloadError
    from nicbeam.codecs.predictive.kernel import STREAM_EXHAUSTED, run_group

    total = len(base_all)
    nothing_u64, nothing_i64 = np.zeros(1, np.uint64), np.zeros(1, np.int64)
    if src is None:
        dec = coder.decoder
        t = dec.tables
        rans = (dec.state, dec.words, dec.pos, *t.search, t.size)
        smap = np.asarray(coder.smap, dtype=np.int64)
        src = src_all = nothing_i64
        outs = (np.zeros((3, 1), np.uint8),) * 3
    else:
        rans = (nothing_u64, nothing_u64, 0, np.zeros(1, np.uint32), np.zeros(1, np.uint8), 1)
        smap = nothing_i64
        outs = tuple(np.zeros((3, total), np.uint8) for _ in range(3))
    pos = run_group(flat, base_all, np.ascontiguousarray(avail_all), bounds.astype(np.int64), nb_off.astype(np.int64),
                    *predictor.kernel_arguments(), src is nothing_i64, delta, smap, *rans,
                    src.astype(np.int64, copy=False), src_all.astype(np.int64, copy=False), *outs)
    if pos == STREAM_EXHAUSTED:
        raise PayloadError("rANS stream ends before its symbols do")
    if src is nothing_i64:
        coder.decoder.pos = pos
        return
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        for c in range(3 if a < b else 0):
            coder.encode(outs[0][c, a:b], outs[1][c, a:b], outs[2][c, a:b])


def to_coding_order(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., list(CHANNEL_ORDER)]


def from_coding_order(coded: np.ndarray) -> np.ndarray:
    out = np.empty_like(coded)
    out[..., list(CHANNEL_ORDER)] = coded
    return out
