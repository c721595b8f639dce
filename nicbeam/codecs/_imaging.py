"""Small helpers shared by the classical codec wrappers (Pillow and imagecodecs glue).

Kept separate so that each codec module is only its parameters and two library calls, and so that every
wrapper decodes, names its library and checks library output the same way.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np

SUBSAMPLING_DOC = "chroma subsampling: 420 (half resolution both ways), 422 (half horizontally) or 444 (none)"


def pillow_decode_rgb(payload: bytes, format_name: str, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode ``payload`` with Pillow as ``format_name`` only, returning an ``H x W x 3`` uint8 array.

    The mode must already be RGB: a codec whose payload decodes to anything else is reported as a bad
    payload rather than silently converted. With ``expected_size`` (width, height: the container header's,
    already checked against the caller's pixel limit) the payload's declared size must equal it *before* any
    pixel is decoded, and Pillow's process-wide decompression-bomb limit (~179 MP) is not applied, so the
    container's own limit (up to 2**28 pixels) is the one that holds.
    """
    from PIL import Image

    if expected_size is None:
        opened = Image.open(io.BytesIO(payload), formats=[format_name])
    else:
        Image.init()
        factory, accept = Image.OPEN[format_name]
        if accept is not None and not accept(payload[:16]):
            raise ValueError(f"payload is not a {format_name} file")
        opened = factory(io.BytesIO(payload), "")  # what Image.open does, minus the global bomb check
        if opened.size != tuple(expected_size):
            opened.close()
            raise ValueError(f"{format_name} payload declares {opened.size[0]}x{opened.size[1]} pixels, "
                             f"the header {expected_size[0]}x{expected_size[1]}")
    with opened as image:
        if image.mode != "RGB":
            raise ValueError(f"{format_name} payload decoded to mode {image.mode!r}, expected 'RGB'")
        image.load()
        return np.asarray(image, dtype=np.uint8).copy()


def pillow_encode(image: np.ndarray, format_name: str, **options: object) -> bytes:
    """Encode an RGB uint8 array with Pillow, returning the file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format_name, **options)
    return buffer.getvalue()


def pillow_version() -> str:
    import PIL

    return f"Pillow {PIL.__version__}"


def imagecodecs_implementation(version_function: str, extra: str = "") -> str:
    """``'<library> <version> (imagecodecs <version>)'`` for an imagecodecs ``*_version`` function name."""
    import imagecodecs

    get_version: Callable[[], str] = getattr(imagecodecs, version_function)
    detail = f", {extra}" if extra else ""
    return f"{get_version()} (imagecodecs {imagecodecs.__version__}{detail})"


def as_bytes(data: object) -> bytes:
    """Library outputs are ``bytes`` already in practice; normalise bytearray / memoryview just in case."""
    return data if isinstance(data, bytes) else bytes(data)  # type: ignore[arg-type]


def check_size_limits(
    image: np.ndarray, codec: str, library: str, max_side: int, max_pixels: int | None = None
) -> np.ndarray:
    """Refuse images beyond a library's limits up front, instead of a library error (or an undecodable file).

    Returns ``image`` unchanged so a codec's ``_check_input`` can end with ``return check_size_limits(...)``.
    """
    from nicbeam.codecs.errors import UnsupportedInputError

    height, width = image.shape[:2]
    if height > max_side or width > max_side:
        raise UnsupportedInputError(
            f"{codec}: {library} handles at most {max_side} pixels per side, got {width}x{height}"
        )
    if max_pixels is not None and height * width > max_pixels:
        raise UnsupportedInputError(
            f"{codec}: {library} handles at most {max_pixels} pixels, got {width}x{height} = {width * height}"
        )
    return image
