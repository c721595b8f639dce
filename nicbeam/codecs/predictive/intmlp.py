"""Integer inference of the MLP-DPCM predictor: identical results on every machine and thread count.

Integer activations and weights are held in float64 arrays so that numpy's BLAS does the matrix products:
every product and partial sum is an integer below 2**53 (checked when the weights are loaded from the bounds
``WEIGHT_LIMIT`` / ``ACT_CLIP`` / feature range), so each is exact and the result does not depend on the
summation order, blocking, FMA use or thread count. The shifts are multiplications by powers of two followed
by ``floor``, also exact. Nothing else is computed in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nicbeam.codecs.errors import CodecError
from nicbeam.codecs.predictive.context import NUM_FEATURES, NUM_NEIGHBOUR_FEATURES
from nicbeam.codecs.predictive.export import ACT_CLIP, MEAN_FRACTIONS, NUM_SCALES

#: inputs are integers of magnitude <= 255 (neighbour and current-pixel differences, reference - 128)
_INPUT_LIMIT = 255
_EXACT = float(2**52)


@dataclass
class Layer:
    weight: np.ndarray  # (in, out) float64 holding integers
    bias: np.ndarray  # (out,) float64 holding integers
    scale: float  # 2**-shift


class IntegerPredictor:
    """The three channel MLPs; ``first_layer_neighbours`` batches the shared part of the first layers."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.mlps: list[list[Layer]] = []
        for c in range(3):
            layers, l = [], 0
            while f"int.c{c}.l{l}.weight" in tensors:
                w = np.asarray(tensors[f"int.c{c}.l{l}.weight"], dtype=np.float64)
                b = np.asarray(tensors[f"int.c{c}.l{l}.bias"], dtype=np.float64).reshape(-1)
                shift = int(np.asarray(tensors[f"int.c{c}.l{l}.shift"]).reshape(-1)[0])
                if not -64 <= shift <= 64 or w.ndim != 2 or b.shape != (w.shape[1],):
                    raise CodecError(f"integer MLP layer c{c}.l{l} is malformed")
                in_limit = _INPUT_LIMIT if l == 0 else ACT_CLIP
                if (np.abs(w).sum(axis=0) * in_limit + np.abs(b)).max() >= _EXACT:
                    raise CodecError(f"integer MLP layer c{c}.l{l} could overflow exact float64 integers")
                layers.append(Layer(w, b, 2.0**-shift))
                l += 1
            if not layers or layers[0].weight.shape[0] != NUM_FEATURES or layers[-1].weight.shape[1] != 2:
                raise CodecError(f"integer MLP of channel {c} is missing or has the wrong shape")
            self.mlps.append(layers)
        # neighbour rows of the three first layers side by side: one product serves all channels
        self.first_neighbours = np.concatenate([m[0].weight[:NUM_NEIGHBOUR_FEATURES] for m in self.mlps], axis=1)
        self.widths = [m[0].weight.shape[1] for m in self.mlps]
        self.bounds = np.cumsum([0] + self.widths)

    def first_layer_neighbours(self, neighbours: np.ndarray) -> np.ndarray:
        """(B, 36) integer neighbour features -> (B, sum of first widths) partial first-layer sums."""
        return neighbours @ self.first_neighbours

    def channel(self, c: int, partial: np.ndarray, current: np.ndarray, ref_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finish channel ``c``'s MLP: ``partial`` from :meth:`first_layer_neighbours`, ``current`` (B, 2) the
        coded channels of the pixel minus their references (0 where not coded yet), ``ref_c`` (B,) its
        reference. Returns (mean in 1/8 pixel, clipped to 0..255*8+7; scale index 0..NUM_SCALES-1), int64."""
        layers = self.mlps[c]
        first = layers[0]
        w = first.weight
        acc = partial[:, self.bounds[c] : self.bounds[c + 1]] + first.bias
        acc += (ref_c - 128.0)[:, None] * w[NUM_NEIGHBOUR_FEATURES + 2]
        for k in range(c):
            acc += current[:, k : k + 1] * w[NUM_NEIGHBOUR_FEATURES + k]
        h = _requantize(acc, first.scale)
        for layer in layers[1:-1]:
            h = _requantize(h @ layer.weight + layer.bias, layer.scale)
        last = layers[-1]
        out = np.floor((h @ last.weight + last.bias) * last.scale)
        mean = np.clip(ref_c * MEAN_FRACTIONS + out[:, 0], 0, 256 * MEAN_FRACTIONS - 1).astype(np.int64)
        scale = np.clip(out[:, 1], 0, NUM_SCALES - 1).astype(np.int64)
        return mean, scale


def _requantize(acc: np.ndarray, scale: float) -> np.ndarray:
    """In place: ``clip(floor(acc * scale), 0, ACT_CLIP)`` (ReLU and the layer's shift), exact on integers."""
    np.multiply(acc, scale, out=acc)
    np.floor(acc, out=acc)
    np.maximum(acc, 0.0, out=acc)
    return np.minimum(acc, float(ACT_CLIP), out=acc)
