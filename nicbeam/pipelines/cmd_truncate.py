"""``nicbeam truncate STREAM OUT --iterations K``: cut a progressive stream to its first K layers (RNN codecs:
iterations) without re-encoding; the result decodes exactly as a stream encoded at K iterations."""

from __future__ import annotations

import argparse
import sys

import fsspec

from nicbeam.codecs import BitstreamError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stream", help="a layered nicbeam stream (local path or fsspec URL)")
    parser.add_argument("out", help="where to write the cut stream")
    parser.add_argument("--iterations", type=int, required=True, metavar="K", help="layers (iterations) to keep")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.codecs.learned.rnn.progressive import truncate_iterations

    with fsspec.open(args.stream, "rb") as handle:
        data = handle.read()
    try:
        cut = truncate_iterations(data, args.iterations)
    except BitstreamError as exc:
        print(f"{args.stream}: invalid nicbeam bitstream ({exc.reason}): {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{args.stream}: {exc}", file=sys.stderr)
        return 2
    with fsspec.open(args.out, "wb") as handle:
        handle.write(cut)
    print(f"{args.out}: {len(cut)} bytes ({args.iterations} iterations), from {len(data)} bytes")
    return 0
