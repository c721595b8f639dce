"""Declared codec parameters: name, type, default and range, validated the same way everywhere.

Values arrive from Python calls, from the CLI as strings (``quality=75``) and from bitstream headers as
JSON; :meth:`ParamSpec.coerce` turns each into the declared type or raises
:class:`~nicbeam.codecs.errors.InvalidParameterError` naming the allowed range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from nicbeam.codecs.errors import InvalidParameterError

Param = int | float | bool | str

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ParamSpec:
    """One codec parameter: its type, default, inclusive numeric range or allowed choices."""

    name: str
    kind: type
    default: Param
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Param, ...] | None = None
    doc: str = ""

    def coerce(self, value: Any) -> Param:
        """Return ``value`` converted to this parameter's type, or raise if it is not allowed."""
        converted = self._convert(value)
        if self.choices is not None and converted not in self.choices:
            raise InvalidParameterError(
                f"parameter {self.name}={value!r} is not one of {', '.join(map(str, self.choices))}"
            )
        if self.minimum is not None and converted < self.minimum or (
            self.maximum is not None and converted > self.maximum
        ):
            raise InvalidParameterError(f"parameter {self.name}={value!r} is outside {self.range_text()}")
        return converted

    def _convert(self, value: Any) -> Param:
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise InvalidParameterError(f"parameter {self.name}={value!r} is not a boolean")
        if self.kind is int:
            if isinstance(value, bool):
                raise InvalidParameterError(f"parameter {self.name}={value!r} must be an integer")
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    pass
            raise InvalidParameterError(f"parameter {self.name}={value!r} must be an integer")
        if self.kind is float:
            if isinstance(value, bool):
                raise InvalidParameterError(f"parameter {self.name}={value!r} must be a number")
            try:
                result = float(value)
            except (TypeError, ValueError):
                raise InvalidParameterError(f"parameter {self.name}={value!r} must be a number") from None
            if result != result or result in (float("inf"), float("-inf")):
                raise InvalidParameterError(f"parameter {self.name}={value!r} must be finite")
            return result
        if self.kind is str:
            if not isinstance(value, str):
                raise InvalidParameterError(f"parameter {self.name}={value!r} must be a string")
            return value
        raise TypeError(f"unsupported parameter kind {self.kind!r}")

    def range_text(self) -> str:
        """Human description of the allowed values, e.g. ``0..100`` or ``420|444``."""
        if self.choices is not None:
            return "|".join(str(c) for c in self.choices)
        if self.kind is bool:
            return "true|false"
        low = "" if self.minimum is None else _fmt(self.minimum)
        high = "" if self.maximum is None else _fmt(self.maximum)
        return f"{low}..{high}" if (low or high) else self.kind.__name__


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def resolve_params(specs: Sequence[ParamSpec], given: Mapping[str, Any], codec: str) -> dict[str, Param]:
    """Fill defaults and validate ``given`` against ``specs``; unknown names are an error."""
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise InvalidParameterError(f"codec {codec!r} has no parameter {', '.join(unknown)} (allowed: {allowed})")
    return {name: spec.coerce(given[name]) if name in given else spec.default for name, spec in known.items()}
