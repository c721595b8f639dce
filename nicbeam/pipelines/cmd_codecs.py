"""``nicbeam codecs``: a table of registered codecs, their lossless flag and parameter ranges."""

from __future__ import annotations

import argparse
import json

from nicbeam.codecs import available_codecs, get_codec_class
from nicbeam.codecs.base import Codec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def lossless_text(cls: type[Codec]) -> str:
    """``yes`` for always-lossless codecs, ``option`` when a parameter makes it lossless (a ``lossless``
    switch or ``lossless_when``, e.g. ``near=0``), else ``no``."""
    if cls.always_lossless:
        return "yes"
    switchable = cls.lossless_when or any(spec.name == "lossless" for spec in cls.param_specs)
    return "option" if switchable else "no"


def describe(name: str) -> dict:
    """One codec's row: lossless flag, input kind, parameters with range and default, description."""
    try:
        cls = get_codec_class(name)
    except Exception as exc:  # a broken third-party plugin must not hide the other codecs
        return {"name": name, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "name": name,
        "lossless": lossless_text(cls),
        "input": cls.input_kind,
        "progressive": cls.layered,
        "params": {
            spec.name: {"range": spec.range_text(), "default": spec.default, "doc": spec.doc}
            for spec in cls.param_specs
        },
        "description": cls.description,
    }


def run(args: argparse.Namespace, extra: list[str]) -> int:
    rows = [describe(name) for name in available_codecs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("codec", "lossless", "input", "parameters (range, default)")]
    for row in rows:
        if "error" in row:
            table.append((row["name"], "?", "?", row["error"]))
            continue
        params = "  ".join(f"{k}={v['range']} ({v['default']})" for k, v in row["params"].items()) or "-"
        table.append((row["name"], row["lossless"], row["input"], params))
    widths = [max(len(str(r[i])) for r in table) for i in range(3)]
    for r in table:
        print("  ".join(str(r[i]).ljust(widths[i]) for i in range(3)) + "  " + str(r[3]))
    return 0
