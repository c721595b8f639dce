"""What encoder-side latent refinement (``refine=N``) buys, and what it costs, against ``refine=0`` in the same run.

    PYTHONPATH=. python benchmarks/bench_refine.py [--codec mbt2018-mean] [--images kodim05,...] [--qualities 2,6,10] \
        [--steps 0,10,25,50] [--folder DIR] [--learning-rates 0.01,0.02] [--lr-exponent 0]

Each Kodak image is encoded through the real codec (bytes from the real stream, PSNR of the decoded 8-bit image,
one CPU thread) at every quality and number of refinement steps. Printed per codec, quality and step count:
mean bpp, mean PSNR, the change of the training objective ``bpp + lambda * 255^2 * MSE`` against ``refine=0``
(what refinement minimises; negative = better) and the encode time as a multiple of ``refine=0``'s.
Kodak is only evaluated here, never trained on; tune refinement's settings on other images (``--folder
../shared/data/train --images bsds500_val_101085.jpg,...``). ``--learning-rates`` compares Adam step sizes
(:data:`nicbeam.codecs.learned.refine.LEARNING_RATE`, the codec's own by default: the step size up to quality
6, see :func:`nicbeam.codecs.learned.refine.step_sizes`) at every step count; the ``step`` column is the step
size each quality used; ``--lr-exponent 0`` gives every quality the base step size (the rule before 2026-12-07).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", action="append", default=None, help="learned codec name (repeatable)")
    ap.add_argument("--images", default="kodim05,kodim15,kodim19", help="comma-separated Kodak names")
    ap.add_argument("--qualities", default="2,6,10")
    ap.add_argument("--steps", default="0,10,25,50")
    ap.add_argument("--folder", "--kodak", type=Path, default=KODAK, help="where the images are (default: Kodak)")
    ap.add_argument("--learning-rates", default=None,
                    help="comma-separated base Adam step sizes to compare (refine.LEARNING_RATE)")
    ap.add_argument("--lr-exponent", type=float, default=None,
                    help="growth of the step size above quality 6 (refine.LR_EXPONENT; 0 = constant)")
    args = ap.parse_args()

    from PIL import Image

    import nicbeam.codecs.learned.refine as refine
    from nicbeam.codecs import container, decode
    from nicbeam.codecs.registry import get_codec
    from nicbeam.metrics import psnr

    torch.set_num_threads(1)
    names = args.images.split(",")
    images = [np.array(Image.open(args.folder / (n if Path(n).suffix else f"{n}.png")).convert("RGB")) for n in names]
    if args.lr_exponent is not None:
        refine.LR_EXPONENT = args.lr_exponent
    rates = [float(r) for r in args.learning_rates.split(",")] if args.learning_rates else [refine.LEARNING_RATE]
    steps = [int(s) for s in args.steps.split(",")]
    if steps[0] != 0:
        steps = [0] + steps
    print(f"# images {','.join(names)}; 1 thread; objective = bpp + lambda*255^2*MSE (per image, mean)")
    print(f"{'codec':<22} {'quality':>7} {'steps':>5} {'step':>6} {'bpp':>7} {'PSNR':>7} {'objective':>10} "
          f"{'encode time':>11}")
    for name in args.codec or ["mbt2018-mean", "bmshj2017-factorized"]:
        for quality in (int(q) for q in args.qualities.split(",")):
            base_cost = base_time = None
            for n, lr in [(0, rates[0])] + [(n, lr) for n in steps if n for lr in rates]:
                refine.LEARNING_RATE = lr  # read by refine_latents at each call
                codec = get_codec(name, quality=quality, refine=n, device="cpu")
                lmbda = codec.model.lambdas[quality - 1]
                bpps, psnrs, costs, seconds = [], [], [], 0.0
                for image in images:
                    start = time.perf_counter()
                    stream = codec.encode(image)
                    seconds += time.perf_counter() - start
                    decoded = decode(stream)
                    bpp = len(container.unpack(stream)[1]) * 8 / (image.shape[0] * image.shape[1])
                    mse = float((((decoded.astype(np.float64) - image) / 255.0) ** 2).mean())
                    bpps.append(bpp)
                    psnrs.append(psnr(image, decoded))
                    costs.append(bpp + lmbda * 255.0**2 * mse)
                cost = float(np.mean(costs))
                if n == 0:
                    base_cost, base_time = cost, seconds
                step = f"{float(refine.step_sizes(torch.tensor([lmbda]))):.3f}" if n else "-"
                print(f"{name:<22} {quality:>7} {n:>5} {step:>6} {np.mean(bpps):>7.4f} "
                      f"{np.mean(psnrs):>7.2f} {100 * (cost / base_cost - 1):>+9.2f}% {seconds / base_time:>10.1f}x",
                      flush=True)


if __name__ == "__main__":
    main()
