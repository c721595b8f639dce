"""Rate measured the way image-compression papers report it: bits per pixel of the coded stream."""

from __future__ import annotations


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Return bits per pixel, ``8 * num_bytes / (height * width)``, for a stream of ``num_bytes`` bytes."""
    if num_bytes < 0:
        raise ValueError(f"num_bytes must be >= 0, got {num_bytes}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return 8.0 * num_bytes / (height * width)
