"""Inputs shared by the learned-codec tests: a seeded smooth test image, and table sets so narrow that most
latents take the escape path."""

from __future__ import annotations

import numpy as np

from nicbeam.entropy.coder import TableSet
from nicbeam.entropy.tables import PMF_TOTAL


def smooth_image(seed: int, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8: per-channel diagonal ramps plus seeded Gaussian noise (sigma 12), like a busy photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (1 + c) + yy * (3 - c)) % 256 for c in range(3)], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def narrow_tables(tables: TableSet, keep: int, first: int) -> TableSet:
    """A table set coding only the values first..first+keep-1 per row, everything else through the escape path."""
    rows = len(tables)
    pmf = np.zeros((rows, keep + 1), dtype=np.int64)
    pmf[:, :keep] = PMF_TOTAL // (2 * keep)
    pmf[:, keep] = PMF_TOTAL - pmf[:, :keep].sum(axis=1)
    return TableSet(pmf, np.full(rows, keep + 1), np.full(rows, first, dtype=np.int64))
