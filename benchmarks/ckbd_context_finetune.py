"""What the checkerboard context saves on the shipped transforms: ``ckbd-hyperprior`` (N=64, M=128) warm-started
from the ``mbt2018-mean`` training checkpoint, then *only* its context and entropy-parameter networks trained for
a few hundred steps on the rate of the latents (transforms, hyperprior and gains frozen, so y and z are those of
mbt2018-mean), against ``mbt2018-mean`` from the same checkpoint; both exported through the real export path and
run as codecs (real bytes) on Kodak images. A short CPU experiment, not a trained model.

Training: batch 8 of 128x128 random crops of ``../shared/data/train`` (never Kodak; BSDS500 val excluded), a
random quality per crop, loss = bits of y (uniform noise) per pixel, Adam. 1 thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ckbd_context_finetune.py [--steps 600] [--images 24] [--qualities 2,6,10]

``--residual-correlation``: instead, how predictable mbt2018-mean's latents still are from their neighbours: the
correlation between each latent's residual ``(y - mean) / scale`` under the hyperprior and the mean of its 4
neighbours' (what a checkerboard context sees), and the same without dividing by the scale, on 8 training crops.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkerboard import CHECKPOINT, ROOT, TRAIN, calibration, warm_started  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"


def finetune_context(model, steps: int, lr: float, log_every: int = 100) -> None:
    """Train ``model.context`` and ``model.entropy_parameters`` on the rate of y (everything else frozen)."""
    from nicbeam.nn.entropy_models import gaussian_likelihood
    from nicbeam.training.data import ImageCache, list_images
    from nicbeam.training.trainer import to_tensor

    data = ImageCache(list_images(TRAIN, ["*"], exclude=["bsds500_val_*"]))
    model.requires_grad_(False)
    trained = [*model.context.parameters(), *model.entropy_parameters.parameters()]
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=lr)
    rng = np.random.default_rng(0)
    model.eval()
    start, window = time.perf_counter(), []
    for step in range(1, steps + 1):
        x = to_tensor(data.sample(rng, 8, 128))
        q = torch.from_numpy(rng.integers(0, model.num_qualities, 8))
        with torch.no_grad():
            y = model.analysis(x, q)
            hyper = model.h_s(torch.round(model.h_a(y)))
        means, log_scales, _ = model.checkerboard_parameters(y, hyper)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bpp = -torch.log2(gaussian_likelihood(y_noisy, torch.exp(log_scales), means)).sum() / (8 * 128 * 128)
        opt.zero_grad()
        bpp.backward()
        opt.step()
        window.append(float(bpp.detach()))
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps}: y bpp {np.mean(window):.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
            window = []


def residual_correlation(config: dict, qualities: list[int]) -> None:
    """Print the neighbour correlation of mbt2018-mean's hyperprior residuals (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = warm_started("mbt2018-mean", config, Path(tmp))
    x = calibration(8, 256)

    def corr(a: torch.Tensor) -> float:
        centre = a[:, :, 1:-1, 1:-1]
        around = (a[:, :, 1:-1, :-2] + a[:, :, 1:-1, 2:] + a[:, :, :-2, 1:-1] + a[:, :, 2:, 1:-1]) / 4
        return float(((centre - centre.mean()) * (around - around.mean())).mean() / (centre.std() * around.std()))

    for q in qualities:
        with torch.no_grad():
            y = model.analysis(x, torch.full((8,), q - 1))
            means, log_scales = model.h_s(torch.round(model.h_a(y))).chunk(2, dim=1)
        residual = y - means
        normalised = residual / torch.exp(log_scales).clamp(min=0.11)
        print(f"quality {q}: correlation with the mean of 4 neighbours: normalised residual {corr(normalised):.3f}, "
              f"residual {corr(residual):.3f}; non-zero symbols {float((torch.round(residual) != 0).float().mean()):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--qualities", default="2,6,10")
    parser.add_argument("--residual-correlation", action="store_true", help="only the neighbour correlation (docstring)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.residual_correlation:
        config = json.loads(torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["train_config"])["model_config"]
        residual_correlation(config, [int(q) for q in args.qualities.split(",")])
        return 0
    from PIL import Image

    from nicbeam.codecs.learned.checkerboard import CheckerboardHyperpriorCodec
    from nicbeam.codecs.learned.hyperprior import MeanScaleHyperpriorCodec
    from nicbeam.training.export import write_weights

    qualities = [int(q) for q in args.qualities.split(",")]
    images = sorted(KODAK.glob("kodim*.png"))[: args.images]
    calib = calibration()
    with tempfile.TemporaryDirectory() as tmp:
        config = json.loads(torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["train_config"])["model_config"]
        mbt, _ = warm_started("mbt2018-mean", config, Path(tmp) / "mbt")
        ckbd, copied = warm_started("ckbd-hyperprior", config, Path(tmp) / "ckbd")
        print(f"warm start from {CHECKPOINT.relative_to(ROOT)}: {len(copied)} tensors copied; lambdas {mbt.lambdas}")
        finetune_context(ckbd, args.steps, args.lr)
        codecs = {}
        for name, model, cls in (("mbt2018-mean", mbt, MeanScaleHyperpriorCodec), ("ckbd-hyperprior", ckbd, CheckerboardHyperpriorCodec)):
            path = Path(tmp) / f"{name}.safetensors"
            write_weights(model, path, calib)
            codecs[name] = (cls, path)
        print(f"Kodak, {len(images)} images, real streams (payload + header), every stream decoded; PSNR on RGB")
        print("| quality | mbt2018-mean bpp | PSNR | ckbd-hyperprior bpp | PSNR | bpp change |")
        print("|---|---|---|---|---|---|")
        for q in qualities:
            row = {}
            for name, (cls, path) in codecs.items():
                codec = cls(weights=path, device="cpu", quality=q)
                bits, psnrs = 0.0, []
                for p in images:
                    arr = np.asarray(Image.open(p).convert("RGB"))
                    stream = codec.encode(arr)
                    decoded = codec.decode(stream)
                    bits += len(stream) * 8 / (arr.shape[0] * arr.shape[1])
                    psnrs.append(10 * np.log10(255**2 / ((decoded.astype(np.float64) - arr) ** 2).mean()))
                row[name] = (bits / len(images), float(np.mean(psnrs)))
            a, b = row["mbt2018-mean"], row["ckbd-hyperprior"]
            print(f"| {q} | {a[0]:.4f} | {a[1]:.2f} | {b[0]:.4f} | {b[1]:.2f} | {100 * (b[0] / a[0] - 1):+.1f} % |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
