"""Input checks shared by the image metrics, so every metric rejects bad arrays with one clear message."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is an RGB ``uint8`` array of shape (H, W, 3), else raise ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}")
    return image


def check_rgb_pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(a, b)`` if both are RGB uint8 (H, W, 3) arrays of the same shape, else raise ValueError."""
    check_rgb(a, "a")
    check_rgb(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def check_peak(peak: float) -> float:
    """Return ``peak`` as a float if it is a finite positive number (the signal's maximum value)."""
    value = float(peak)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"peak must be a finite positive number, got {peak!r}")
    return value
