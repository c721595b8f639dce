"""Integer probability tables, computed once at export and stored with the weights (covered by the digest).

Every table is a row of positive integers summing to exactly ``2**PMF_BITS``: entries ``0..n-1`` are the
values ``offset .. offset + n - 1`` and entry ``n`` is the *escape* symbol for values outside that range
(their value then follows in the stream, see :mod:`nicbeam.entropy.coder`). Because the coder only ever sees
these integers (divided by ``2**PMF_BITS``, exact in float64), encoder and decoder quantise identically.
"""

from __future__ import annotations

import math

import numpy as np

PMF_BITS = 16
PMF_TOTAL = 1 << PMF_BITS
TAIL_MASS = 1e-6


def quantize_pmf(pmf: np.ndarray, escape_mass: float) -> np.ndarray:
    """float probabilities of n values + escape mass -> n + 1 int64 frequencies >= 1 summing to PMF_TOTAL."""
    p = np.concatenate([np.asarray(pmf, dtype=np.float64), [max(float(escape_mass), 0.0)]])
    p = np.clip(p, 0.0, None)
    p = p / p.sum()
    n = p.size
    if n >= PMF_TOTAL // 2:
        raise ValueError(f"table of {n} symbols is too large for {PMF_BITS}-bit probabilities")
    freq = np.floor(p * (PMF_TOTAL - n)).astype(np.int64) + 1
    deficit = PMF_TOTAL - int(freq.sum())
    # hand the rounding remainder to the largest entries, one each, deterministically
    order = np.argsort(-p, kind="stable")
    i = 0
    while deficit > 0:
        freq[order[i % n]] += 1
        deficit -= 1
        i += 1
    assert int(freq.sum()) == PMF_TOTAL and freq.min() >= 1
    return freq


def pack_tables(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of different lengths -> (padded (R, max_len) int32 table, (R,) int32 lengths incl. escape)."""
    width = max(len(r) for r in rows)
    table = np.zeros((len(rows), width), dtype=np.int32)
    lengths = np.zeros(len(rows), dtype=np.int32)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
        lengths[i] = len(r)
    return table, lengths


def factorized_tables(pmf_fn, channels: int, search: int = 2048) -> dict[str, np.ndarray]:
    """Tables for an EntropyBottleneck: ``pmf_fn(lo, hi)`` gives float64 (C, hi-lo+1) probabilities.

    The support of channel c is the smallest integer range holding all but TAIL_MASS of its mass; the rest
    is the escape probability.
    """
    pmf = pmf_fn(-search, search)
    rows, offsets = [], []
    for c in range(channels):
        p = pmf[c]
        cdf = np.cumsum(p)
        total = cdf[-1]
        lo = int(np.searchsorted(cdf, TAIL_MASS / 2 * total))
        hi = int(np.searchsorted(cdf, total * (1 - TAIL_MASS / 2)))
        hi = min(max(hi, lo), p.size - 1)
        inside = p[lo : hi + 1]
        rows.append(quantize_pmf(inside, max(1.0 - inside.sum(), 0.0)))
        offsets.append(lo - search)
    table, lengths = pack_tables(rows)
    return {"pmf": table, "length": lengths, "offset": np.asarray(offsets, dtype=np.int32)}


def gaussian_tables(scales: np.ndarray, sigmas: float = 8.0) -> dict[str, np.ndarray]:
    """Tables for zero-mean Gaussians of the given scales on the integers -R..R, R = ceil(sigmas * scale)."""
    rows, offsets = [], []
    for s in np.asarray(scales, dtype=np.float64):
        r = max(1, int(math.ceil(sigmas * s)))
        k = np.arange(-r, r + 1, dtype=np.float64)
        upper = np.array([0.5 * math.erfc(-(v + 0.5) / (s * math.sqrt(2))) for v in k])
        lower = np.array([0.5 * math.erfc(-(v - 0.5) / (s * math.sqrt(2))) for v in k])
        p = upper - lower
        rows.append(quantize_pmf(p, max(1.0 - p.sum(), 0.0)))
        offsets.append(-r)
    table, lengths = pack_tables(rows)
    return {"pmf": table, "length": lengths, "offset": np.asarray(offsets, dtype=np.int32)}
