"""Perceptual metrics inside Beam workers: the networks are loaded once per worker process (``Shared``,
as codecs are, see :mod:`nicbeam.transforms.codec_runtime`) on the job's device and shared by its threads.
"""

from __future__ import annotations

from typing import Any


class _Holder:
    """A plain object around the scorer so ``Shared`` can hold a weak reference to it."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer


class SharedPerceptual:
    """Picklable handle; ``acquire()`` returns this process's :class:`~nicbeam.metrics.perceptual.PerceptualScorer`."""

    def __init__(self, cfg: Any) -> None:
        from apache_beam.utils.shared import Shared

        self.metrics = tuple(cfg.perceptual)
        self.lpips_weights = tuple(cfg.lpips_weights)
        self.nima_weights = tuple(cfg.nima_weights)
        self.device = cfg.device
        self._shared = Shared()
        self._holder: _Holder | None = None

    def _load(self) -> _Holder:
        from nicbeam.metrics.perceptual import load_scorer
        from nicbeam.transforms.codec_runtime import auto_device

        device = auto_device() if self.device == "auto" else self.device
        return _Holder(load_scorer(self.metrics, self.lpips_weights, self.nima_weights, device))

    def acquire(self):
        tag = repr((self.metrics, self.lpips_weights, self.nima_weights, self.device))
        self._holder = self._shared.acquire(self._load, tag=tag)  # strong reference while the DoFn lives
        return self._holder.scorer

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_holder"] = None
        return state
