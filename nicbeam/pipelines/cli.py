"""The ``nicbeam`` command line: one subcommand per module, each with ``add_parser`` and ``run``.

Subcommand modules are imported only when their subcommand runs, so ``nicbeam codecs`` does not import
Apache Beam or PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: Subcommand name -> (module path, one-line help). Each module defines ``add_arguments(parser)`` and
#: ``run(args, extra) -> int``; ``extra`` holds unrecognised arguments (Beam pipeline options).
COMMANDS: dict[str, tuple[str, str]] = {
    "codecs": ("nicbeam.pipelines.cmd_codecs", "list registered codecs, their lossless flag and parameters"),
    "info": ("nicbeam.pipelines.cmd_info", "print the header of a nicbeam bitstream"),
    "compress": ("nicbeam.pipelines.cmd_compress", "compress a corpus with a codec (Apache Beam job)"),
    "decompress": ("nicbeam.pipelines.cmd_decompress", "decode nicbeam streams back to images (Apache Beam job)"),
    "evaluate": ("nicbeam.pipelines.cmd_evaluate", "rate-distortion evaluation of codec settings (Apache Beam job)"),
    "train": ("nicbeam.pipelines.cmd_train", "train a learned codec"),
    "truncate": ("nicbeam.pipelines.cmd_truncate", "cut a progressive stream to its first K iterations (layers)"),
    "recompress": ("nicbeam.pipelines.cmd_recompress", "recompress an archive to verified, smaller streams, resumably (Apache Beam job)"),
    "latents": ("nicbeam.pipelines.cmd_latents", "entropy-decode the latents of learned-codec streams (Apache Beam job)"),
}

#: Subcommands whose unknown options are Beam pipeline options rather than mistakes.
PASSES_PIPELINE_OPTIONS = {"compress", "decompress", "evaluate", "latents", "recompress"}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered subcommand."""
    from nicbeam import __version__

    parser = argparse.ArgumentParser(prog="nicbeam", description="Neural and classical image compression at corpus scale.")
    parser.add_argument("--version", action="version", version=f"nicbeam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_path, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_path)
        importlib.import_module(module_path).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nicbeam`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASSES_PIPELINE_OPTIONS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    module = importlib.import_module(args._module)
    return int(module.run(args, extra) or 0)


if __name__ == "__main__":
    sys.exit(main())
