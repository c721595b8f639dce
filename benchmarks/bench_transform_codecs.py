"""Encode/decode speed of the transform codecs (dct, dwt) against jpeg and jpeg2000, in the same run.

    .venv/bin/python benchmarks/bench_transform_codecs.py [--images ../shared/data/kodak] [--count 4] [--repeat 1]

Prints megapixels per second (one process, one thread) and bits per pixel / PSNR of each setting on the
first ``count`` images of the folder (the repository's samples/kodak when the folder is missing).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from nicbeam.codecs import get_codec  # noqa: E402
from nicbeam.metrics.psnr import psnr  # noqa: E402

SETTINGS = [
    ("jpeg", {"quality": 75, "subsampling": "420"}),
    ("dct", {"quality": 75, "subsampling": "420"}),
    ("jpeg", {"quality": 75, "subsampling": "444"}),
    ("dct", {"quality": 75, "subsampling": "444"}),
    ("jpeg2000", {"psnr": 34.0}),
    ("dwt", {"quality": 45}),
]


def _images(folder: Path, count: int) -> list[np.ndarray]:
    if not folder.is_dir():
        folder = Path(__file__).resolve().parents[1] / "samples" / "kodak"
    paths = sorted(folder.glob("*.png"))[:count]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    images = _images(args.images, args.count)
    megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    print(f"{len(images)} images, {megapixels:.2f} MP, repeat {args.repeat}")
    print(f"{'setting':38s} {'bpp':>6s} {'PSNR':>6s} {'enc MP/s':>9s} {'dec MP/s':>9s}")
    for name, params in SETTINGS:
        codec = get_codec(name, **params)
        enc_s = dec_s = 0.0
        bits = 0
        quality = []
        for _ in range(args.repeat):
            for image in images:
                t0 = time.perf_counter()
                stream = codec.encode(image)
                t1 = time.perf_counter()
                decoded = codec.decode(stream)
                t2 = time.perf_counter()
                enc_s += t1 - t0
                dec_s += t2 - t1
                bits += 8 * len(stream)
                quality.append(psnr(image, decoded))
        total = megapixels * args.repeat
        label = name + ":" + ",".join(f"{k}={v}" for k, v in params.items())
        bpp = bits / total / 1e6
        print(f"{label:38s} {bpp:6.3f} {np.mean(quality):6.2f} {total / enc_s:9.3f} {total / dec_s:9.3f}", flush=True)


if __name__ == "__main__":
    main()
