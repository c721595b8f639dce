"""Image-input policy: turn any file Pillow can read into the codec input.

The codecs in nicbeam take one kind of input: an ``H x W x 3`` ``uint8`` RGB
numpy array, C-contiguous.  :func:`load_image` is the single place where an
arbitrary image file becomes such an array, and it follows the policy below.
Anything the policy does not accept raises :class:`ImageInputError`, whose
``reason`` attribute is one of a fixed set of short strings (see the table) and
whose message says what was wrong and which option, if any, would accept the
file.  A partially decoded image is never returned.

Policy
------

Inputs.  ``source`` may be ``bytes``/``bytearray``/``memoryview`` (decoded in
memory, no temporary files), a path (``str`` or ``os.PathLike``), or any binary
file object with ``read`` (local files, ``io.BytesIO``, fsspec files, ...).
Seekable file objects are read from offset 0, as Pillow does; non-seekable ones
are read into memory first.  A caller's file object is never closed.  Errors of
the storage layer itself (missing file, permission denied, network errors
raised as ``OSError`` subclasses) are not image problems and propagate
unchanged.

Order of checks.  Cheap checks that need only the header run before any pixel
is decoded: ``empty``, ``unreadable``, ``too_large``, ``multi_frame``,
``unsupported_mode``, ``high_bit_depth``.  Then the pixels are decoded
(``truncated``, or ``unreadable`` for corrupt data) and finally the alpha
channel is inspected (``alpha``).

1. **Empty / unreadable.**  A zero-byte input is refused with ``empty``.  Input
   that Pillow cannot identify as an image (text, unknown format) or whose data
   Pillow cannot decode (corrupt stream) is refused with ``unreadable``.

2. **Pixel-count limit** (``max_pixels``, default ``DEFAULT_MAX_PIXELS`` =
   2**28 = 268,435,456 pixels = 16384 x 16384).  ``width * height`` is read from
   the header (Pillow opens files lazily) and compared with ``max_pixels``
   *before* any pixel data is decoded, so a decompression bomb (a tiny file
   declaring an enormous canvas) costs a header read, not gigabytes of RAM.
   Larger images are refused with ``too_large``.  Why 2**28: the decoded RGB
   array is then at most 768 MiB (peak memory while converting is roughly 2 to 3
   times that), which one Beam worker can hold; it admits every real camera
   image (a 200-megapixel phone sensor is 16320 x 12240 = 2.0e8 pixels) while
   refusing gigapixel panoramas and bombs.  This limit replaces Pillow's own
   process-wide ``Image.MAX_IMAGE_PIXELS`` check at open time (89.5 M pixels,
   which would warn on, and at 2x refuse, legitimate images below our limit);
   the global is neither read nor modified there.  Should Pillow still raise
   ``DecompressionBombError`` (or a ``DecompressionBombWarning`` turned into an
   error by a warnings filter) somewhere else, e.g. while walking GIF frames,
   it is reported as ``too_large`` too.

3. **Frames.**  A file with more than one frame (animated GIF/WebP/APNG,
   multi-page TIFF) is refused with ``multi_frame`` unless ``frames='first'``,
   which decodes frame 0 only.  Exception: an MPO file (a JPEG from a camera
   carrying extra pictures, typically a large preview or the second view of a
   stereo pair) is decoded as its primary image, which is what any JPEG reader
   shows; this is recorded as ``mpo-primary-image-of-N``.

4. **Bit depth.**  Samples of more than 8 bits (Pillow modes ``I;16``,
   ``I;16L``, ``I;16B``, ``I;16N``, ``I``, ``F``, and files that Pillow silently
   reduces to 8 bits while opening them: 16-bit RGB/RGBA/gray+alpha PNG, which
   Pillow opens as ``RGB``/``RGBA`` by keeping the high byte only, 16-bit RGB(A)
   TIFF (same), PPM/PGM with maxval > 255) are detected from the header (PNG
   IHDR bit depth, TIFF BitsPerSample, PPM maxval) and refused with
   ``high_bit_depth`` unless ``high_bit_depth='reduce'``.  ``reduce`` scales
   with rounding, never truncation: ``v8 = round(v * 255 / vmax)``, so 65535 ->
   255 and 257*k -> k.  ``vmax`` is 65535 for 16-bit samples and for mode ``I``
   (Pillow's convention for high-bit integer data; values are clipped to
   0..65535); mode ``F`` (32-bit float) is taken as nominal 0.0..1.0 (the float
   image convention of TIFF/PFM), clipped, NaN -> 0.  Because Pillow has
   already thrown the low byte away for 16-bit colour PNG and TIFF, ``reduce``
   decodes those files again with the optional ``imagecodecs`` package to get
   the full 16-bit samples; without it, or for other high-bit layouts Pillow
   truncates (e.g. 16-bit CMYK TIFF), they are refused with
   ``unsupported_mode``.  Limitation: bit depths hidden inside other decoders
   (e.g. 10/12-bit AVIF, which Pillow decodes to 8 bits) cannot be detected
   and are accepted as 8-bit.

5. **Colour modes.**  Everything is converted to RGB by Pillow: ``1`` and ``L``
   (replicated gray), ``P`` (palette lookup), ``CMYK`` (Pillow's built-in
   formula, inverted Adobe CMYK JPEGs handled by Pillow), ``YCbCr``, ``LAB``,
   ``HSV``, ``RGBX``.  16-bit gray is reduced as in (4) then replicated.
   **ICC profiles are NOT applied**: pixel values are used as stored, as if
   they were sRGB, so CMYK files with a press profile and wide-gamut RGB files
   (Display P3, Adobe RGB) come out with shifted colours; when the file carries
   a profile this is recorded as ``icc-profile-not-applied``.  Modes not listed
   here are refused with ``unsupported_mode``.

6. **Alpha.**  Transparency is any alpha channel (``RGBA``, ``LA``, ``PA``,
   ``RGBa``, ``La``, 16-bit RGBA/gray+alpha PNG) or colour-key transparency
   (``P``/``L``/``RGB`` with a tRNS/transparency entry).  If every pixel is fully
   opaque the alpha carries no information and is dropped (recorded as
   ``alpha-opaque-dropped``; the result equals compositing over any
   background).  Otherwise the image is refused with ``alpha`` unless
   ``alpha='composite'``, which composites over ``background`` (an 8-bit RGB
   triple, default white) with straight (non-premultiplied) alpha,
   ``out = round((c*a + bg*(255-a)) / 255)`` for 8-bit sources; 16-bit sources
   (with ``high_bit_depth='reduce'``) are blended at 16 bits and rounded to 8
   bits once.  Alpha is never silently dropped.

7. **Orientation.**  The EXIF orientation tag (also read from XMP by Pillow) is
   applied, with exactly the transposes of ``PIL.ImageOps.exif_transpose``
   (performed on the final array), so ``pixels`` is upright as viewers show it
   and ``height``/``width`` are the displayed ones.  Invalid values are ignored.
   (Pillow's TIFF loader applies the TIFF Orientation tag by itself; it is not
   applied twice, and is still reported in ``orientation_applied``.)

8. **Truncation.**  A file whose pixel data ends early is refused with
   ``truncated``: Pillow's "image file is truncated" errors, plus two local
   checks for cases Pillow lets through: a PNG whose zlib stream is complete
   but holds fewer rows than the header declares (Pillow silently returns the
   missing rows as zeros; the IDAT stream is inflated a second time, counting
   bytes only, to catch it) and a WebP shorter than its RIFF header declares.
   Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never turned
   on (nor is any other Pillow global changed); if someone else turned it on
   in this process, truncated files would decode with filler, so
   :func:`load_image` raises ``RuntimeError`` instead of returning a partially
   decoded image.  A PNG missing only its trailing chunks (IEND) after
   complete pixel data is accepted.  Limitation: a JPEG whose entropy-coded
   data is cut or damaged *inside* the file but still ends with an EOI marker
   is decoded by libjpeg with gray filler and only a libjpeg warning, which
   Pillow does not surface; it cannot be detected here.

Reasons (``ImageInputError.reason``):

===================  ==========================================================
``empty``            zero-byte input
``unreadable``       not an image, unknown format, or corrupt data
``truncated``        pixel data ends early
``too_large``        ``width * height > max_pixels`` (decompression bomb)
``unsupported_mode`` a pixel layout this policy cannot convert
``alpha``            translucent pixels and ``alpha='refuse'``
``high_bit_depth``   more than 8 bits per sample and ``high_bit_depth='refuse'``
``multi_frame``      more than one frame/page and ``frames='refuse'``
===================  ==========================================================

``LoadedImage.conversions`` records what was done, in order, from this
vocabulary: ``"<MODE>->RGB"`` (e.g. ``"CMYK->RGB"``, ``"P->RGB"``,
``"I;16->RGB"``), ``"<N>-bit->8-bit"`` / ``"float->8-bit"``,
``"alpha-opaque-dropped"``, ``"alpha-composite-over-(R,G,B)"``,
``"first-frame-of-<N>"``, ``"mpo-primary-image-of-<N>"``,
``"icc-profile-not-applied"``, ``"exif-orientation-<N>"``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "REASONS",
    "ImageInputError",
    "LoadedImage",
    "load_image",
]

#: Default pixel-count limit: 2**28 = 16384 x 16384 pixels (768 MiB as RGB).
DEFAULT_MAX_PIXELS: int = 2**28

#: The fixed set of ``ImageInputError.reason`` values.
REASONS: frozenset[str] = frozenset(
    {
        "empty",
        "unreadable",
        "truncated",
        "too_large",
        "unsupported_mode",
        "alpha",
        "high_bit_depth",
        "multi_frame",
    }
)

Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]


class ImageInputError(ValueError):
    """An input the image-input policy refuses.

    ``reason`` is one of :data:`REASONS`; the message says what was wrong and
    which option of :func:`load_image` (if any) would accept the input.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown ImageInputError reason {reason!r}")
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keep ``reason`` across pickling (Beam workers)
        return (type(self), (self.reason, self.args[0]))


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image ready for the codecs, plus what was done to get it."""

    pixels: np.ndarray = field(repr=False)  # H x W x 3 uint8, C-contiguous
    source_format: str  # Pillow format name: 'PNG', 'JPEG', 'GIF', ...
    source_mode: str  # Pillow mode before any conversion
    source_bytes: int  # size of the encoded input
    orientation_applied: int = 1  # EXIF orientation applied (1 = none)
    conversions: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


# --------------------------------------------------------------------------
# constants

_EIGHT_BIT_MODES = frozenset(
    {"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA"}
)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_HIGH_BIT_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}

# Same table as PIL.ImageOps.exif_transpose, expressed on arrays (rows = y).
_ORIENTATION_OPS = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.swapaxes(0, 1),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270 (counter-clockwise) = 90 clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90 (counter-clockwise)
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}

# Pillow exceptions that mean "this data is not a decodable image".
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    Image.DecompressionBombWarning,
)

_ROW_BLOCK_PIXELS = 1 << 20  # numeric work is done in row blocks of ~1 M pixels


# --------------------------------------------------------------------------
# public entry point


def load_image(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    alpha: Literal["refuse", "composite"] = "refuse",
    background: tuple[int, int, int] = (255, 255, 255),
    high_bit_depth: Literal["refuse", "reduce"] = "refuse",
    frames: Literal["refuse", "first"] = "refuse",
) -> LoadedImage:
    """Decode ``source`` into an ``H x W x 3`` uint8 RGB array under the policy.

    See the module docstring for the policy.  Raises :class:`ImageInputError`
    (a ``ValueError``) for inputs the policy refuses, ``ValueError`` for bad
    options, ``TypeError`` for an unsupported ``source`` type, and lets I/O
    errors of the storage layer propagate.
    """
    background = _check_options(max_pixels, alpha, background, high_bit_depth, frames)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process; nicbeam refuses to "
            "decode images because truncated files would be returned partially decoded"
        )

    with contextlib.ExitStack() as stack:
        fp, nbytes = _as_stream(source, stack)
        if nbytes == 0:
            raise ImageInputError("empty", "input is empty (0 bytes); no option accepts it")
        head = fp.read(64)
        fp.seek(0)
        _check_declared_size(head, nbytes)

        with _mapped_errors("identifying the image"):
            im = _open_lazy(fp)
        stack.enter_context(im)  # drops Pillow's reference to fp; never closes it
        return _load_opened(
            im,
            fp,
            head,
            nbytes,
            max_pixels=max_pixels,
            alpha=alpha,
            background=background,
            high_bit_depth=high_bit_depth,
            frames=frames,
        )


# --------------------------------------------------------------------------
# the pipeline


def _load_opened(im, fp, head, nbytes, *, max_pixels, alpha, background, high_bit_depth, frames):
    fmt = im.format or "unknown"
    mode = im.mode
    width, height = im.size
    conversions: list[str] = []

    # 2. pixel-count limit, from the header only
    if width * height > max_pixels:
        raise ImageInputError(
            "too_large",
            f"{fmt} image is {width}x{height} = {width * height} pixels, more than "
            f"max_pixels={max_pixels} (possible decompression bomb); pass "
            f"max_pixels={width * height} or larger to accept it",
        )

    # 3. frames
    with _mapped_errors("counting frames"):
        n_frames = int(getattr(im, "n_frames", 1) or 1)
    if n_frames > 1:
        if fmt == "MPO":
            conversions.append(f"mpo-primary-image-of-{n_frames}")
        elif frames == "refuse":
            raise ImageInputError(
                "multi_frame",
                f"{fmt} file has {n_frames} frames/pages; pass frames='first' to accept it "
                "(decodes frame 0 only)",
            )
        else:
            conversions.append(f"first-frame-of-{n_frames}")
        with _mapped_errors("seeking to the first frame"):
            if im.tell() != 0:
                im.seek(0)
    mode = im.mode  # of the frame that will be decoded

    # 4./5. bit depth and mode, from the header: pick the decoding route
    bits, true_layout = _source_bits(im, head)
    high = bits > 8 or mode in _HIGH_BIT_MODES
    if mode in _HIGH_BIT_MODES:
        route = "pillow-high"
    elif high and fmt == "PPM":
        route = "pillow-8"  # Pillow's PPM decoder already scales by maxval with rounding
    elif high:
        if true_layout is None:
            raise ImageInputError(
                "unsupported_mode",
                f"{fmt} image has {bits}-bit samples in a layout ({mode}) that Pillow truncates "
                "and this policy cannot reduce with rounding; no option accepts it, convert it to "
                "8-bit RGB with another tool",
            )
        route = "imagecodecs"
    elif mode in _EIGHT_BIT_MODES:
        route = "pillow-8"
    else:
        raise ImageInputError(
            "unsupported_mode",
            f"{fmt} image has Pillow mode {mode!r}, which this policy cannot convert to RGB; "
            "no option accepts it, convert it to 8-bit RGB with another tool",
        )
    if high and high_bit_depth == "refuse":
        needs = ""
        if route == "imagecodecs" and not _imagecodecs_available():
            needs = " and install the optional imagecodecs package"
        raise ImageInputError(
            "high_bit_depth",
            f"{fmt} image has {_bits_text(bits, mode)} samples (Pillow mode {mode}); the codecs "
            "take 8-bit RGB; pass high_bit_depth='reduce' to accept it (rounded scaling to "
            f"8 bits){needs}",
        )

    # Pillow's TIFF loader applies the TIFF Orientation tag itself (and then
    # deletes it); remember it to report it and to orient imagecodecs' output.
    tiff_orientation = 1
    if fmt == "TIFF":
        value = getattr(im, "tag_v2", {}).get(0x0112, 1)
        tiff_orientation = value if value in _ORIENTATION_OPS else 1

    # 8. decode every pixel now (truncation surfaces here)
    with _mapped_errors("decoding pixels"):
        im.load()
    if fmt == "PNG" and head[:8] == _PNG_SIGNATURE:
        _check_png_idat_complete(fp, head)
    oriented_by_pillow = tiff_orientation != 1 and 0x0112 not in getattr(im, "tag_v2", {})
    orientation = tiff_orientation if oriented_by_pillow else _orientation(im)

    # build (color, alpha, vmax): color is H x W x 1|3, alpha H x W or None
    if route == "pillow-8":
        color, alpha_ch, vmax, src_layout = _pillow_8bit(im)
    elif route == "pillow-high":
        color, alpha_ch, vmax, src_layout = _pillow_high(im)
    else:
        color, alpha_ch, vmax, src_layout = _imagecodecs_16bit(
            fp, fmt, true_layout, im, tiff_orientation if oriented_by_pillow else 1
        )
    if src_layout != "RGB":
        conversions.append(f"{src_layout}->RGB")
    depth_note = None
    if high:
        depth_note = "float->8-bit" if mode == "F" else f"{bits}-bit->8-bit"

    # 6. alpha policy
    if alpha_ch is not None and bool(np.all(alpha_ch == vmax)):
        conversions.append("alpha-opaque-dropped")
        alpha_ch = None
    if alpha_ch is not None:
        if alpha == "refuse":
            n_translucent = int(np.count_nonzero(alpha_ch != vmax))
            raise ImageInputError(
                "alpha",
                f"{fmt} image (mode {mode}) has transparency: {n_translucent} of "
                f"{alpha_ch.size} pixels are not fully opaque; pass alpha='composite' "
                "(optionally background=(r, g, b)) to composite it over a background",
            )
        rgb = _composite(color, alpha_ch, vmax, background)
        conversions.append("alpha-composite-over-({},{},{})".format(*background))
    elif vmax != 255:
        rgb = _reduce16(color)
    else:
        rgb = color
    if depth_note:
        conversions.append(depth_note)
    if rgb.shape[2] == 1:
        rgb = np.broadcast_to(rgb, rgb.shape[:2] + (3,))

    if im.info.get("icc_profile"):
        conversions.append("icc-profile-not-applied")
    # 7. orientation
    if orientation != 1:
        if not oriented_by_pillow:
            rgb = _ORIENTATION_OPS[orientation](rgb)
        conversions.append(f"exif-orientation-{orientation}")

    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if not (pixels.flags.writeable and pixels.flags.owndata):
        pixels = pixels.copy()
    return LoadedImage(
        pixels=pixels,
        source_format=fmt,
        source_mode=mode,
        source_bytes=nbytes,
        orientation_applied=orientation,
        conversions=tuple(conversions),
    )


# --------------------------------------------------------------------------
# helpers: options and inputs


def _check_options(max_pixels, alpha, background, high_bit_depth, frames):
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    for name, value, allowed in (
        ("alpha", alpha, ("refuse", "composite")),
        ("high_bit_depth", high_bit_depth, ("refuse", "reduce")),
        ("frames", frames, ("refuse", "first")),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    try:
        bg = tuple(int(v) for v in background)
        ok = len(bg) == 3 and all(0 <= v <= 255 and v == b for v, b in zip(bg, background))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"background must be three ints in 0..255, got {background!r}")
    return bg


def _as_stream(source, stack: contextlib.ExitStack) -> tuple[BinaryIO, int]:
    """Return a seekable binary stream positioned at 0 and the input size in bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return io.BytesIO(data), len(data)
    if isinstance(source, (str, os.PathLike)):
        fp = stack.enter_context(open(source, "rb"))
        return fp, os.fstat(fp.fileno()).st_size
    if not hasattr(source, "read"):
        raise TypeError(
            "source must be bytes, a path (str / os.PathLike) or a binary file object, "
            f"got {type(source).__name__}"
        )
    seekable = getattr(source, "seekable", None)
    try:
        can_seek = bool(seekable()) if callable(seekable) else hasattr(source, "seek")
    except (OSError, ValueError):
        can_seek = False
    if can_seek:
        try:
            source.seek(0, io.SEEK_END)
            nbytes = source.tell()
            source.seek(0)
            return source, int(nbytes)
        except (OSError, ValueError, AttributeError):
            pass
    data = source.read()
    if isinstance(data, str):
        raise TypeError("source file object must be opened in binary mode")
    data = bytes(data)
    return io.BytesIO(data), len(data)


@contextlib.contextmanager
def _mapped_errors(stage: str):
    """Translate Pillow's exceptions into ImageInputError with a reason."""
    try:
        yield
    except ImageInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageInputError(
            "too_large",
            f"Pillow refused the image while {stage} as a possible decompression bomb ({exc}); "
            "its process-wide PIL.Image.MAX_IMAGE_PIXELS limit applies there, "
            "passing a larger max_pixels does not lift it",
        ) from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageInputError(
            "too_large",
            f"Pillow warned while {stage} that the image may be a decompression bomb ({exc}) "
            "and a warnings filter turned that into an error; no option of load_image accepts it",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageInputError(
            "unreadable",
            "input is not an image in any format Pillow can read; no option accepts it",
        ) from exc
    except EOFError as exc:
        raise ImageInputError(
            "truncated", f"image data ends early while {stage} ({exc}); no option accepts it"
        ) from exc
    except _DECODE_ERRORS as exc:
        if isinstance(exc, OSError) and type(exc) is not OSError:
            raise  # FileNotFoundError, PermissionError, ConnectionError, ...: storage errors
        text = str(exc)
        if "truncat" in text.lower():
            raise ImageInputError(
                "truncated",
                f"image data ends before all pixels were decoded (Pillow: {text}); "
                "no option accepts it, the file is incomplete",
            ) from exc
        raise ImageInputError(
            "unreadable",
            f"image data is corrupt or undecodable while {stage} "
            f"({type(exc).__name__}: {text}); no option accepts it",
        ) from exc


def _open_lazy(fp: BinaryIO) -> ImageFile.ImageFile:
    """``Image.open`` without Pillow's global decompression-bomb check.

    Mirrors the identification loop of ``PIL.Image.open`` over the public
    plugin registries ``Image.ID``/``Image.OPEN``; our own ``max_pixels`` check
    replaces the global ``Image.MAX_IMAGE_PIXELS`` one.  Falls back to
    ``Image.open`` if the registries are not available.
    """
    registry_ok = isinstance(getattr(Image, "ID", None), list) and isinstance(
        getattr(Image, "OPEN", None), dict
    )
    if not registry_ok:  # pragma: no cover - future Pillow
        return Image.open(fp)

    fp.seek(0)
    prefix = fp.read(16)
    tried: set[str] = set()
    for loader in (Image.preinit, Image.init):
        loader()
        for name in list(Image.ID):
            key = name.upper()
            if key in tried:
                continue
            tried.add(key)
            entry = Image.OPEN.get(key)
            if entry is None:
                continue
            factory, accept = entry
            try:
                result = True if not accept else accept(prefix)
                if isinstance(result, str) or not result:
                    continue
                fp.seek(0)
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UnidentifiedImageError("cannot identify image file")


# --------------------------------------------------------------------------
# helpers: local completeness checks (Pillow's global LOAD_TRUNCATED_IMAGES untouched)


def _check_declared_size(head: bytes, nbytes: int) -> None:
    """Containers that declare their own length (RIFF: WebP) must not be shorter."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 12:
        declared = struct.unpack("<I", head[4:8])[0] + 8
        if nbytes < declared:
            raise ImageInputError(
                "truncated",
                f"WebP file declares {declared} bytes but has {nbytes}; no option accepts it, "
                "the file is incomplete",
            )


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _check_png_idat_complete(fp: BinaryIO, head: bytes) -> None:
    """Refuse a PNG whose zlib stream ends before the last row.

    Pillow treats an early end of the IDAT zlib stream as the end of the image
    and returns the missing rows as zeros without any error (a file cut short
    *inside* the data is reported, but a short, well-terminated stream is
    not).  So the IDAT stream is inflated once more, counting bytes only, and
    compared with the size the header implies.
    """
    width, height, bit_depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    channels = _PNG_CHANNELS.get(color_type)
    if channels is None:
        return  # Pillow would not have decoded it
    bits_per_pixel = bit_depth * channels
    if interlace:
        passes = [
            (-(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0)
            for x0, y0, dx, dy in _ADAM7
        ]
    else:
        passes = [(width, height)]
    expected = sum(rows * (1 + (cols * bits_per_pixel + 7) // 8) for cols, rows in passes if cols and rows)

    inflater = zlib.decompressobj()
    produced = 0
    seen_idat = False
    fp.seek(8)
    try:
        while produced < expected and not inflater.eof:
            header = fp.read(8)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            if kind != b"IDAT":
                if seen_idat:
                    break  # IDAT chunks are consecutive
                fp.seek(length + 4, io.SEEK_CUR)
                continue
            seen_idat = True
            remaining = length
            while remaining and not inflater.eof:
                data = fp.read(min(remaining, 1 << 16))
                if not data:
                    break
                remaining -= len(data)
                while data and not inflater.eof:
                    produced += len(inflater.decompress(data, 1 << 20))
                    data = inflater.unconsumed_tail
            fp.seek(remaining + 4, io.SEEK_CUR)  # rest of the chunk (if eof) and the CRC
    except zlib.error as exc:
        raise ImageInputError(
            "unreadable", f"PNG image data is corrupt ({exc}); no option accepts it"
        ) from exc
    if produced < expected:
        raise ImageInputError(
            "truncated",
            f"PNG image data ends early: the zlib stream holds {produced} of the {expected} bytes "
            f"that a {width}x{height} image needs (Pillow would fill the rest with zeros); "
            "no option accepts it, the file is incomplete",
        )


# --------------------------------------------------------------------------
# helpers: bit depth and layouts


def _source_bits(im, head: bytes) -> tuple[int, str | None]:
    """Bits per stored sample, and for files that Pillow truncates on open the
    true channel layout ('RGB', 'RGBA', 'LA') we can decode with imagecodecs."""
    fmt = im.format
    mode = im.mode
    if fmt == "PNG" and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        bit_depth, color_type = head[24], head[25]
        if bit_depth > 8:
            layout = _PNG_COLOR_TYPES.get(color_type)
            return bit_depth, layout if layout in ("RGB", "RGBA", "LA") else None
        return 8, None
    if fmt == "TIFF":
        tags = getattr(im, "tag_v2", {})
        bps = tags.get(258, 1)
        bps = max(bps) if isinstance(bps, tuple) else int(bps)
        if mode in ("RGB", "RGBA") and bps > 8 and tags.get(262) == 2:
            spp = int(tags.get(277, 3))
            return bps, {3: "RGB", 4: "RGBA"}.get(spp) if bps == 16 else None
        if bps > 8:
            return bps, None
    if fmt == "PPM" and mode not in _HIGH_BIT_MODES:
        args = im.tile[0][3] if im.tile else None
        maxval = args[-1] if isinstance(args, tuple) and isinstance(args[-1], int) else 255
        if maxval > 255:
            return int(maxval).bit_length(), None
    if fmt == "PPM" and mode == "I":
        return 16, None  # Pillow scales PGM with maxval > 255 to 0..65535
    if mode in _SIXTEEN_BIT_MODES:
        return 16, None
    if mode in ("I", "F"):
        return 32, None
    return 8, None


def _bits_text(bits: int, mode: str) -> str:
    if mode == "F":
        return "32-bit float"
    return f"{bits}-bit"


def _orientation(im) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # corrupt EXIF: Pillow warns; treat as no orientation
        return 1
    return value if value in _ORIENTATION_OPS else 1


def _pillow_8bit(im):
    """8-bit modes through Pillow's converters.  Returns (color, alpha, 255, layout)."""
    mode = im.mode
    if im.has_transparency_data:
        if mode == "La":
            im = im.convert("LA")
        rgba = np.asarray(im.convert("RGBA"))
        return rgba[..., :3], rgba[..., 3], 255, mode
    if mode == "RGB":
        return np.asarray(im), None, 255, "RGB"
    return np.asarray(im.convert("RGB")), None, 255, mode


def _pillow_high(im):
    """Modes I;16*, I and F read with full precision from Pillow."""
    mode = im.mode
    arr = np.asarray(im)
    if mode == "F":  # nominal 0.0..1.0; rounding half to even only matters at exact .5
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        gray8 = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
        return gray8[..., None], None, 255, mode
    if mode == "I":
        gray16 = np.clip(arr, 0, 65535).astype(np.uint16)
    else:
        gray16 = arr.astype(np.uint16, copy=False)
    alpha_ch = None
    key = im.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        alpha_ch = np.where(gray16 == key, 0, 65535).astype(np.uint16)
    return gray16[..., None], alpha_ch, 65535, mode


def _imagecodecs_available() -> bool:
    try:
        return importlib.util.find_spec("imagecodecs") is not None
    except (ImportError, ValueError):
        return False


def _imagecodecs_16bit(fp, fmt, layout, im, pillow_orientation):
    """16-bit colour PNG/TIFF that Pillow truncates: decode again with imagecodecs.

    ``pillow_orientation`` is the orientation Pillow already applied to ``im``
    (TIFF); the same is applied here so both decodes share one frame.
    """
    try:
        import imagecodecs
    except ImportError:
        imagecodecs = None
    if imagecodecs is None:
        raise ImageInputError(
            "unsupported_mode",
            f"{fmt} image has 16-bit {layout} samples; Pillow can only read them truncated to "
            "8 bits and high_bit_depth='reduce' needs the optional 'imagecodecs' package to "
            "read them exactly; no option accepts it without imagecodecs, install it",
        )
    fp.seek(0)
    data = fp.read()
    try:
        if fmt == "PNG":
            arr = imagecodecs.png_decode(data)
        else:
            arr = imagecodecs.tiff_decode(data, index=0)
    except Exception as exc:  # imagecodecs raises its own error classes
        raise ImageInputError(
            "unreadable",
            f"16-bit {fmt} data could not be decoded with imagecodecs ({exc}); no option accepts it",
        ) from exc
    arr = np.asarray(arr)
    if pillow_orientation != 1 and arr.ndim == 3:
        arr = _ORIENTATION_OPS[pillow_orientation](arr)
    channels = {"LA": 2, "RGB": 3, "RGBA": 4}[layout]
    width, height = im.size
    if arr.dtype != np.uint16 or arr.shape != (height, width, channels):
        raise ImageInputError(
            "unsupported_mode",
            f"16-bit {fmt} image decoded to an unexpected layout {arr.shape} {arr.dtype}; "
            "no option accepts it, convert it to 8-bit RGB with another tool",
        )
    if layout == "LA":
        color, alpha_ch = arr[..., :1], arr[..., 1]
    elif layout == "RGBA":
        color, alpha_ch = arr[..., :3], arr[..., 3]
    else:
        color, alpha_ch = arr, None
        key = im.info.get("transparency")  # PNG tRNS colour key, 16-bit values
        if isinstance(key, tuple) and len(key) == 3:
            alpha_ch = np.where(np.all(arr == np.asarray(key, np.uint16), axis=-1), 0, 65535)
            alpha_ch = alpha_ch.astype(np.uint16)
    return color, alpha_ch, 65535, layout


# --------------------------------------------------------------------------
# helpers: numeric work, in row blocks to bound temporary memory


def _row_blocks(height: int, width: int):
    step = max(1, _ROW_BLOCK_PIXELS // max(1, width))
    for r0 in range(0, height, step):
        yield slice(r0, min(height, r0 + step))


def _reduce16(color: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 with rounding: round(v * 255 / 65535)."""
    out = np.empty(color.shape, np.uint8)
    for rows in _row_blocks(color.shape[0], color.shape[1]):
        v = color[rows].astype(np.uint32)
        out[rows] = (v * 255 + 32767) // 65535
    return out


def _composite(color: np.ndarray, alpha_ch: np.ndarray, vmax: int, background) -> np.ndarray:
    """Straight-alpha composite over an 8-bit background, rounded to uint8.

    out = round((c*a + bg*(vmax - a)) * 255 / vmax**2), bg scaled to vmax.
    Exact integer arithmetic; no ties are possible for vmax in {255, 65535}.
    """
    height, width = alpha_ch.shape
    out = np.empty((height, width, 3), np.uint8)
    if vmax == 255:
        # x = c*a + bg*(255-a) <= 65025 fits uint16; round(x / 255) == (t + (t >> 8)) >> 8
        # with t = x + 128, exactly, for every x in that range (checked exhaustively in tests)
        bg8 = np.asarray(background, np.uint16)
        for rows in _row_blocks(height, width):
            c = color[rows].astype(np.uint16)
            a = alpha_ch[rows].astype(np.uint16)[..., None]
            t = c * a + bg8 * (np.uint16(255) - a) + np.uint16(128)
            out[rows] = (t + (t >> 8)) >> 8
        return out
    scale = vmax // 255  # 257, exact
    bg = np.asarray(background, np.uint64) * np.uint64(scale)
    denom = np.uint64(vmax * vmax)
    half = np.uint64(vmax * vmax // 2)
    for rows in _row_blocks(height, width):
        c = color[rows].astype(np.uint64)
        a = alpha_ch[rows].astype(np.uint64)[..., None]
        num = c * a + bg * (np.uint64(vmax) - a)
        out[rows] = (num * np.uint64(255) + half) // denom
    return out
