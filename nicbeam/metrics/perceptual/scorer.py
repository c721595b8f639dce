"""The perceptual metrics of one job, loaded once: the metadata columns for an (original, decoded) pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Metrics ``nicbeam evaluate --metric`` accepts.
METRICS = ("lpips", "nima")
#: Metadata columns each metric fills (the ``*_model`` column names the trunk and the weights' SHA-256).
COLUMNS = {"lpips": ("lpips", "lpips_model"), "nima": ("nima_mean", "nima_std", "nima_model")}


class PerceptualScorer:
    """Loaded LPIPS and/or NIMA networks. ``cache`` (one dict per original image) keeps the original's
    LPIPS features, so an image evaluated at N settings runs the reference through the trunk once."""

    def __init__(self, lpips_net: Any = None, nima_net: Any = None) -> None:
        self.lpips_net = lpips_net
        self.nima_net = nima_net

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m, net in (("lpips", self.lpips_net), ("nima", self.nima_net)) if net is not None)

    def model_ids(self) -> dict[str, str]:
        """``lpips_model`` / ``nima_model``: ``<trunk>:<sha256 of the weights>``."""
        ids = {}
        if self.lpips_net is not None:
            ids["lpips_model"] = f"{self.lpips_net.net}:{self.lpips_net.digest}"
        if self.nima_net is not None:
            ids["nima_model"] = f"{self.nima_net.trunk}:{self.nima_net.digest}"
        return ids

    def score(self, original: np.ndarray, decoded: np.ndarray, cache: dict | None = None) -> dict:
        """The columns for one pair; LPIPS is null where the image is below the trunk's minimum side."""
        out: dict[str, Any] = self.model_ids()
        if self.lpips_net is not None:
            out["lpips"] = self._lpips(original, decoded, {} if cache is None else cache)
        if self.nima_net is not None:
            out["nima_mean"], out["nima_std"] = self.nima_net.scores([decoded])[0]
        return out

    def _lpips(self, original: np.ndarray, decoded: np.ndarray, cache: dict) -> float | None:
        if original.shape == decoded.shape and np.array_equal(original, decoded):
            return 0.0
        net = self.lpips_net
        try:
            if "lpips_reference" not in cache:
                cache["lpips_reference"] = net.feature_taps([original])
            return net.distance_from_features(cache["lpips_reference"], net.feature_taps([decoded]))[0]
        except ValueError:  # smaller than the trunk's pooling allows: undefined, recorded as null
            return None


def load_scorer(
    metrics: Sequence[str], lpips_weights: Sequence[str] = (), nima_weights: Sequence[str] = (),
    device: str = "cpu",
) -> PerceptualScorer:
    """Load the networks of ``metrics`` from their weight files (raises PerceptualWeightsError)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown perceptual metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    lpips_net = nima_net = None
    if "lpips" in metrics:
        from nicbeam.metrics.perceptual.lpips import load_lpips

        lpips_net = load_lpips(lpips_weights, device)
    if "nima" in metrics:
        from nicbeam.metrics.perceptual.nima import load_nima

        nima_net = load_nima(nima_weights, device)
    return PerceptualScorer(lpips_net, nima_net)
