"""Quality-targeted encoding: the smallest setting of a codec whose decoded image meets a per-image target.

Each codec has one *rate knob* (:class:`Knob`): the parameter that trades rate for quality, listed as
candidate values from the lowest quality (smallest rate) to the highest. :func:`search` bisects over that
list, assuming quality grows with the index (true of every knob here up to encoder noise), in at most
``max_steps`` encode+decode+measure trials, and returns the lowest index found that meets the target.

Knobs: ``jpeg``/``webp``/``avif`` ``quality`` (integers), ``jpegxl`` ``distance`` (a geometric grid,
descending: a smaller distance is better), ``jpeg2000`` ``psnr`` (its own rate control, 0.25 dB grid), and
any other codec with an integer ``quality`` parameter (the learned codecs: their rate points, capped at
the number the loaded weights have; a rate change there costs nothing but the new encode).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Target metrics: CLI name -> (function name in nicbeam.metrics, unit).
METRICS: dict[str, str] = {"psnr": "dB", "ms-ssim": "", "psnr-hvs": "dB"}


class MetricUndefinedError(ValueError):
    """The target metric is not defined for this image (MS-SSIM below 161 px a side, PSNR-HVS below 8 px)."""

    reason = "metric_undefined"


@dataclass(frozen=True)
class Knob:
    """The parameter searched for one codec: candidate values from lowest to highest quality."""

    param: str
    values: tuple

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"knob {self.param!r} has no candidate values")


def _float_grid(start: float, stop: float, count: int) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in np.geomspace(start, stop, count))


#: Codecs whose rate knob is not an ascending integer ``quality``.
_SPECIAL_KNOBS: dict[str, Knob] = {
    "jpegxl": Knob("distance", _float_grid(25.0, 0.1, 64)),  # descending distance = ascending quality
    "jpeg2000": Knob("psnr", tuple(round(20.0 + 0.25 * i, 2) for i in range(201))),  # 20 .. 70 dB
}


def knob_for(codec_name: str, fixed_params: dict[str, Any] | None = None, *, device: str = "auto") -> Knob:
    """The rate knob of ``codec_name``; raises ``ValueError`` for codecs without one (lossless-only codecs)."""
    from nicbeam.codecs import get_codec_class

    if codec_name in _SPECIAL_KNOBS:
        knob = _SPECIAL_KNOBS[codec_name]
    else:
        cls = get_codec_class(codec_name)
        spec = next((s for s in cls.param_specs if s.name == "quality" and s.kind is int), None)
        if spec is None or getattr(cls, "always_lossless", False):
            raise ValueError(f"codec {codec_name!r} has no quality parameter to search (is it lossless-only?)")
        high = int(spec.maximum)
        high = min(high, _rate_points(codec_name, fixed_params or {}, device) or high)
        knob = Knob("quality", tuple(range(int(spec.minimum), high + 1)))
    if knob.param in (fixed_params or {}):
        raise ValueError(f"--param {knob.param} is what target-quality searches; do not fix it")
    return knob


def _rate_points(codec_name: str, fixed_params: dict[str, Any], device: str) -> int | None:
    """Number of rate points of a learned codec's loaded weights (None for codecs without a model)."""
    from nicbeam.codecs.spec import make_setting
    from nicbeam.transforms.codec_runtime import build_codec

    codec = build_codec(make_setting(codec_name, fixed_params), device)
    model = getattr(codec, "model", None)
    return int(getattr(model, "num_qualities", 0)) or None


def measure(metric: str, original: np.ndarray, decoded: np.ndarray) -> float:
    """The target metric of ``decoded`` against ``original`` (higher is better for all three)."""
    from nicbeam import metrics

    if original.shape == decoded.shape and np.array_equal(original, decoded):
        return 1.0 if metric == "ms-ssim" else math.inf
    try:
        if metric == "psnr":
            return float(metrics.psnr(original, decoded))
        if metric == "ms-ssim":
            return float(metrics.ms_ssim(original, decoded))
        if metric == "psnr-hvs":
            return float(metrics.psnr_hvs(original, decoded))
    except (ValueError, ZeroDivisionError) as exc:
        raise MetricUndefinedError(f"{metric} is not defined for this image: {exc}") from exc
    raise ValueError(f"unknown target metric {metric!r}; choose from {', '.join(METRICS)}")


@dataclass
class Trial:
    """One encode+decode+measure at one knob value."""

    value: Any
    stream: bytes
    score: float

    @property
    def size(self) -> int:
        return len(self.stream)


@dataclass
class SearchResult:
    """The chosen trial (None when even the highest quality misses the target) and every trial made."""

    best: Trial | None
    trials: list[Trial] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.trials)


def search(trial_at: Callable[[Any], Trial], knob: Knob, target: float, max_steps: int) -> SearchResult:
    """Bisect ``knob.values`` for the lowest-quality value whose trial scores >= ``target``.

    The highest value is tried first: if it misses, the target is unreachable and no more trials run.
    Then at most ``max_steps - 1`` further trials halve the bracket; the lowest passing trial is returned
    (the minimal one when the budget sufficed: ceil(log2(len(values))) + 1 steps).
    """
    if max_steps < 1:
        raise ValueError("max_steps must be >= 1")
    values = knob.values
    result = SearchResult(None)
    top = trial_at(values[-1])
    result.trials.append(top)
    if not top.score >= target:
        return result
    result.best = top
    lo, hi = 0, len(values) - 1  # values[hi] passes; every index below lo fails
    while lo < hi and result.steps < max_steps:
        mid = (lo + hi) // 2
        trial = trial_at(values[mid])
        result.trials.append(trial)
        if trial.score >= target:
            hi, result.best = mid, trial
        else:
            lo = mid + 1
    return result
