"""Integer inference of the MLP-DPCM predictor: identical results on every machine and thread count.

Integer activations and weights are held in floating-point arrays so that numpy's BLAS does the matrix
products: every product and partial sum is an integer whose magnitude is bounded (checked when the weights
are loaded, from each layer's column sums of |weights|, its input range and its bias), so each is exact and
the result does not depend on the summation order, blocking, FMA use or thread count. Weights whose bound
stays below 2**24 run in **float32** (twice the BLAS throughput; the exports since the speed work of issue 13
are sized for it), others in float64 (bound 2**53). The shifts are multiplications by powers of two followed
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
#: integers of magnitude below these are exact in the dtype, and so is every sum of them that stays below
_EXACT = {np.dtype(np.float32): float(2**24), np.dtype(np.float64): float(2**53)}


@dataclass
class Layer:
    weight: np.ndarray  # (in, out) integers held in the predictor's dtype
    bias: np.ndarray  # (out,) integers held in the predictor's dtype
    scale: float  # 2**-shift
    clip: float  # hidden layers: activations are clipped to 0..clip after the shift
    bound: float  # the largest |partial sum| this layer can reach on its input range


class IntegerPredictor:
    """The three channel MLPs; ``first_layer_neighbours`` batches the shared part of the first layers."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.mlps: list[list[Layer]] = []
        for c in range(3):
            layers, l = [], 0
            in_limit = float(_INPUT_LIMIT)
            while f"int.c{c}.l{l}.weight" in tensors:
                w = np.asarray(tensors[f"int.c{c}.l{l}.weight"], dtype=np.float64)
                b = np.asarray(tensors[f"int.c{c}.l{l}.bias"], dtype=np.float64).reshape(-1)
                shift = int(np.asarray(tensors[f"int.c{c}.l{l}.shift"]).reshape(-1)[0])
                clip = float(np.asarray(tensors.get(f"int.c{c}.l{l}.clip", ACT_CLIP)).reshape(-1)[0])
                if not -64 <= shift <= 64 or w.ndim != 2 or b.shape != (w.shape[1],) or not 1 <= clip <= ACT_CLIP:
                    raise CodecError(f"integer MLP layer c{c}.l{l} is malformed")
                bound = float((np.abs(w).sum(axis=0) * in_limit + np.abs(b)).max())
                if bound >= _EXACT[np.dtype(np.float64)]:
                    raise CodecError(f"integer MLP layer c{c}.l{l} could overflow exact float64 integers")
                layers.append(Layer(w, b, 2.0**-shift, clip, bound))
                in_limit = clip
                l += 1
            if not layers or layers[0].weight.shape[0] != NUM_FEATURES or layers[-1].weight.shape[1] != 2:
                raise CodecError(f"integer MLP of channel {c} is missing or has the wrong shape")
            self.mlps.append(layers)
        worst = max(layer.bound for mlp in self.mlps for layer in mlp)
        #: float32 when every partial sum of every layer is an exact float32 integer, else float64
        self.dtype = np.dtype(np.float32 if worst < _EXACT[np.dtype(np.float32)] else np.float64)
        for mlp in self.mlps:
            for layer in mlp:
                layer.weight = layer.weight.astype(self.dtype)
                layer.bias = layer.bias.astype(self.dtype)
        # feature-major layout (features x pixels): pixels are the long, contiguous axis of every array, so the
        # element-wise steps run over long rows; weights are stored transposed (out, in) for ``W @ h``
        self.weights_t = [[np.ascontiguousarray(layer.weight.T) for layer in mlp] for mlp in self.mlps]
        self.biases = [[layer.bias[:, None] for layer in mlp] for mlp in self.mlps]
        # neighbour columns of the three first layers stacked: one product serves all channels
        self.first_neighbours = np.concatenate([w[0][:, :NUM_NEIGHBOUR_FEATURES] for w in self.weights_t], axis=0)
        self.widths = [m[0].weight.shape[1] for m in self.mlps]
        self.bounds = np.cumsum([0] + self.widths)

    def kernel_arguments(self) -> tuple:
        """The MLPs as :func:`nicbeam.codecs.predictive.kernel.run_group` takes them (built once)."""
        if getattr(self, "_kernel_args", None) is None:
            n_layers = len(self.mlps[0]) - 1
            if any(len(m) - 1 != n_layers for m in self.mlps) or len(set(self.widths)) != 1:
                raise CodecError("the compiled coder needs three channel MLPs of the same shape")
            scales = np.array([[layer.scale for layer in m] for m in self.mlps], dtype=np.float64)
            clips = np.array([[layer.clip for layer in m] for m in self.mlps], dtype=self.dtype)
            self._kernel_args = (
                np.ascontiguousarray(self.first_neighbours),
                tuple(w[0] for w in self.weights_t),
                tuple(np.ascontiguousarray(m[0].bias) for m in self.mlps),
                tuple(w[l + 1] for w in self.weights_t for l in range(n_layers)),
                tuple(np.ascontiguousarray(m[l + 1].bias) for m in self.mlps for l in range(n_layers)),
                scales, clips, n_layers,
            )
        return self._kernel_args

    def first_layer_neighbours(self, neighbours: np.ndarray) -> np.ndarray:
        """(36, B) integer neighbour features -> (sum of first widths, B) partial first-layer sums."""
        return self.first_neighbours @ neighbours

    def channel(self, c: int, partial: np.ndarray, current: np.ndarray, ref_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finish channel ``c``'s MLP: ``partial`` from :meth:`first_layer_neighbours`, ``current`` (2, B) the
        coded channels of the pixel minus their references (0 where not coded yet), ``ref_c`` (B,) its
        reference. Returns (mean in 1/8 pixel, clipped to 0..255*8+7; scale index 0..NUM_SCALES-1), int64."""
        layers, wts, biases = self.mlps[c], self.weights_t[c], self.biases[c]
        w = wts[0]
        acc = partial[self.bounds[c] : self.bounds[c + 1]] + biases[0]
        acc += w[:, NUM_NEIGHBOUR_FEATURES + 2 : NUM_NEIGHBOUR_FEATURES + 3] * (ref_c - 128.0)
        for k in range(c):
            acc += w[:, NUM_NEIGHBOUR_FEATURES + k : NUM_NEIGHBOUR_FEATURES + k + 1] * current[k]
        h = _requantize(acc, layers[0].scale, layers[0].clip)
        for layer, wt, bias in zip(layers[1:-1], wts[1:-1], biases[1:-1]):
            h = _requantize(np.add(wt @ h, bias, out=None), layer.scale, layer.clip)
        out = wts[-1] @ h
        out += biases[-1]
        out *= layers[-1].scale
        np.floor(out, out=out)
        mean = np.clip(ref_c * MEAN_FRACTIONS + out[0], 0, 256 * MEAN_FRACTIONS - 1).astype(np.int64)
        scale = np.clip(out[1], 0, NUM_SCALES - 1).astype(np.int64)
        return mean, scale


def _requantize(acc: np.ndarray, scale: float, clip: float) -> np.ndarray:
    """In place: ``clip(floor(acc * scale), 0, clip)`` (ReLU and the layer's shift), exact on integers."""
    np.multiply(acc, scale, out=acc)
    np.floor(acc, out=acc)
    return np.clip(acc, 0.0, clip, out=acc)
