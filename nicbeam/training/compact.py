"""Shrink a training checkpoint for the repository: the optimizers' moment tensors stored in bfloat16.

Adam's two moments are twice the model's size, so a resumable checkpoint is ~3x the weights (22 MB for
``tcm-hyperprior``). The model, step counters, history and config are kept exactly; only the optimizer state
loses precision (bfloat16 keeps float32's exponent range, so ``exp_avg_sq`` neither underflows nor overflows,
at ~0.4 % relative rounding). ``Trainer.load_checkpoint`` needs no change: ``Optimizer.load_state_dict`` casts
floating state back to each parameter's dtype. A resume from it therefore continues the run, not bit-exactly
the one an uncompacted checkpoint would give. Usage::

    python -m nicbeam.training.compact /work/train-runs/tcm-q10/checkpoint.pt checkpoints/tcm-q10/checkpoint.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

OPTIMIZER_KEYS = ("optimizer", "aux_optimizer")


def compact_state(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``Trainer.state()`` dict whose optimizer moments are bfloat16 (``step`` counters untouched)."""
    out = dict(state)
    for key in OPTIMIZER_KEYS:
        opt = state.get(key)
        if not opt:
            continue
        out[key] = {**opt, "state": {
            index: {name: (value.to(torch.bfloat16) if name != "step" and value.is_floating_point() else value)
                    for name, value in param_state.items()}
            for index, param_state in opt["state"].items()}}
    return out


def compact_checkpoint(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write the compacted copy of checkpoint ``source`` to ``target`` (atomically); returns ``target``."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(compact_state(state), tmp)
    os.replace(tmp, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    target = compact_checkpoint(args.source, args.target)
    print(f"{args.source} ({Path(args.source).stat().st_size / 1e6:.1f} MB) -> {target} "
          f"({target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
