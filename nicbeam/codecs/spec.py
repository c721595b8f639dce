"""Codec settings written as text: ``NAME[:PARAM=V1,V2,...][:PARAM2=...]``.

The same form names a codec setting everywhere (CLI, reports, metadata): ``jpeg:quality=30,50,75`` expands
to three settings, ``jpeg:quality=50,75:subsampling=444`` to the cartesian product of the lists. Values are
validated against the codec's declared parameters, so a typo fails before a pipeline starts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from nicbeam.codecs.errors import InvalidParameterError
from nicbeam.codecs.params import Param, resolve_params
from nicbeam.codecs.registry import get_codec_class


@dataclass(frozen=True)
class CodecSetting:
    """One codec with fully resolved parameters; ``label`` is its canonical spec text."""

    codec: str
    params: tuple[tuple[str, Param], ...]
    explicit: tuple[str, ...] = ()

    @property
    def param_dict(self) -> dict[str, Param]:
        """The parameters as a dict (defaults filled in)."""
        return dict(self.params)

    @property
    def label(self) -> str:
        """Canonical text naming this setting, listing the parameters that were given explicitly."""
        given = [f"{k}={_text(v)}" for k, v in self.params if k in self.explicit]
        return ":".join([self.codec, *given])

    def build(self, **extra: Any) -> Any:
        """Instantiate the codec for this setting."""
        return get_codec_class(self.codec)(**self.param_dict, **extra)


def _text(value: Param) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def make_setting(codec: str, params: Mapping[str, Any] | None = None) -> CodecSetting:
    """Validate ``params`` for ``codec`` and return the resolved setting."""
    params = dict(params or {})
    cls = get_codec_class(codec)
    resolved = resolve_params(cls.param_specs, params, codec)
    return CodecSetting(codec, tuple(resolved.items()), tuple(k for k in resolved if k in params))


def parse_codec_spec(spec: str) -> list[CodecSetting]:
    """Expand one spec string into its settings (cartesian product of the value lists)."""
    parts = [part.strip() for part in spec.strip().split(":")]
    name, assignments = parts[0], parts[1:]
    if not name:
        raise InvalidParameterError(f"codec spec {spec!r} does not start with a codec name")
    keys: list[str] = []
    choices: list[list[str]] = []
    for assignment in assignments:
        key, sep, values = assignment.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise InvalidParameterError(f"codec spec {spec!r}: {assignment!r} is not PARAM=V1,V2,...")
        if key in keys:
            raise InvalidParameterError(f"codec spec {spec!r} names parameter {key!r} twice")
        keys.append(key)
        choices.append([v.strip() for v in values.split(",") if v.strip()])
    return [make_setting(name, dict(zip(keys, combo))) for combo in itertools.product(*choices)]


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """Turn CLI ``--param k=v`` strings into a dict (values validated later by the codec)."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError(f"--param {pair!r} is not KEY=VALUE")
        result[key.strip()] = value.strip()
    return result
