"""Per-iteration PSNR of an RNN training checkpoint (``toderici-rnn``) on the same pixels cut into tiles of different
sizes: each validation image's centre 256x256 square is run whole, as four 128x128 tiles, 16 of 64x64 and 64 of 32x32,
and the PSNR over the whole square is reported for iterations 1, 2, 4, 8, 12 and 16 (float model, no entropy coding).

Why: the residual-GRU one-shot run got worse at late iterations on 256-pixel validation crops as it trained while
its 32x32 training crops kept improving. If the network fails only on tiles larger than it was trained on, PSNR
falls with the tile size at late iterations; tiles of 32 show what the training loss sees.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rnn_crop_profile.py RUN/snapshot-step2500.pt RUN/checkpoint.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
SQUARE = 256
REPORTED = (1, 2, 4, 8, 12, 16)


def load_model(checkpoint: Path) -> tuple[torch.nn.Module, int]:
    """The model of a training checkpoint (or snapshot) and its step."""
    from nicbeam.training.registry import build_model

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = state["train_config"]
    config = json.loads(config) if isinstance(config, str) else config
    model = build_model(state["family"], **config["model_config"])
    model.load_state_dict(state["model"])
    return model.eval(), int(state["step"])


def tile(squares: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, S, S) -> (N * (S/size)^2, 3, size, size), row-major per image."""
    n, c, s, _ = squares.shape
    k = s // size
    return squares.reshape(n, c, k, size, k, size).permute(0, 2, 4, 1, 3, 5).reshape(n * k * k, c, size, size)


def untile(tiles: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """The inverse of :func:`tile`."""
    k = SQUARE // size
    c = tiles.shape[1]
    return tiles.reshape(n, k, k, c, size, size).permute(0, 3, 1, 4, 2, 5).reshape(n, c, SQUARE, SQUARE)


@torch.no_grad()
def profile(model: torch.nn.Module, squares: torch.Tensor, size: int, batch: int = 64) -> dict[int, float]:
    """Iteration -> PSNR (dB, on 8-bit-rounded reconstructions) over ``squares`` run as tiles of ``size``."""
    tiles = tile(squares, size)
    recons: list[list[torch.Tensor]] = []
    for start in range(0, len(tiles), batch):
        _, per_iteration = model.run(tiles[start : start + batch], model.iterations)
        recons.append(per_iteration)
    out = {}
    for it in REPORTED:
        if it > model.iterations:
            continue
        joined = torch.cat([chunk[it - 1] for chunk in recons]) + 0.5
        image = (untile(joined, len(squares), size).clamp(0, 1) * 255).round()
        mse = float(((image - squares * 255) ** 2).mean())
        out[it] = round(10 * np.log10(255**2 / mse), 2)
    return out


def main() -> None:
    from nicbeam.training.data import list_images, load_rgb

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=TRAIN)
    ap.add_argument("--images", type=int, default=8, help="validation images (bsds500_val_*, sorted)")
    ap.add_argument("--sizes", default="32,64,128,256")
    args = ap.parse_args()
    torch.set_num_threads(1)
    squares = []
    for path in list_images(args.data, ["bsds500_val_*"])[: args.images]:
        rgb = load_rgb(path)
        top, left = (rgb.shape[0] - SQUARE) // 2, (rgb.shape[1] - SQUARE) // 2
        squares.append(rgb[top : top + SQUARE, left : left + SQUARE])
    x = torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).float() / 255
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{len(squares)} centre {SQUARE}x{SQUARE} squares of {args.data} (bsds500_val_*); PSNR (dB) per iteration")
    print("| checkpoint | step | tile | " + " | ".join(f"it {i}" for i in REPORTED) + " |")
    print("|---|---|---|" + "---|" * len(REPORTED))
    for path in args.checkpoints:
        model, step = load_model(path)
        for size in sizes:
            row = profile(model, x, size)
            print(f"| {path.parent.name}/{path.name} | {step} | {size} | "
                  + " | ".join(str(row.get(i, "")) for i in REPORTED) + " |", flush=True)


if __name__ == "__main__":
    main()
