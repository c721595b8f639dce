"""Training images from a folder: decoded once with Pillow, kept in RAM as uint8, sampled as random crops.

Kodak is reserved for evaluation: any folder under a path containing ``kodak`` is refused.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike, include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> list[Path]:
    """Image files in ``folder`` matching any ``include`` glob and no ``exclude`` glob, sorted by name."""
    folder = Path(folder)
    if "kodak" in str(folder.resolve()).lower():
        raise ValueError(f"{folder}: Kodak is for evaluation only, never for training or validation")
    files = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if any(fnmatch.fnmatch(path.name, g) for g in include) and not any(fnmatch.fnmatch(path.name, g) for g in exclude):
            files.append(path)
    return files


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def png_sizes(patches: np.ndarray) -> np.ndarray:
    """Bytes of each (H, W, 3) uint8 patch as a PNG (libpng through imagecodecs, default settings)."""
    import imagecodecs

    return np.array([len(imagecodecs.png_encode(np.ascontiguousarray(p))) for p in patches])


def hardest_patches(patches: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` patches that PNG compresses worst (largest PNG), in their original order."""
    order = np.argsort(-png_sizes(patches), kind="stable")[:keep]
    return patches[np.sort(order)]


class ImageCache:
    """All images decoded once into RAM; ``sample`` draws random crops with random flips."""

    def __init__(self, paths: Sequence[Path], min_side: int = 0) -> None:
        self.paths = list(paths)
        self.images = [load_rgb(p) for p in self.paths]
        if min_side:
            self.images = [im for im in self.images if min(im.shape[:2]) >= min_side]
        if not self.images:
            raise ValueError("no usable training images")
        self.pixels = sum(im.shape[0] * im.shape[1] for im in self.images)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: np.random.Generator, batch: int, crop: int) -> np.ndarray:
        """(batch, crop, crop, 3) uint8: random image, random position, random horizontal/vertical flip."""
        out = np.empty((batch, crop, crop, 3), dtype=np.uint8)
        for i in range(batch):
            im = self.images[int(rng.integers(len(self.images)))]
            h, w = im.shape[:2]
            if h < crop or w < crop:
                im = np.pad(im, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="reflect")
                h, w = im.shape[:2]
            top = int(rng.integers(h - crop + 1))
            left = int(rng.integers(w - crop + 1))
            patch = im[top : top + crop, left : left + crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1]
            out[i] = patch
        return out

    def center_crops(self, crop: int, limit: int) -> np.ndarray:
        """Deterministic validation set: centre crops of the first ``limit`` images."""
        crops = []
        for im in self.images[:limit]:
            h, w = im.shape[:2]
            c = min(crop, h, w) // 16 * 16
            top, left = (h - c) // 2, (w - c) // 2
            crops.append(im[top : top + c, left : left + c])
        side = min(c.shape[0] for c in crops)
        return np.stack([c[:side, :side] for c in crops])
