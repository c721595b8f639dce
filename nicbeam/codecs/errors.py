"""Exceptions raised by codecs and by the bitstream container.

Every way a stream can be unusable raises a subclass of :class:`BitstreamError`, so callers catch one type
and still learn which check failed (``err.reason`` is a stable, machine-readable string).
"""

from __future__ import annotations


class CodecError(Exception):
    """Base class for codec-level failures (bad parameters, unsupported input, library failure)."""

    reason = "codec_error"


class InvalidParameterError(CodecError, ValueError):
    """A codec parameter is unknown, of the wrong type, or out of its documented range."""

    reason = "invalid_parameter"


class UnsupportedInputError(CodecError, ValueError):
    """The image given to ``encode`` is not what the codec accepts (shape, dtype, size)."""

    reason = "unsupported_input"


class BitstreamError(ValueError):
    """A nicbeam bitstream cannot be decoded; the subclass and ``reason`` say which check failed."""

    reason = "bitstream_error"


class BadMagicError(BitstreamError):
    """The data does not start with the nicbeam magic bytes: it is not a nicbeam stream."""

    reason = "bad_magic"


class UnsupportedVersionError(BitstreamError):
    """The container format version (or a codec payload version) is newer than this library."""

    reason = "unsupported_version"


class TruncatedBitstreamError(BitstreamError):
    """The stream ends before the header or the payload it declares."""

    reason = "truncated"


class TrailingDataError(BitstreamError):
    """The stream is longer than its header declares (concatenated or padded data)."""

    reason = "trailing_data"


class MalformedHeaderError(BitstreamError):
    """A header field cannot be parsed (bad lengths, invalid JSON parameters, reserved bits set)."""

    reason = "malformed_header"


class ChecksumError(BitstreamError):
    """The header or payload checksum does not match: the stream was corrupted or tampered with."""

    reason = "checksum_mismatch"


class UnknownCodecError(BitstreamError):
    """The stream names a codec that is not registered in this installation."""

    reason = "unknown_codec"


class ModelMismatchError(BitstreamError):
    """The stream was made by a model whose weights digest differs from the model that would decode it."""

    reason = "model_mismatch"


class DimensionError(BitstreamError):
    """The header declares dimensions that are zero or exceed the decoder's pixel limit."""

    reason = "bad_dimensions"


class PayloadError(BitstreamError):
    """The payload passed its checksum but the codec could not decode it into the declared image."""

    reason = "payload_error"
