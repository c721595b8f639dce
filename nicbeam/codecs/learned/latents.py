"""The quantised latents of one image exactly as its stream codes them, and their assembly from tiles.

A learned stream codes, per tile, integer symbols: ``bmshj2017-factorized`` codes ``y_hat`` itself;
``mbt2018-mean`` codes the hyper-latent ``z_hat`` and the residuals ``round(y - mu)``, where the means ``mu``
come from ``z_hat`` through the integer hyper-synthesis (multiples of 1/256), so its ``y_hat = symbols + mu``
is exact in float32 but not an integer. Both arrays are kept: ``y_symbols`` (int32, what the range coder
codes) and ``y_hat`` (float32, what the synthesis transform receives), plus ``z_hat`` for the hyperprior.

Tiles (see :mod:`nicbeam.codecs.learned.base`) are assembled into one tensor per image: tile edges fall on
multiples of the tile side (a multiple of 64), so interior tiles have equal latent sizes and the padded
latents of the tiles sit side by side without gaps. The arrays cover the padded image (``y`` is
``ceil_to(H, d) / 16`` high, ``d`` the codec's padding multiple); crop with :attr:`Latents.y_valid` if needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nicbeam.codecs.errors import PayloadError

_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class TileLatents:
    """The latents of one tile: ``y_hat`` float32 (M, h, w), ``y_symbols`` int (M, h, w), ``z_hat`` or None."""

    y_hat: np.ndarray
    y_symbols: np.ndarray
    z_hat: np.ndarray | None = None


@dataclass(frozen=True)
class Latents:
    """One image's latents with what identifies how they were made (codec, parameters, weights digest)."""

    codec: str
    params: dict[str, Any]
    model_digest: str  # SHA-256 of the weights, hex
    height: int  # image size in pixels
    width: int
    y_hat: np.ndarray  # float32 (M, Hy, Wy): the synthesis transform's input
    y_symbols: np.ndarray  # int32 (M, Hy, Wy): the integers the stream codes for y
    z_hat: np.ndarray | None  # int32 (N, Hz, Wz): the coded hyper-latent (hyperprior only)

    @property
    def quality(self) -> int:
        return int(self.params["quality"])

    @property
    def y_valid(self) -> tuple[int, int]:
        """Latent rows and columns that cover image pixels (the rest covers edge-replicated padding)."""
        return -(-self.height // 16), -(-self.width // 16)


def to_int32(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as int32, refusing (PayloadError) anything outside the int32 range instead of wrapping."""
    values = np.asarray(values)
    if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
        raise PayloadError(f"{what} value outside the int32 range ({values.min()} .. {values.max()})")
    return values.astype(np.int32, copy=False)


def assemble(tiles: Sequence[TileLatents], grid: Sequence[tuple[int, int, int, int]]) -> TileLatents:
    """Tile latents (raster order of ``grid``, ``(top, left, h, w)`` per tile) -> one image's latents."""
    if len(tiles) != len(grid):
        raise ValueError(f"{len(tiles)} tile latents for a grid of {len(grid)} tiles")
    if len(tiles) == 1:
        return tiles[0]
    rows: dict[int, list[TileLatents]] = {}
    for (top, _, _, _), tile in zip(grid, tiles):
        rows.setdefault(top, []).append(tile)

    def stitch(field: str) -> np.ndarray | None:
        if getattr(tiles[0], field) is None:
            return None
        bands = [np.concatenate([getattr(t, field) for t in row], axis=2) for _, row in sorted(rows.items())]
        return np.concatenate(bands, axis=1)

    return TileLatents(stitch("y_hat"), stitch("y_symbols"), stitch("z_hat"))
