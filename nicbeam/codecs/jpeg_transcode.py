"""Lossless JPEG recompression with JPEG XL (libjxl through imagecodecs): JPEG file in, same file out.

libjxl re-encodes the JPEG's quantised DCT coefficients with JPEG XL's entropy coder and stores what it
needs to rebuild the original file bit for bit (markers, Huffman tables, padding), typically about 20%
smaller. libjxl is the only implementation of this JPEG XL feature. Encode takes JPEG *file bytes* and
decode returns the identical bytes, so this codec measures pure storage saving with zero added loss.

libjxl accepts Huffman-coded baseline, extended and progressive JPEGs with 8-bit samples and one (grey) or
three (YCbCr) components. Arithmetic-coded, lossless, hierarchical, 12-bit and CMYK JPEGs are refused with
:class:`~nicbeam.codecs.errors.UnsupportedInputError`, as is any file libjxl cannot reproduce exactly
(every encode is verified by rebuilding the JPEG from the payload). imagecodecs does not expose libjxl's
effort setting for this mode, so the recompression always runs at libjxl's default effort (7).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from nicbeam.codecs import container
from nicbeam.codecs._imaging import as_bytes, imagecodecs_implementation
from nicbeam.codecs.base import Codec
from nicbeam.codecs.container import Header
from nicbeam.codecs.errors import PayloadError, UnsupportedInputError

_SOI = b"\xff\xd8"
#: Start-of-frame markers libjxl can recompress: baseline, extended sequential and progressive (Huffman).
_SUPPORTED_SOF = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
#: Every other start-of-frame marker and what it means (0xC4 DHT, 0xC8 JPG and 0xCC DAC are not frames).
_UNSUPPORTED_SOF = {
    0xC3: "lossless",
    0xC5: "differential sequential",
    0xC6: "differential progressive",
    0xC7: "differential lossless",
    0xC9: "arithmetic-coded sequential",
    0xCA: "arithmetic-coded progressive",
    0xCB: "arithmetic-coded lossless",
    0xCD: "arithmetic-coded differential sequential",
    0xCE: "arithmetic-coded differential progressive",
    0xCF: "arithmetic-coded differential lossless",
}
#: Markers without a length field (TEM, RST0-7) that may appear between segments.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


class JpegFrame(NamedTuple):
    """What the start-of-frame segment of a JPEG file declares."""

    height: int
    width: int
    components: int
    precision: int
    process: str


def read_jpeg_frame(data: bytes) -> JpegFrame:
    """Parse the marker segments of a JPEG file up to its start-of-frame; raise if it is not a usable JPEG."""
    if data[:2] != _SOI:
        raise UnsupportedInputError(f"jpeg-transcode expects JPEG file bytes (FF D8 ...), got {data[:4].hex(' ')}")
    pos = 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > len(data):
            raise UnsupportedInputError("JPEG ends before its start-of-frame marker")
        if data[pos] != 0xFF:
            raise UnsupportedInputError(f"JPEG marker expected at byte {pos}, found 0x{data[pos]:02x}")
        marker = data[pos + 1]
        pos += 2
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise UnsupportedInputError(f"JPEG has marker 0x{marker:02x} before any start-of-frame")
        if pos + 2 > len(data):
            raise UnsupportedInputError("JPEG ends inside a marker segment")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            raise UnsupportedInputError(f"JPEG segment 0x{marker:02x} has an invalid length {length}")
        if marker in _UNSUPPORTED_SOF:
            raise UnsupportedInputError(f"{_UNSUPPORTED_SOF[marker]} JPEGs cannot be recompressed by JPEG XL")
        if marker in _SUPPORTED_SOF:
            if length < 8:
                raise UnsupportedInputError("JPEG start-of-frame segment is too short")
            precision = data[pos + 2]
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            components = data[pos + 7]
            frame = JpegFrame(height, width, components, precision, _SUPPORTED_SOF[marker])
            _check_frame(frame)
            return frame
        pos += length


def _check_frame(frame: JpegFrame) -> None:
    if frame.precision != 8:
        raise UnsupportedInputError(f"{frame.precision}-bit JPEGs cannot be recompressed by JPEG XL (8-bit only)")
    if frame.components not in (1, 3):
        raise UnsupportedInputError(
            f"JPEGs with {frame.components} components cannot be recompressed by JPEG XL (grey or YCbCr only)"
        )
    if frame.height == 0 or frame.width == 0:
        raise UnsupportedInputError("JPEGs whose height is set by a DNL marker (or is zero) are not supported")


class JpegTranscodeCodec(Codec):
    name = "jpeg-transcode"
    description = "lossless JPEG recompression with JPEG XL (libjxl); decode returns the original JPEG bytes"
    input_kind = "jpeg"
    always_lossless = True
    param_specs = ()

    def implementation(self) -> str:
        return imagecodecs_implementation("jpegxl_version", "JPEG reconstruction")

    def _check_input(self, image: Any) -> bytes:
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise UnsupportedInputError(f"{self.name} expects JPEG file bytes, got {type(image).__name__}")
        data = bytes(image)
        frame = read_jpeg_frame(data)
        if frame.height > container.MAX_SIDE or frame.width > container.MAX_SIDE:
            raise UnsupportedInputError(f"{self.name}: image side exceeds {container.MAX_SIDE} pixels")
        return data

    def _geometry(self, image: Any) -> tuple[int, int, int, int]:
        frame = read_jpeg_frame(image)
        return frame.height, frame.width, frame.components, 8

    def _encode_payload(self, image: Any) -> bytes:
        import imagecodecs

        try:
            payload = as_bytes(imagecodecs.jpegxl_encode_jpeg(image, numthreads=1))
            rebuilt = as_bytes(imagecodecs.jpegxl_decode_jpeg(payload, numthreads=1))
        except (imagecodecs.JpegxlError, ValueError) as exc:
            raise UnsupportedInputError(f"JPEG XL cannot recompress this JPEG: {exc}") from exc
        if rebuilt != image:
            raise UnsupportedInputError("JPEG XL cannot reproduce this JPEG exactly; it is not recompressed")
        return payload

    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        import imagecodecs

        return as_bytes(imagecodecs.jpegxl_decode_jpeg(payload, numthreads=1))

    def _check_output(self, image: Any, header: Header) -> None:
        """The rebuilt JPEG must be bytes whose frame matches the header's geometry."""
        if not isinstance(image, bytes):
            raise PayloadError(f"{self.name} payload decoded to {type(image).__name__}, expected JPEG bytes")
        try:
            frame = read_jpeg_frame(image)
        except UnsupportedInputError as exc:
            raise PayloadError(f"{self.name} payload did not decode to a usable JPEG: {exc}") from exc
        found = (frame.height, frame.width, frame.components)
        expected = (header.height, header.width, header.channels)
        if found != expected:
            raise PayloadError(f"{self.name} payload decoded to a {found} JPEG, header declares {expected}")
