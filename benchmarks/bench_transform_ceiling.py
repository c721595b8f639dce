"""Transform ceiling of a learned codec: the PSNR its analysis/synthesis pair reaches with no quantisation.

    PYTHONPATH=. python benchmarks/bench_transform_ceiling.py [--codec mbt2018-mean [--weights W]] [--images 8] [--qualities 6,10]

For each quality, the Kodak images go through ``synthesis(analysis(x))`` once with the latents left
unquantised and once rounded (no entropy coding, no hyperprior mean shift), output rounded to 8 bits. If the
unquantised PSNR is barely above the coded PSNR at the top qualities, more rate cannot buy quality: the
transforms are the limit (capacity or training), not the entropy model. Kodak is only evaluated here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def to_uint8(x) -> np.ndarray:
    """A 1x3xHxW tensor in [0, 1] as an HxWx3 8-bit image (rounded), the form the project's metrics take."""
    return (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", action="append", default=None, help="learned codec name (repeatable)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--qualities", default="6,10")
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--weights", type=Path, default=None,
                    help="weights file instead of the shipped ones (one --codec), e.g. an exported training snapshot")
    args = ap.parse_args()
    if args.weights and len(args.codec or []) != 1:
        raise SystemExit("--weights needs exactly one --codec")

    from PIL import Image

    from nicbeam.codecs.registry import get_codec
    from nicbeam.metrics import psnr

    torch.set_num_threads(1)
    paths = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float() / 255 for p in paths]
    print(f"# {len(images)} Kodak images, 1 thread; PSNR (RGB, mean per image) of synthesis(analysis(x))")
    print(f"{'codec':<22} {'quality':>7} {'unquantised':>12} {'rounded':>9}")
    for name in args.codec or ["mbt2018-mean", "bmshj2017-factorized"]:
        extra = {"weights": args.weights} if args.weights else {}
        model = get_codec(name, device="cpu", **extra).model
        for quality in (int(q) for q in args.qualities.split(",")):
            q = torch.tensor([quality - 1])
            clean, rounded = [], []
            with torch.no_grad():
                for x in images:
                    y = model.analysis(x, q)
                    original = to_uint8(x)
                    clean.append(psnr(original, to_uint8(model.synthesis(y, q))))
                    rounded.append(psnr(original, to_uint8(model.synthesis(torch.round(y), q))))
            print(f"{name:<22} {quality:>7} {np.mean(clean):>9.2f} dB {np.mean(rounded):>6.2f} dB", flush=True)


if __name__ == "__main__":
    main()
