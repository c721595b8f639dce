"""``nicbeam info FILE``: print a bitstream's header (and whether its payload checksum verifies)."""

from __future__ import annotations

import argparse
import json
import sys

import fsspec

from nicbeam.codecs import BitstreamError, container


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a nicbeam bitstream (local path or fsspec URL)")
    parser.add_argument("--json", action="store_true", help="print the header as JSON")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    with fsspec.open(args.file, "rb") as handle:
        data = handle.read()
    try:
        header = container.parse_header(data)
    except BitstreamError as exc:
        print(f"{args.file}: invalid nicbeam bitstream ({exc.reason}): {exc}", file=sys.stderr)
        return 2
    info = header.as_dict()
    try:
        container.unpack(data)
        info["payload_ok"] = True
    except BitstreamError as exc:
        info["payload_ok"] = False
        info["payload_error"] = f"{exc.reason}: {exc}"
    info["file_bytes"] = len(data)
    info["bpp"] = round(8 * len(data) / (header.height * header.width), 6)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key.ljust(width)}  {json.dumps(value) if isinstance(value, dict) else value}")
    return 0 if info["payload_ok"] else 2
