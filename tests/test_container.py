"""The bitstream container: round trip, and one documented error for every way a stream can be bad."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from nicbeam.codecs import (
    BadMagicError,
    BitstreamError,
    ChecksumError,
    DimensionError,
    MalformedHeaderError,
    ModelMismatchError,
    PayloadError,
    TrailingDataError,
    TruncatedBitstreamError,
    UnknownCodecError,
    UnsupportedVersionError,
    container,
    decode,
    get_codec,
    parse_header,
)
from nicbeam.codecs.container import Header


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:24, 0:40]
    base = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1)
    return np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stream(image: np.ndarray) -> bytes:
    return get_codec("png").encode(image)


def reheader(stream: bytes, **changes) -> bytes:
    """Re-pack a valid stream with header fields changed (checksums recomputed): a well-formed lie."""
    header, payload = container.unpack(stream)
    fields = {**header.__dict__, **changes}
    fields.pop("header_length")
    return container.pack(Header(**fields), payload)


def test_round_trip_and_header(image: np.ndarray, stream: bytes) -> None:
    header = parse_header(stream)
    assert (header.codec, header.height, header.width, header.channels, header.bit_depth) == ("png", 24, 40, 3, 8)
    assert header.params == get_codec("png").params
    assert stream[:4] == b"NICB" and stream[4] == container.FORMAT_VERSION
    assert header.header_length + header.payload_length == len(stream)
    np.testing.assert_array_equal(decode(stream), image)


def test_every_single_bit_flip_is_detected(stream: bytes) -> None:
    flipped_ok = 0
    for position in range(len(stream)):
        for bit in (0, 5):
            bad = bytearray(stream)
            bad[position] ^= 1 << bit
            with pytest.raises(BitstreamError):
                decode(bytes(bad))
            flipped_ok += 1
    assert flipped_ok == 2 * len(stream)


@pytest.mark.parametrize("cut", [1, 3, 4, 7, 8, 20, -1, -10])
def test_truncation_is_reported(stream: bytes, cut: int) -> None:
    data = stream[:cut]
    with pytest.raises(TruncatedBitstreamError, match="truncat|shorter|needs|cut"):
        decode(data)


def test_empty_and_foreign_data_are_bad_magic(stream: bytes) -> None:
    with pytest.raises(BadMagicError, match="empty"):
        decode(b"")
    with pytest.raises(BadMagicError, match="NICB"):
        decode(b"\x89PNG\r\n\x1a\n" + stream[8:])
    with pytest.raises(BadMagicError):
        decode(b"XXXX" + stream[4:])


def test_trailing_bytes_are_refused(stream: bytes) -> None:
    with pytest.raises(TrailingDataError):
        decode(stream + b"\x00")


def test_future_format_version_is_refused(stream: bytes) -> None:
    bad = bytearray(stream)
    bad[4] = container.FORMAT_VERSION + 1
    with pytest.raises(UnsupportedVersionError, match="version"):
        decode(bytes(bad))


def test_future_payload_version_is_refused(stream: bytes) -> None:
    with pytest.raises(UnsupportedVersionError, match="payload version"):
        decode(reheader(stream, codec_version=99))


def test_unknown_codec(stream: bytes) -> None:
    with pytest.raises(UnknownCodecError, match="no-such-codec"):
        decode(reheader(stream, codec="no-such-codec"))


def test_wrong_model_digest(stream: bytes) -> None:
    with pytest.raises(ModelMismatchError, match="model"):
        decode(reheader(stream, model_digest=b"\x01" * 32))


def test_invalid_parameters_in_header(stream: bytes) -> None:
    with pytest.raises(MalformedHeaderError, match="parameter"):
        decode(reheader(stream, params={"level": 42}))
    with pytest.raises(MalformedHeaderError, match="parameter"):
        decode(reheader(stream, params={"bogus": 1}))


@pytest.mark.parametrize(
    "height,width", [(0, 40), (24, 0), (1 << 17, 1 << 17), (container.MAX_SIDE + 1, 1)]
)
def test_oversized_or_empty_dimensions(stream: bytes, height: int, width: int) -> None:
    with pytest.raises(DimensionError, match="pixels|empty|limit"):
        decode(reheader(stream, height=height, width=width))


def test_pixel_limit_is_configurable(stream: bytes, image: np.ndarray) -> None:
    with pytest.raises(DimensionError, match="max_pixels"):
        decode(stream, max_pixels=100)
    np.testing.assert_array_equal(decode(stream, max_pixels=24 * 40), image)


def test_header_geometry_disagreeing_with_payload(stream: bytes) -> None:
    with pytest.raises(PayloadError, match="header declares"):
        decode(reheader(stream, height=23))


def test_garbage_payload_with_valid_checksums(stream: bytes) -> None:
    header, _ = container.unpack(stream)
    fields = {**header.__dict__}
    fields.pop("header_length")
    with pytest.raises(PayloadError, match="png payload"):
        decode(container.pack(Header(**fields), b"not a png at all"))


def test_reserved_flags_and_bad_json_are_malformed(stream: bytes) -> None:
    bad = bytearray(stream)
    bad[5] = 0x80
    end = container.parse_header(stream).header_length - 4
    bad[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(bad[:end])))
    with pytest.raises(MalformedHeaderError, match="flag"):
        decode(bytes(bad))
    params_at = 8 + 1 + len("png") + 2 + 2
    bad = bytearray(stream)
    bad[params_at] = ord("[")
    bad[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(bad[:end])))
    with pytest.raises(MalformedHeaderError, match="JSON"):
        decode(bytes(bad))


def test_header_length_running_past_fields(stream: bytes) -> None:
    bad = bytearray(stream)
    header_length = container.parse_header(stream).header_length
    end = header_length - 4
    # Claim a codec id longer than the header holds.
    bad[8] = 200
    bad[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(bad[:end])))
    with pytest.raises(MalformedHeaderError, match="runs past"):
        decode(bytes(bad))


def test_layers_pack_truncate_and_reject_corruption() -> None:
    layers = [b"base", b"", b"refinement-1", b"r2"]
    payload = container.pack_layers(layers)
    assert container.unpack_layers(payload) == layers
    header = Header(codec="png", params={"level": 6}, height=2, width=2, flags=container.FLAG_LAYERED)
    stream = container.pack(header, payload)
    shorter = container.truncate_layers(stream, 2)
    assert container.unpack_layers(container.unpack(shorter)[1]) == layers[:2]
    assert len(shorter) < len(stream)
    with pytest.raises(PayloadError):
        container.unpack_layers(payload[:-1])
    with pytest.raises(PayloadError):
        container.unpack_layers(payload + b"x")
    with pytest.raises(ValueError, match="keep"):
        container.truncate_layers(stream, 5)


def test_every_error_has_a_reason_and_is_a_value_error() -> None:
    for cls in (BadMagicError, ChecksumError, DimensionError, MalformedHeaderError, ModelMismatchError,
                PayloadError, TrailingDataError, TruncatedBitstreamError, UnknownCodecError,
                UnsupportedVersionError):
        assert issubclass(cls, BitstreamError) and issubclass(cls, ValueError)
        assert cls.reason and cls.reason != BitstreamError.reason
