"""Loading MLP-DPCM weights without torch: the integer tensors of a ``nicbeam train`` export, digest-checked.

The SHA-256 of the safetensors file is what every stream carries; a sidecar ``<name>.json`` whose ``sha256``
disagrees with the file is refused. ``NICBEAM_WEIGHTS_DIR`` overrides the folder, as for the learned codecs.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nicbeam.codecs.errors import CodecError
from nicbeam.codecs.weights_file import read_verified, resolve_weights
from nicbeam.codecs.predictive.export import MEAN_FRACTIONS
from nicbeam.codecs.predictive.intmlp import IntegerPredictor
from nicbeam.entropy.rans_lanes import Tables

_CACHE: dict[str, "PredictiveModel"] = {}
_LOCK = threading.Lock()
DEFAULT_NAME = "mlp-dpcm"
#: per-image scale correction chosen by the encoder and signalled (2 bytes): the predicted scale index s moves
#: by SCALE_SHIFTS[i] grid steps (x1.096 each) and, near-lossless, widens to sqrt(s**2 + (BETAS[j] * delta)**2)
#: (contexts are reconstructed pixels, up to delta off; how much that matters depends on the image: flat
#: images want no widening, textured ones ~0.6-1.0, measured on training photographs)
SCALE_SHIFTS = (-3, -2, -1, 0, 1, 2, 3)
BETAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.3)


@dataclass
class PredictiveModel:
    """Integer predictor + lossless residual table + per-delta rANS tables (built on first use)."""

    path: Path
    digest: bytes
    predictor: IntegerPredictor
    pmf: np.ndarray  # (rows, 256) int64, rows sum to 2**16
    predictor_tensors: dict[str, np.ndarray]  # the integer MLP as stored
    scales: np.ndarray  # the float64 scale grid shipped with the tables
    _tables: dict[int, Tables] = field(default_factory=dict)
    _scale_maps: dict[tuple, np.ndarray] = field(default_factory=dict)

    def tables(self, delta: int) -> Tables:
        with _LOCK:
            if delta not in self._tables:
                self._tables[delta] = Tables(near_lossless_pmf(self.pmf, delta))
            return self._tables[delta]

    def scale_map(self, delta: int, shift: int = 0, beta: float = 0.0) -> np.ndarray:
        """Scale index -> corrected index: moved by ``shift`` grid steps, then widened for ``delta`` by
        ``beta``. Only IEEE multiplications, additions and comparisons of the shipped grid: identical on
        every machine."""
        key = (delta, shift, beta)
        with _LOCK:
            if key not in self._scale_maps:
                last = len(self.scales) - 1
                moved = self.scales[np.clip(np.arange(last + 1) + shift, 0, last)]
                square = self.scales * self.scales
                target = moved * moved + (beta * delta) ** 2
                self._scale_maps[key] = np.minimum(np.searchsorted(square, target), last).astype(np.int64)
            return self._scale_maps[key]


def alphabet(delta: int) -> int:
    """Number of quantized residual symbols for ``delta`` (JPEG-LS's RANGE): 256 when lossless."""
    return (255 + 2 * delta) // (2 * delta + 1) + 1


def near_lossless_pmf(pmf: np.ndarray, delta: int) -> np.ndarray:
    """Integer rows over the quantized residual q (symbol q + M//2, wrapped modulo M), each entry the sum of
    the lossless frequencies of the residuals -128..127 in q's bin; a bin outside that range (reached only
    through the wrap) gets frequency 1, taken from the row's largest entry. Exact integers summing to 2**16."""
    if delta == 0:
        return pmf
    step, m = 2 * delta + 1, alphabet(delta)
    q = np.arange(m) - m // 2
    if q[0] * step - delta > -128 or q[-1] * step + delta < 127:
        raise CodecError(f"delta {delta}: residual bins do not cover -128..127")
    lo = np.clip(q * step - delta, -128, 128) + 128
    hi = np.clip(q * step + delta + 1, -128, 128) + 128
    cum = np.concatenate([np.zeros((pmf.shape[0], 1), dtype=np.int64), np.cumsum(pmf, axis=1)], axis=1)
    out = cum[:, hi] - cum[:, lo]
    empty = out == 0
    if empty.any():
        rows = np.arange(out.shape[0])
        top = np.argmax(out, axis=1)
        out[rows, top] -= empty.sum(axis=1)
        out[empty] = 1
    return out


def load(name_or_path: str | os.PathLike) -> PredictiveModel:
    path = resolve_weights(name_or_path)
    key = str(path.resolve())
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    from safetensors.numpy import load as load_bytes

    data, digest = read_verified(path, "MLP-DPCM weights: train and export them with `nicbeam train --family mlp-dpcm`")
    tensors = load_bytes(data)
    if "tables.pmf" not in tensors:
        raise CodecError(f"{path}: no MLP-DPCM integer tables (tables.pmf) in these weights")
    pmf = np.asarray(tensors["tables.pmf"], dtype=np.int64)
    int_tensors = {k: v for k, v in tensors.items() if k.startswith("int.")}
    scales = np.asarray(tensors.get("tables.scales", np.zeros(0)), dtype=np.float64)
    if scales.shape != (pmf.shape[0] // MEAN_FRACTIONS,) or not (np.diff(scales) > 0).all():
        raise CodecError(f"{path}: scale grid missing or inconsistent with the tables")
    model = PredictiveModel(path, digest, IntegerPredictor(int_tensors), pmf, int_tensors, scales)
    model.tables(0)  # validates the table
    with _LOCK:
        return _CACHE.setdefault(key, model)
