"""Codec registry: built-in codecs by import path, third-party codecs through entry points.

Built-ins are listed as ``module:Class`` strings and imported on first use, so ``import nicbeam.codecs``
stays light (no PyTorch) until a learned codec is asked for. Third-party packages add codecs under the
entry-point group ``nicbeam.codecs`` (``name = package.module:CodecClass``).
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from nicbeam.codecs.base import Codec
from nicbeam.codecs.errors import UnknownCodecError

ENTRY_POINT_GROUP = "nicbeam.codecs"

_BUILTIN: dict[str, str] = {
    "jpeg": "nicbeam.codecs.jpeg:JpegCodec",
    "webp": "nicbeam.codecs.webp:WebpCodec",
    "avif": "nicbeam.codecs.avif:AvifCodec",
    "jpeg2000": "nicbeam.codecs.jpeg2000:Jpeg2000Codec",
    "jpegxl": "nicbeam.codecs.jpegxl:JpegXlCodec",
    "png": "nicbeam.codecs.png:PngCodec",
    "bmshj2017-factorized": "nicbeam.codecs.learned.factorized:FactorizedCodec",
    "mbt2018-mean": "nicbeam.codecs.learned.hyperprior:MeanScaleHyperpriorCodec",
    "tcm-hyperprior": "nicbeam.codecs.learned.transformer.codec:TransformerHyperpriorCodec",
    "ckbd-hyperprior": "nicbeam.codecs.learned.checkerboard:CheckerboardHyperpriorCodec",
    "charm-hyperprior": "nicbeam.codecs.learned.channel_context:ChannelContextHyperpriorCodec",
    "jpeg-transcode": "nicbeam.codecs.jpeg_transcode:JpegTranscodeCodec",
    "rnn-gru-oneshot": "nicbeam.codecs.learned.rnn.codec:GruOneShot",
    "rnn-lstm-residual-scaling": "nicbeam.codecs.learned.rnn.codec:LstmResidualScaling",
    "rnn-lstm-oneshot": "nicbeam.codecs.learned.rnn.codec:LstmOneShot",
    "rnn-lstm-additive": "nicbeam.codecs.learned.rnn.codec:LstmAdditive",
    "rnn-resgru-oneshot": "nicbeam.codecs.learned.rnn.codec:ResGruOneShot",
    "rnn-resgru-residual-scaling": "nicbeam.codecs.learned.rnn.codec:ResGruResidualScaling",
    "rnn-assoclstm-oneshot": "nicbeam.codecs.learned.rnn.codec:AssocLstmOneShot",
    "rnn-gru-residual-scaling": "nicbeam.codecs.learned.rnn.codec:GruResidualScaling",
    "mlp-dpcm": "nicbeam.codecs.predictive.dpcm:MlpDpcmCodec",
    "jpegls": "nicbeam.codecs.jpegls:JpegLsCodec",
    "dct": "nicbeam.codecs.transform.dct:DctCodec",
    "dwt": "nicbeam.codecs.transform.dwt:DwtCodec",
}

_registered: dict[str, type[Codec] | str] = {}
_lock = threading.Lock()
_entry_points_loaded = False


def register_codec(cls: type[Codec] | str, name: str | None = None) -> None:
    """Register a codec class (or a ``module:Class`` path) under ``name`` (default: ``cls.name``)."""
    if name is None:
        if isinstance(cls, str):
            raise ValueError("a codec given as an import path needs an explicit name")
        name = cls.name
    with _lock:
        _registered[name] = cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    with _lock:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _registered.setdefault(ep.name, ep.value)
        _entry_points_loaded = True


def available_codecs() -> list[str]:
    """Names of every registered codec (built-in, registered at run time, and from entry points)."""
    _load_entry_points()
    return sorted(set(_BUILTIN) | set(_registered))


def _import(path: str) -> type[Codec]:
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        raise TypeError(f"{path} is not a nicbeam Codec subclass")
    return cls


def get_codec_class(name: str) -> type[Codec]:
    """The class registered under ``name``; raises :class:`UnknownCodecError` listing what exists."""
    _load_entry_points()
    target = _registered.get(name) or _BUILTIN.get(name)
    if target is None:
        raise UnknownCodecError(f"unknown codec {name!r}; available: {', '.join(available_codecs())}")
    if isinstance(target, str):
        target = _import(target)
        with _lock:
            _registered[name] = target
    return target


def get_codec(name: str, **params: Any) -> Codec:
    """A codec instance with validated parameters, e.g. ``get_codec("jpeg", quality=75)``."""
    return get_codec_class(name)(**params)
