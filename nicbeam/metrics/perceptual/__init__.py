"""Perceptual image metrics on user-supplied network weights: LPIPS (full-reference, lower = closer) and
NIMA (no-reference, mean and std of a 1..10 score distribution). See ``docs/perceptual.md``.

Importing this package does not import torch; the networks are imported when first loaded.
"""

from __future__ import annotations

from typing import Any

from nicbeam.metrics.perceptual.scorer import COLUMNS, METRICS, PerceptualScorer, load_scorer
from nicbeam.metrics.perceptual.weights import ENV_VARS, PerceptualWeightsError, weight_paths

_LAZY = {
    "LPIPSNet": "nicbeam.metrics.perceptual.lpips",
    "load_lpips": "nicbeam.metrics.perceptual.lpips",
    "random_lpips_state": "nicbeam.metrics.perceptual.lpips",
    "NIMANet": "nicbeam.metrics.perceptual.nima",
    "load_nima": "nicbeam.metrics.perceptual.nima",
    "random_nima_state": "nicbeam.metrics.perceptual.nima",
}


def __getattr__(name: str) -> Any:
    """Import the torch modules on first use of one of their names."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COLUMNS", "ENV_VARS", "METRICS", "PerceptualScorer", "PerceptualWeightsError", "load_scorer",
           "weight_paths", *_LAZY]
