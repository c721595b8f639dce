"""Per-iteration diagnosis of an RNN training checkpoint (``toderici-rnn``): on 16 validation crops (64x64, seeded,
BSDS500 val of the training corpus), for each iteration the L1 error of the reconstruction, the residual-scaling
gain range (where the framing has one), the binarizer's mean |tanh| and saturated share (|tanh| > 0.99) and the mean
bit. A healthy run's L1 falls with every iteration; a collapsed one stays near the L1 of an all-grey image (~0.2).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rnn_diagnose.py /work/train-runs/NAME/checkpoint.pt [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def diagnose(checkpoint: Path, crops: torch.Tensor) -> list[dict]:
    """One dict per iteration (see the module docstring) for the model of ``checkpoint`` on ``crops`` in [0, 1]."""
    from nicbeam.training.registry import build_model

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = state["train_config"]
    config = json.loads(config) if isinstance(config, str) else config
    model = build_model(state["family"], **config["model_config"])
    model.load_state_dict(state["model"])
    model.eval()
    soft = []  # the binarizer's tanh of every iteration, from its input (model.run gives only the signs)
    hook = model.encoder.binarizer.register_forward_hook(
        lambda module, inputs, output: soft.append(torch.tanh(module.proj(inputs[0]))))
    with torch.no_grad():
        codes, recons = model.run(crops, model.iterations)
    hook.remove()
    gain = getattr(model.framing, "gain", None)
    xc = crops - 0.5
    rows = []
    with torch.no_grad():
        for t, (code, recon, t_soft) in enumerate(zip(codes, recons, soft)):
            g = gain(recons[t - 1] if t else torch.zeros_like(xc)) if gain else None  # what the framing used
            rows.append({"iteration": t + 1, "l1": round(float((recon - xc).abs().mean()), 4),
                         "gain": None if g is None else [round(float(g.min()), 2), round(float(g.max()), 2)],
                         "mean_abs_tanh": round(float(t_soft.abs().mean()), 3),
                         "saturated": round(float((t_soft.abs() > 0.99).float().mean()), 3),
                         "mean_bit": round(float(code.mean()), 3)})
    return rows


def main() -> None:
    from nicbeam.training.data import ImageCache, list_images

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=TRAIN)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = ImageCache(list_images(args.data, ["bsds500_val_*"])[:8])
    crops = torch.from_numpy(cache.sample(np.random.default_rng(0), 16, 64)).permute(0, 3, 1, 2).float() / 255
    for path in args.checkpoints:
        state = torch.load(path, map_location="cpu", weights_only=True)
        print(f"{path} (step {state['step']})")
        for row in diagnose(path, crops):
            if row["iteration"] in (1, 2, 4, 8, 16):
                print("  " + json.dumps(row))


if __name__ == "__main__":
    main()
