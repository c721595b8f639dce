"""The nicbeam bitstream container: a versioned, checksummed header in front of a codec payload.

The byte layout is documented in ``docs/bitstream.md``; this module is its only implementation. The header
carries everything needed to decode without being told the codec (codec id and parameters, weights digest,
image geometry), and two CRC-32 checksums so that any truncation, bit flip or tampering is reported as a
:class:`~nicbeam.codecs.errors.BitstreamError` before a codec ever sees the payload.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from nicbeam.codecs.errors import (
    BadMagicError,
    ChecksumError,
    DimensionError,
    MalformedHeaderError,
    TrailingDataError,
    TruncatedBitstreamError,
    UnsupportedVersionError,
)

MAGIC = b"NICB"
FORMAT_VERSION = 1
#: Flag bit 0: the payload is a sequence of independently delimited layers (progressive / variable rate).
FLAG_LAYERED = 0x01
_KNOWN_FLAGS = FLAG_LAYERED

#: Largest image a stream may declare unless the caller raises it: 2**28 pixels (16384 x 16384).
DEFAULT_MAX_PIXELS = 1 << 28
#: Largest single side: the 16-bit limit most image formats share, times four.
MAX_SIDE = 1 << 18

_PREFIX = struct.Struct(">4sBBH")  # magic, version, flags, header-field length
_GEOMETRY = struct.Struct(">IIBB")  # height, width, channels, bit depth
_PAYLOAD = struct.Struct(">QI")  # payload length, payload CRC-32
_CRC = struct.Struct(">I")
_CODEC_VERSION = struct.Struct(">H")
_LAYER = struct.Struct(">I")

Param = int | float | bool | str


@dataclass(frozen=True)
class Header:
    """Everything a nicbeam stream declares about itself."""

    codec: str
    params: Mapping[str, Param]
    height: int
    width: int
    channels: int = 3
    bit_depth: int = 8
    codec_version: int = 1
    model_digest: bytes = b""
    flags: int = 0
    payload_length: int = 0
    payload_crc32: int = 0
    header_length: int = field(default=0, compare=False)

    @property
    def layered(self) -> bool:
        """True when the payload is a sequence of layers (see :func:`pack_layers`)."""
        return bool(self.flags & FLAG_LAYERED)

    @property
    def model_digest_hex(self) -> str:
        """The weights digest as lowercase hex, or an empty string for codecs without a model."""
        return self.model_digest.hex()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view, used by ``nicbeam info`` and the metadata writer."""
        return {
            "format_version": FORMAT_VERSION,
            "codec": self.codec,
            "codec_version": self.codec_version,
            "params": dict(self.params),
            "model_digest": self.model_digest_hex,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "bit_depth": self.bit_depth,
            "layered": self.layered,
            "header_bytes": self.header_length,
            "payload_bytes": self.payload_length,
            "payload_crc32": f"{self.payload_crc32:08x}",
        }


def canonical_params(params: Mapping[str, Param]) -> bytes:
    """Serialise codec parameters as compact, key-sorted JSON so equal settings give equal bytes."""
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, (int, float, bool, str)):
            raise TypeError(f"codec parameter {key!r}={value!r} is not a scalar JSON value")
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise ``header`` (its payload fields are recomputed) followed by ``payload``."""
    codec_id = header.codec.encode("ascii")
    params = canonical_params(header.params)
    if not 0 < len(codec_id) < 256:
        raise ValueError(f"codec id must be 1..255 ASCII bytes, got {header.codec!r}")
    if len(params) > 0xFFFF:
        raise ValueError("codec parameters exceed 65535 bytes of JSON")
    if len(header.model_digest) > 255:
        raise ValueError("model digest exceeds 255 bytes")
    if header.flags & ~_KNOWN_FLAGS:
        raise ValueError(f"unknown container flags 0x{header.flags:02x}")
    fields = b"".join(
        [
            bytes([len(codec_id)]),
            codec_id,
            _CODEC_VERSION.pack(header.codec_version),
            struct.pack(">H", len(params)),
            params,
            bytes([len(header.model_digest)]),
            header.model_digest,
            _GEOMETRY.pack(header.height, header.width, header.channels, header.bit_depth),
            _PAYLOAD.pack(len(payload), zlib.crc32(payload)),
        ]
    )
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, header.flags, len(fields)) + fields
    return head + _CRC.pack(zlib.crc32(head)) + payload


class _Reader:
    """Bounds-checked cursor over the header fields; running past the end means a malformed header."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise MalformedHeaderError(f"header field {what!r} runs past the declared header length")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, what))


def parse_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Parse and verify the header of ``data`` (magic, version, header CRC, geometry limits).

    The payload itself is not checked here; :func:`unpack` does that.
    """
    data = bytes(data)
    if not data:
        raise BadMagicError("not a nicbeam bitstream: the input is empty")
    if data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise TruncatedBitstreamError(f"stream is {len(data)} bytes, cut inside the magic")
        raise BadMagicError(f"not a nicbeam bitstream: expected magic b'NICB', got {data[:4]!r}")
    if len(data) < _PREFIX.size:
        raise TruncatedBitstreamError(f"stream is {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix")
    magic, version, flags, fields_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BadMagicError(f"not a nicbeam bitstream: expected magic b'NICB', got {magic!r}")
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"container format version {version} is not supported (this nicbeam reads version {FORMAT_VERSION})"
        )
    end = _PREFIX.size + fields_length
    if len(data) < end + _CRC.size:
        raise TruncatedBitstreamError(
            f"stream is {len(data)} bytes but its header alone needs {end + _CRC.size} bytes"
        )
    (stored_crc,) = _CRC.unpack_from(data, end)
    actual_crc = zlib.crc32(data[:end])
    if stored_crc != actual_crc:
        raise ChecksumError(f"header checksum mismatch (stored {stored_crc:08x}, computed {actual_crc:08x})")
    if flags & ~_KNOWN_FLAGS:
        raise MalformedHeaderError(f"reserved container flag bits set: 0x{flags:02x}")

    reader = _Reader(data[_PREFIX.size : end])
    (codec_len,) = reader.take(1, "codec id length")
    try:
        codec = reader.take(codec_len, "codec id").decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedHeaderError("codec id is not ASCII") from exc
    if not codec:
        raise MalformedHeaderError("codec id is empty")
    (codec_version,) = reader.unpack(_CODEC_VERSION, "codec version")
    (params_len,) = reader.unpack(struct.Struct(">H"), "parameter length")
    try:
        params = json.loads(reader.take(params_len, "parameters").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedHeaderError(f"codec parameters are not valid JSON: {exc}") from exc
    if not isinstance(params, dict) or not all(isinstance(v, (int, float, bool, str)) for v in params.values()):
        raise MalformedHeaderError("codec parameters must be a JSON object of scalars")
    (digest_len,) = reader.take(1, "digest length")
    digest = reader.take(digest_len, "model digest")
    height, width, channels, bit_depth = reader.unpack(_GEOMETRY, "geometry")
    payload_length, payload_crc = reader.unpack(_PAYLOAD, "payload length")
    if reader.pos != len(reader.data):
        raise MalformedHeaderError(f"{len(reader.data) - reader.pos} unexpected bytes at the end of the header")

    if height == 0 or width == 0:
        raise DimensionError(f"header declares an empty image ({width}x{height})")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > max_pixels:
        raise DimensionError(
            f"header declares {width}x{height} = {width * height} pixels, above the decoder limit of "
            f"{max_pixels} pixels (pass max_pixels= to raise it)"
        )
    if channels not in (1, 3, 4) or bit_depth not in (8, 16):
        raise DimensionError(f"unsupported geometry: {channels} channels at {bit_depth} bits")

    return Header(
        codec=codec,
        params=params,
        height=height,
        width=width,
        channels=channels,
        bit_depth=bit_depth,
        codec_version=codec_version,
        model_digest=digest,
        flags=flags,
        payload_length=payload_length,
        payload_crc32=payload_crc,
        header_length=end + _CRC.size,
    )


def unpack(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, bytes]:
    """Verify a whole stream and split it into its header and payload."""
    data = bytes(data)
    header = parse_header(data, max_pixels=max_pixels)
    start = header.header_length
    available = len(data) - start
    if available < header.payload_length:
        raise TruncatedBitstreamError(
            f"payload truncated: header declares {header.payload_length} bytes, {available} present"
        )
    if available > header.payload_length:
        raise TrailingDataError(
            f"{available - header.payload_length} bytes follow the declared {header.payload_length}-byte payload"
        )
    payload = data[start:]
    actual = zlib.crc32(payload)
    if actual != header.payload_crc32:
        raise ChecksumError(
            f"payload checksum mismatch (stored {header.payload_crc32:08x}, computed {actual:08x}): "
            "the stream is corrupted"
        )
    return header, payload


def pack_layers(layers: Sequence[bytes]) -> bytes:
    """Join progressive layers into one payload: a u32 count, then each layer as u32 length + bytes."""
    return _LAYER.pack(len(layers)) + pack_chunks(layers)


def pack_chunks(chunks: Sequence[bytes]) -> bytes:
    """Concatenate chunks, each as a u32 length followed by its bytes (the count is stored elsewhere)."""
    return b"".join(_LAYER.pack(len(chunk)) + bytes(chunk) for chunk in chunks)


def unpack_chunks(payload: bytes, pos: int, count: int, what: str = "chunk") -> list[bytes]:
    """Read ``count`` chunks written by :func:`pack_chunks` from ``pos``; the payload must end right after them."""
    from nicbeam.codecs.errors import PayloadError

    chunks = []
    for index in range(count):
        if pos + _LAYER.size > len(payload):
            raise PayloadError(f"payload truncated: it ends before {what} {index}")
        (length,) = _LAYER.unpack_from(payload, pos)
        pos += _LAYER.size
        if pos + length > len(payload):
            raise PayloadError(f"payload truncated: {what} {index} declares {length} bytes, {len(payload) - pos} remain")
        chunks.append(payload[pos : pos + length])
        pos += length
    if pos != len(payload):
        raise PayloadError(f"{len(payload) - pos} unexpected bytes follow the last {what}")
    return chunks


def unpack_layers(payload: bytes) -> list[bytes]:
    """Split a layered payload back into its layers, rejecting any inconsistency."""
    from nicbeam.codecs.errors import PayloadError

    if len(payload) < _LAYER.size:
        raise PayloadError("layered payload is shorter than its layer count")
    (count,) = _LAYER.unpack_from(payload)
    return unpack_chunks(payload, _LAYER.size, count, "layer")


def truncate_layers(data: bytes, keep: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Return a valid stream holding only the first ``keep`` layers of a layered stream (lower rate).

    This is how progressive streams are cut: explicitly, producing a new checksummed stream, so that an
    accidentally truncated file is still reported as truncated rather than decoded at lower quality.
    """
    header, payload = unpack(data, max_pixels=max_pixels)
    if not header.layered:
        raise ValueError(f"codec {header.codec!r} stream is not layered; it cannot be truncated")
    layers = unpack_layers(payload)
    if not 1 <= keep <= len(layers):
        raise ValueError(f"keep must be in 1..{len(layers)}, got {keep}")
    return pack(header, pack_layers(layers[:keep]))
