"""Cutting a progressive (layered) stream to its first K layers without re-encoding.

For the RNN codecs a layer is an iteration, and the cut stream's header states ``quality = K``, so it is
byte-identical to a stream encoded at K iterations (the first K iterations' bits do not depend on how many
follow). Other layered codecs keep their header parameters (:func:`nicbeam.codecs.container.truncate_layers`).
"""

from __future__ import annotations

import dataclasses

from nicbeam.codecs import container
from nicbeam.codecs.errors import UnknownCodecError


def _quality_counts_layers(codec: str) -> bool:
    from nicbeam.codecs.registry import get_codec_class

    try:
        return bool(getattr(get_codec_class(codec), "quality_is_layer_count", False))
    except UnknownCodecError:
        return False


def truncate_iterations(data: bytes, iterations: int, *, max_pixels: int = container.DEFAULT_MAX_PIXELS) -> bytes:
    """A valid stream with the first ``iterations`` layers of ``data``; BitstreamError on a damaged stream,
    ValueError when it is not layered or has fewer layers."""
    header, payload = container.unpack(data, max_pixels=max_pixels)
    if not header.layered:
        raise ValueError(f"codec {header.codec!r} stream is not layered; it cannot be truncated")
    layers = container.unpack_layers(payload)
    if not 1 <= iterations <= len(layers):
        raise ValueError(f"iterations must be in 1..{len(layers)} (the stream's layers), got {iterations}")
    params = dict(header.params)
    if _quality_counts_layers(header.codec):
        params["quality"] = iterations
    return container.pack(dataclasses.replace(header, params=params), container.pack_layers(layers[:iterations]))
