"""Context-adaptive coding of quantised wavelet subbands (the dwt codec's entropy coder).

Per component and tile: the LL band by MED prediction (:func:`planes.encode_predicted`), then the detail
bands coarse to fine, H, V, D at each level (:func:`planes.encode_plane`). A detail symbol's base context is
the component type, the level, the orientation and a bucket of ``2 * parent + siblings``: the level of the
same-orientation coefficient one level coarser (zero-trees' observation: magnitudes persist across scales)
plus those of the bands already coded at the same position and level. The plane coder adds the spatial
neighbours. Models adapt across tiles and are shared by Cb and Cr.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nicbeam.codecs.transform import planes
from nicbeam.codecs.transform.wavelet import ORIENTATIONS
from nicbeam.entropy.adaptive import AdaptiveDecoder, AdaptiveEncoder, AdaptiveModels

#: Level classes: levels 1..4 alone, 5 and coarser together.
LEVEL_CLASSES = 5
_TREE_BUCKET = np.array([0, 1, 2, 3, 3, 4, 4, 4] + [5] * 8, dtype=np.int64)
_TREE = 6
#: Largest LL level magnitude a decoder accepts.
LL_LIMIT = 1 << 24


@dataclass
class DwtModels:
    """All adaptive models of one dwt stream."""

    detail: AdaptiveModels = field(
        default_factory=lambda: planes.level_models(2 * LEVEL_CLASSES * ORIENTATIONS * _TREE))
    detail_rem: AdaptiveModels = field(
        default_factory=lambda: planes.remainder_models(2 * LEVEL_CLASSES * ORIENTATIONS))
    ll: tuple[AdaptiveModels, AdaptiveModels] = field(default_factory=lambda: planes.predicted_models(2))


def _band_class(kind: int, level: int, orientation: int) -> int:
    return (kind * LEVEL_CLASSES + min(level, LEVEL_CLASSES - 1)) * ORIENTATIONS + orientation


def _base(kind: int, level: int, orientation: int, parent: np.ndarray | None, siblings: list[np.ndarray],
          shape: tuple[int, int]) -> np.ndarray:
    """Base contexts of one band from its parent band's levels and its already-coded siblings' levels."""
    rows, cols = shape
    tree = np.zeros(shape, dtype=np.int64)
    if parent is not None:
        tree += 2 * parent[np.arange(rows) // 2][:, np.arange(cols) // 2]
    for sibling in siblings:
        tree += sibling
    return _band_class(kind, level, orientation) * _TREE + _TREE_BUCKET[np.minimum(tree, 15)]


def encode_tile_component(enc: AdaptiveEncoder, models: DwtModels, ll: np.ndarray,
                          details: list[tuple[np.ndarray, ...]], component: int) -> None:
    """Code the quantised LL band and detail levels (fine to coarse, as :func:`wavelet.forward` gives them)."""
    kind = min(component, 1)
    planes.encode_predicted(enc, models.ll, ll, kind)
    parents: tuple[np.ndarray | None, ...] = (None,) * ORIENTATIONS
    for index in range(len(details) - 1, -1, -1):
        coded = []
        for orientation, band in enumerate(details[index]):
            base = _base(kind, index, orientation, parents[orientation], coded, band.shape)
            coded.append(planes.encode_plane(enc, models.detail, models.detail_rem, band, base,
                                             _band_class(kind, index, orientation)))
        parents = tuple(coded)


def decode_tile_component(dec: AdaptiveDecoder, models: DwtModels, shapes: list[tuple[int, int]],
                          component: int) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Inverse of :func:`encode_tile_component`; ``shapes`` from :func:`wavelet.band_shapes`."""
    kind = min(component, 1)
    ll = planes.decode_predicted(dec, models.ll, shapes[-1], kind, None, LL_LIMIT)
    details: list[tuple[np.ndarray, ...]] = [()] * (len(shapes) - 1)
    parents: tuple[np.ndarray | None, ...] = (None,) * ORIENTATIONS
    for index in range(len(shapes) - 2, -1, -1):
        coded, bands = [], []
        for orientation in range(ORIENTATIONS):
            base = _base(kind, index, orientation, parents[orientation], coded, shapes[index])
            values, levels = planes.decode_plane(dec, models.detail, models.detail_rem, shapes[index], base,
                                                 _band_class(kind, index, orientation))
            coded.append(levels)
            bands.append(values)
        details[index] = tuple(bands)
        parents = tuple(coded)
    return ll, details
