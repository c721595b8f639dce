"""The wavefront loop of :mod:`nicbeam.codecs.predictive.wavefront`, compiled with numba: decoding and
near-lossless encoding of one group of tiles in one call.

Why compiled: per wavefront step the numpy loop makes ~70 small array calls per slice (contexts, three channel
MLPs, rANS, reconstruction); at ~500 pixels per step that call overhead, not arithmetic, was most of the decode
time. Here a step is a few loops over its pixels plus the hidden-layer products through BLAS (``np.dot``), and
the whole call releases the GIL, so slices decode on parallel threads. The arithmetic is the integer arithmetic
of :mod:`nicbeam.codecs.predictive.intmlp` (integers exact in the predictor's float dtype, any summation order),
so it gives the same integers as the numpy loop, which stays as the reference (tests compare the two).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nicbeam.codecs.predictive.context import NUM_NEIGHBOUR_FEATURES, OFFSETS
from nicbeam.entropy.rans_lanes import Tables

_N_OFF = len(OFFSETS)
_I_N, _I_W, _I_NW = OFFSETS.index((-1, 0)), OFFSETS.index((0, -1)), OFFSETS.index((-1, -1))
_NF = NUM_NEIGHBOUR_FEATURES

_MASK, _SIXTEEN, _LOW = np.uint64(0xFFFF), np.uint64(16), np.uint64(1 << 16)  # uint64 only: no float promotion
_BUCKET_BITS = np.uint64(Tables.BUCKET_BITS)
_BUCKETS = 16 - Tables.BUCKET_BITS  # log2 of the buckets per row

#: kernel return value when the rANS words run out before the symbols (a damaged stream)
STREAM_EXHAUSTED = -1


@njit(nogil=True, cache=True)
def run_group(flat, base_all, avail_all, bounds, nb_off,  # buffer and schedule
              first_n, first_t, first_b, layers_w, layers_b, scales, clips, n_layers,  # integer MLPs
              decoding, delta, smap,  # mode
              state, words, pos, cum, coarse, size,  # rANS decoder (decoding): Tables.search
              src, src_all, out_scale, out_frac, out_sym):  # source and collected symbols (encoding)
    """Code every wavefront step of a group; returns the new word position (decoding) or 0, or
    STREAM_EXHAUSTED. ``layers_w[c * n_layers + l]`` is channel c's layer l + 1 (out, in); ``scales[c, l]`` /
    ``clips[c, l]`` its shift factor / activation clip (layer 0 is the first layer)."""
    step_q = 2 * delta + 1
    m = (255 + 2 * delta) // step_q + 1
    half = m // 2
    lanes = state.shape[0]
    widths = first_t[0].shape[0]
    dt = flat.dtype
    for s in range(bounds.shape[0] - 1):
        a, b = bounds[s], bounds[s + 1]
        nb = b - a
        if nb == 0:
            continue
        feats = np.empty((_NF, nb), dtype=dt)
        ref = np.empty((3, nb), dtype=dt)
        for i in range(nb):
            p = base_all[a + i]
            for k in range(_NF):
                feats[k, i] = flat[p + nb_off[k]]
            has_n = avail_all[_I_N, a + i] > 0
            has_w = avail_all[_I_W, a + i] > 0
            for ch in range(3):
                north = feats[_I_N * 3 + ch, i]
                west = feats[_I_W * 3 + ch, i]
                nw = feats[_I_NW * 3 + ch, i]
                if has_n and has_w:
                    hi = max(north, west)
                    lo = min(north, west)
                    r = lo if nw >= hi else (hi if nw <= lo else north + west - nw)
                elif has_w:
                    r = west
                elif has_n:
                    r = north
                else:
                    r = 128.0
                ref[ch, i] = r
            for o in range(_N_OFF):
                av = avail_all[o, a + i]
                for ch in range(3):
                    feats[o * 3 + ch, i] = (feats[o * 3 + ch, i] - ref[ch, i]) * av
        partial = np.dot(first_n, feats)
        cur = np.zeros((2, nb), dtype=dt)
        for c in range(3):
            w = first_t[c]
            bias = first_b[c]
            h = np.empty((widths, nb), dtype=dt)
            sc0, cl0 = scales[c, 0], clips[c, 0]
            for j in range(widths):
                wr, wc0, wc1 = w[j, _NF + 2], w[j, _NF], w[j, _NF + 1]
                for i in range(nb):
                    acc = partial[c * widths + j, i] + bias[j] + wr * (ref[c, i] - 128.0)
                    if c >= 1:
                        acc += wc0 * cur[0, i]
                    if c >= 2:
                        acc += wc1 * cur[1, i]
                    v = np.floor(acc * sc0)
                    h[j, i] = min(max(v, 0.0), cl0)
            for l in range(n_layers):
                h2 = np.dot(layers_w[c * n_layers + l], h)
                lb = layers_b[c * n_layers + l]
                sc = scales[c, l + 1]
                if l < n_layers - 1:
                    cl = clips[c, l + 1]
                    for j in range(h2.shape[0]):
                        for i in range(nb):
                            h2[j, i] = min(max(np.floor((h2[j, i] + lb[j]) * sc), 0.0), cl)
                else:
                    for j in range(h2.shape[0]):
                        for i in range(nb):
                            h2[j, i] = np.floor((h2[j, i] + lb[j]) * sc)
                h = h2
            for i in range(nb):
                mean = int(min(max(ref[c, i] * 8.0 + h[0, i], 0.0), 2047.0))
                scale = int(min(max(h[1, i], 0.0), 63.0))
                pred = mean >> 3
                frac = mean & 7
                if decoding:
                    row = smap[scale] * 8 + frac
                    lane = i % lanes
                    x = state[lane]
                    slot = x & _MASK
                    sym = np.int64(coarse[(row << _BUCKETS) | np.int64(slot >> _BUCKET_BITS)])
                    k = row * (size + 1) + sym
                    while cum[k + 1] <= slot:
                        k += 1
                    sym = k - row * (size + 1)
                    lo = np.uint64(cum[k])
                    x = (np.uint64(cum[k + 1]) - lo) * (x >> _SIXTEEN) + slot - lo
                    if x < _LOW:
                        if pos >= words.shape[0]:
                            return STREAM_EXHAUSTED
                        x = (x << _SIXTEEN) | words[pos]
                        pos += 1
                    state[lane] = x
                    if delta == 0:
                        recon = (pred + sym + 128) & 255
                    else:
                        q_low = -((pred + delta) // step_q)
                        q = q_low + (sym - half - q_low) % m
                        recon = min(max(pred + q * step_q, 0), 255)
                else:
                    e = src[src_all[a + i] + c] - pred
                    q = (abs(e) + delta) // step_q
                    if e < 0:
                        q = -q
                    out_scale[c, a + i] = scale
                    out_frac[c, a + i] = frac
                    out_sym[c, a + i] = (q + half) % m
                    recon = min(max(pred + q * step_q, 0), 255)
                flat[base_all[a + i] + c] = recon
                if c < 2:
                    cur[c, i] = recon - ref[c, i]
    return pos
