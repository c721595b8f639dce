"""Shrink a training checkpoint for the repository: the optimizers' moment tensors stored in bfloat16.

Adam's two moments are twice the model's size, so a resumable checkpoint is ~3x the weights (22 MB for
``tcm-hyperprior``). The model, step counters, history and config are kept exactly; only the optimizer state
loses precision (bfloat16 keeps float32's exponent range, so ``exp_avg_sq`` neither underflows nor overflows,
at ~0.4 % relative rounding). ``Trainer.load_checkpoint`` needs no change: ``Optimizer.load_state_dict`` casts
floating state back to each parameter's dtype. A resume from it therefore continues the run, not bit-exactly
the one an uncompacted checkpoint would give. Usage::

    python -m nicbeam.training.compact /work/train-runs/tcm-q10/checkpoint.pt checkpoints/tcm-q10/checkpoint.pt

``--split-optimizer`` writes the optimizer state to a sibling file (``checkpoint.optimizer.pt``) named in the
checkpoint, for models whose weights and moments together pass the repository's per-file size limit
(``ckbd-hyperprior`` at M=192: 19.3 MB of weights, 19.3 MB of bfloat16 moments); ``Trainer.load_checkpoint``
reads it back and checks that both files are from the same step.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

OPTIMIZER_KEYS = ("optimizer", "aux_optimizer")
#: key of a split checkpoint naming the sibling file (same folder) that holds its optimizer state
OPTIMIZER_FILE_KEY = "optimizer_file"


def optimizer_path(checkpoint: str | os.PathLike) -> Path:
    """Where ``--split-optimizer`` puts the optimizer state of ``checkpoint``: ``NAME.optimizer.pt`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.optimizer{checkpoint.suffix}")


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


def _save_atomically(obj: dict[str, Any], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, target)


def compact_checkpoint(source: str | os.PathLike, target: str | os.PathLike, split_optimizer: bool = False) -> Path:
    """Write the compacted copy of checkpoint ``source`` to ``target`` (atomically); returns ``target``.
    ``split_optimizer``: the optimizer state goes to :func:`optimizer_path` of ``target`` instead, with the
    step it belongs to (the optimizer file is written first, so a checkpoint never names a missing file)."""
    state = compact_state(torch.load(source, map_location="cpu", weights_only=True))
    target = Path(target)
    if split_optimizer:
        if OPTIMIZER_FILE_KEY in state:
            raise ValueError(f"{source} is already split (its optimizer state is in {state[OPTIMIZER_FILE_KEY]})")
        side = optimizer_path(target)
        _save_atomically({"step": state["step"], **{key: state.pop(key) for key in OPTIMIZER_KEYS}}, side)
        state[OPTIMIZER_FILE_KEY] = side.name
    _save_atomically(state, target)
    return target


def load_optimizer_file(checkpoint: str | os.PathLike, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (loaded from ``checkpoint``) with the optimizer state of a split checkpoint put back; an
    unsplit state is returned as it is. A missing sibling file or one from another step is a clear error."""
    name = state.get(OPTIMIZER_FILE_KEY)
    if name is None:
        return state
    side = Path(checkpoint).with_name(name)
    if not side.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} keeps its optimizer state in {side}, which is missing")
    extra = torch.load(side, map_location="cpu", weights_only=True)
    if int(extra["step"]) != int(state["step"]):
        raise ValueError(f"{side} holds the optimizer state of step {int(extra['step'])}, "
                         f"but {checkpoint} is at step {int(state['step'])}")
    return {**state, **{key: extra[key] for key in OPTIMIZER_KEYS}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--split-optimizer", action="store_true",
                        help="write the optimizer state to TARGET's sibling NAME.optimizer.pt (per-file size limits)")
    args = parser.parse_args(argv)
    target = compact_checkpoint(args.source, args.target, split_optimizer=args.split_optimizer)
    written = [target] + ([optimizer_path(target)] if args.split_optimizer else [])
    print(f"{args.source} ({Path(args.source).stat().st_size / 1e6:.1f} MB) -> "
          + ", ".join(f"{path} ({path.stat().st_size / 1e6:.1f} MB)" for path in written))


if __name__ == "__main__":
    main()
