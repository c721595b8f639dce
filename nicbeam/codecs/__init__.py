"""Codecs: the registry, the common :class:`Codec` interface, the bitstream container and its errors.

>>> from nicbeam.codecs import get_codec, decode
>>> stream = get_codec("jpeg", quality=75).encode(image)   # doctest: +SKIP
>>> decode(stream)                                         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from nicbeam.codecs import container
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import DEFAULT_MAX_PIXELS, Header, parse_header, truncate_layers
from nicbeam.codecs.errors import (
    BadMagicError,
    BitstreamError,
    ChecksumError,
    CodecError,
    DimensionError,
    InvalidParameterError,
    MalformedHeaderError,
    ModelMismatchError,
    PayloadError,
    TrailingDataError,
    TruncatedBitstreamError,
    UnknownCodecError,
    UnsupportedInputError,
    UnsupportedVersionError,
)
from nicbeam.codecs.params import ParamSpec
from nicbeam.codecs.registry import available_codecs, get_codec, get_codec_class, register_codec


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Decode any nicbeam stream without being told the codec: the header names it.

    Returns an ``H x W x 3`` ``uint8`` array, or the original JPEG bytes for ``jpeg-transcode`` streams.
    Raises :class:`BitstreamError` (a subclass saying which check failed) for any defective stream.
    """
    header = parse_header(data, max_pixels=max_pixels)
    codec_class = get_codec_class(header.codec)
    try:
        codec = codec_class(**header.params)
    except InvalidParameterError as exc:
        raise MalformedHeaderError(f"stream parameters are invalid for {header.codec}: {exc}") from exc
    return codec.decode(data, max_pixels=max_pixels)


__all__ = [
    "BadMagicError",
    "BitstreamError",
    "ChecksumError",
    "Codec",
    "CodecError",
    "DEFAULT_MAX_PIXELS",
    "DimensionError",
    "Header",
    "InvalidParameterError",
    "MalformedHeaderError",
    "ModelMismatchError",
    "ParamSpec",
    "PayloadError",
    "TrailingDataError",
    "TruncatedBitstreamError",
    "UnknownCodecError",
    "UnsupportedInputError",
    "UnsupportedVersionError",
    "available_codecs",
    "container",
    "decode",
    "get_codec",
    "get_codec_class",
    "parse_header",
    "register_codec",
    "truncate_layers",
]
