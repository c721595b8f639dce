"""Model-family registry: family name -> factory building an untrained model from JSON-able kwargs.

A model built by a factory must follow the Trainer protocol (see :mod:`nicbeam.training.trainer`).
"""

from __future__ import annotations

from typing import Any, Callable

_FAMILIES: dict[str, Callable[..., Any]] = {}


def register_family(name: str, factory: Callable[..., Any]) -> None:
    """Add (or replace) a trainable model family."""
    _FAMILIES[name] = factory


def _builtin() -> None:
    if _FAMILIES:
        return
    from nicbeam.nn.models import MODEL_CLASSES

    for name, cls in MODEL_CLASSES.items():
        _FAMILIES.setdefault(name, cls)
    from nicbeam.codecs.learned.rnn.network import RNNCompressionModel

    _FAMILIES.setdefault(RNNCompressionModel.family, RNNCompressionModel)
    from nicbeam.nn.dpcm import MlpDpcm

    _FAMILIES.setdefault(MlpDpcm.family, MlpDpcm)
    from nicbeam.codecs.learned.transformer.model import TransformerHyperprior

    _FAMILIES.setdefault(TransformerHyperprior.family, TransformerHyperprior)
    from nicbeam.nn.checkerboard import CheckerboardHyperprior

    _FAMILIES.setdefault(CheckerboardHyperprior.family, CheckerboardHyperprior)
    from nicbeam.nn.channel_context import ChannelContextHyperprior

    _FAMILIES.setdefault(ChannelContextHyperprior.family, ChannelContextHyperprior)


def available_families() -> list[str]:
    _builtin()
    return sorted(_FAMILIES)


def build_model(name: str, **config: Any):
    """A fresh model of family ``name`` built with ``config`` (the model's ``config`` property round-trips)."""
    _builtin()
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family {name!r}; available: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name](**config)


def family_downsampling(name: str) -> int:
    """The total downsampling of a family's models (crops must be multiples of it); 1 if it does not say."""
    _builtin()
    return int(getattr(_FAMILIES.get(name), "downsampling", 1))
