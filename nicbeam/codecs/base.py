"""The codec interface every nicbeam codec implements, classical or learned.

A codec turns an ``H x W x 3`` ``uint8`` RGB array into a self-describing nicbeam stream and back. Subclasses
implement only ``_encode_payload`` and ``_decode_payload``; this base class owns input checks, the container
header (codec id, parameters, weights digest, geometry, checksums) and the checks on decode, so every codec
rejects bad streams the same way.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Sequence

import numpy as np

from nicbeam.codecs import container
from nicbeam.codecs.container import Header
from nicbeam.codecs.errors import (
    BitstreamError,
    CodecError,
    InvalidParameterError,
    MalformedHeaderError,
    ModelMismatchError,
    PayloadError,
    UnsupportedInputError,
    UnsupportedVersionError,
)
from nicbeam.codecs.params import Param, ParamSpec, resolve_params


class Codec(abc.ABC):
    """Base class for codecs: validated parameters plus container-wrapped encode and decode.

    Class attributes describe the codec for the registry and ``nicbeam codecs``:
    ``name`` (registry id, written into every stream), ``description``, ``param_specs``,
    ``payload_version`` (bumped when the payload format changes), ``input_kind`` (``"rgb8"`` for
    pixel arrays, ``"jpeg"`` for codecs that take JPEG file bytes) and ``layered`` (progressive streams).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    param_specs: ClassVar[tuple[ParamSpec, ...]] = ()
    payload_version: ClassVar[int] = 1
    input_kind: ClassVar[str] = "rgb8"
    layered: ClassVar[bool] = False
    always_lossless: ClassVar[bool] = False
    #: Parameter values under which the codec is lossless when that is not a ``lossless`` switch
    #: (e.g. JPEG-LS ``near=0``); listings such as ``nicbeam codecs`` read it without building the codec.
    lossless_when: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Param] = resolve_params(self.param_specs, params, self.name)

    # ----------------------------------------------------------------- description
    @property
    def lossless(self) -> bool:
        """True when decode(encode(x)) == x exactly for this instance's parameters."""
        return self.always_lossless

    @property
    def model_digest(self) -> bytes:
        """SHA-256 of the model weights for learned codecs; empty for codecs without a model."""
        return b""

    @property
    def device(self) -> str:
        """Where the codec computes (``cpu``, ``cuda:0``); classical codecs always run on the CPU."""
        return "cpu"

    def implementation(self) -> str:
        """The library and version doing the work, recorded in metadata (e.g. ``libjpeg-turbo 3.0``)."""
        return "nicbeam"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- encoding
    def encode(self, image: Any) -> bytes:
        """Compress one image into a complete nicbeam stream."""
        checked = self._check_input(image)
        payload = self._encode_payload(checked)
        return self._wrap(checked, payload)

    def encode_batch(self, images: Sequence[Any]) -> list[bytes]:
        """Compress several images; learned codecs override this to run same-size images in one batch."""
        return [self.encode(image) for image in images]

    def _wrap(self, image: Any, payload: bytes) -> bytes:
        height, width, channels, bit_depth = self._geometry(image)
        header = Header(
            codec=self.name,
            params=self.params,
            height=height,
            width=width,
            channels=channels,
            bit_depth=bit_depth,
            codec_version=self.payload_version,
            model_digest=self.model_digest,
            flags=container.FLAG_LAYERED if self.layered else 0,
        )
        return container.pack(header, payload)

    def _check_input(self, image: Any) -> Any:
        """Reject anything but a non-empty ``H x W x 3`` ``uint8`` array; returns it C-contiguous."""
        if not isinstance(image, np.ndarray):
            raise UnsupportedInputError(f"{self.name} expects a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise UnsupportedInputError(
                f"{self.name} expects an H x W x 3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise UnsupportedInputError(f"{self.name} cannot encode an empty image {image.shape}")
        if image.shape[0] > container.MAX_SIDE or image.shape[1] > container.MAX_SIDE:
            raise UnsupportedInputError(f"{self.name}: image side exceeds {container.MAX_SIDE} pixels")
        return np.ascontiguousarray(image)

    def _geometry(self, image: Any) -> tuple[int, int, int, int]:
        """Height, width, channels and bit depth recorded in the header."""
        return image.shape[0], image.shape[1], 3, 8

    # ----------------------------------------------------------------- decoding
    def decode(self, data: bytes, *, max_pixels: int = container.DEFAULT_MAX_PIXELS) -> Any:
        """Decode a stream made by this codec (any parameters); raises BitstreamError on any defect."""
        header, payload = container.unpack(data, max_pixels=max_pixels)
        decoder = self._decoder_for(header)
        return decoder._decode_checked(payload, header)

    def decode_batch(self, streams: Sequence[bytes]) -> list[Any]:
        """Decode several streams; learned codecs override this to batch same-size images."""
        return [self.decode(stream) for stream in streams]

    def _decoder_for(self, header: Header) -> "Codec":
        """This instance when the stream's settings match it, else a sibling built from the header."""
        if header.codec != self.name:
            raise MalformedHeaderError(f"stream was made by codec {header.codec!r}, not {self.name!r}")
        if header.codec_version > self.payload_version:
            raise UnsupportedVersionError(
                f"{self.name} payload version {header.codec_version} is newer than supported "
                f"({self.payload_version})"
            )
        try:
            params = resolve_params(self.param_specs, header.params, self.name)
        except InvalidParameterError as exc:
            raise MalformedHeaderError(f"stream parameters are invalid for {self.name}: {exc}") from exc
        decoder = self if params == self.params else self._from_stream_params(params)
        if header.model_digest != decoder.model_digest:
            raise ModelMismatchError(
                f"stream was encoded by {self.name} model {header.model_digest.hex()[:16] or '(none)'}, "
                f"this decoder has model {decoder.model_digest.hex()[:16] or '(none)'}"
            )
        return decoder

    def _from_stream_params(self, params: dict[str, Param]) -> "Codec":
        """Build the codec that decodes a stream with other parameters; learned codecs may share state."""
        return type(self)(**params)

    def _decode_checked(self, payload: bytes, header: Header) -> Any:
        try:
            image = self._decode_payload(payload, header)
        except BitstreamError:
            raise
        except (CodecError, Exception) as exc:  # library errors vary; all mean an undecodable payload
            raise PayloadError(f"{self.name} payload could not be decoded: {type(exc).__name__}: {exc}") from exc
        self._check_output(image, header)
        return image

    def _check_output(self, image: Any, header: Header) -> None:
        """Refuse a decoded image whose geometry disagrees with the header: never return it silently."""
        expected = (header.height, header.width, 3)
        if not isinstance(image, np.ndarray) or image.shape != expected or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            raise PayloadError(f"{self.name} payload decoded to {shape}, header declares {expected} uint8")

    # ----------------------------------------------------------------- to implement
    @abc.abstractmethod
    def _encode_payload(self, image: Any) -> bytes:
        """Codec-specific bytes for one checked image."""

    @abc.abstractmethod
    def _decode_payload(self, payload: bytes, header: Header) -> Any:
        """Codec-specific inverse of ``_encode_payload``; may raise anything on bad payloads."""
