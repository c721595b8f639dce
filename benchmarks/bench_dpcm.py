"""Lossless and near-lossless bpp of mlp-dpcm against PNG, WebP lossless, JPEG XL lossless and JPEG-LS on Kodak,
all measured in the same run, plus mlp-dpcm's encode / decode speed.

    .venv/bin/python benchmarks/bench_dpcm.py [--images ../shared/data/kodak] [--count 24] [--deltas 1,2,4]
        [--weights mlp-dpcm] [--tile 64] [--out benchmarks/results/bench_dpcm.json]

Every stream is decoded and checked: lossless ones byte-exact, near-lossless ones within delta on every
sub-pixel (the script stops on a failure). bpp counts whole nicbeam streams (container header included) for
every codec. Speed: wall seconds and the process's CPU seconds (the machine is shared: CPU seconds are the
steadier figure), one process, BLAS on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from nicbeam.codecs import get_codec  # noqa: E402

LOSSLESS = [
    ("png", {"level": 9}),
    ("webp", {"lossless": True, "method": 6, "quality": 100}),
    ("jpegxl", {"lossless": True, "effort": 7}),
    ("jpegls", {}),
    ("jpegls", {"color_transform": "none", "interleave": "sample"}),  # imagecodecs' defaults: the 13.07 figure
]


def label(name: str, params: dict) -> str:
    return name + ("(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")


def run(codec, image: np.ndarray, bound: int) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    stream = codec.encode(image)
    t1, c1 = time.perf_counter(), time.process_time()
    out = codec.decode(stream)
    t2, c2 = time.perf_counter(), time.process_time()
    err = int(np.abs(out.astype(np.int16) - image.astype(np.int16)).max())
    if err > bound:
        raise SystemExit(f"{codec!r}: max error {err} > {bound}")
    mse = float(np.mean((out.astype(np.float64) - image) ** 2))
    return {"bits": 8 * len(stream), "enc_wall": t1 - t0, "dec_wall": t2 - t1, "enc_cpu": c1 - c0,
            "dec_cpu": c2 - c1, "max_err": err, "mse": mse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--deltas", default="1,2,4")
    parser.add_argument("--weights", default="mlp-dpcm")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="write the per-image figures and means as JSON")
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.png"))[: args.count]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    deltas = [int(d) for d in args.deltas.split(",") if d]
    settings = [(label("mlp-dpcm", {"tile": args.tile}), get_codec("mlp-dpcm", weights=args.weights, tile=args.tile), 0)]
    settings += [(label(n, p), get_codec(n, **p), 0) for n, p in LOSSLESS]
    for d in deltas:
        settings.append((label("mlp-dpcm", {"delta": d, "tile": args.tile}),
                         get_codec("mlp-dpcm", weights=args.weights, tile=args.tile, delta=d), d))
        settings.append((label("jpegls", {"near": d}), get_codec("jpegls", near=d), d))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in settings}
    for path, image in zip(paths, images):
        for name, codec, bound in settings:
            r = run(codec, image, bound)
            r["image"] = path.name
            results[name].append(r)
        line = "  ".join(f"{n.split('(')[0]}{'' if b == 0 else f'@{b}'} {results[n][-1]['bits'] / image[..., 0].size:.3f}"
                         for n, _, b in settings[:1] + settings[len(LOSSLESS) + 1 :])
        print(f"{path.name}: {line}", flush=True)
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    summary = {}
    print(f"\n{len(images)} images, {pixels / 1e6:.2f} MP; bpp = mean over images of bits / pixels")
    print(f"{'setting':52s} {'bpp':>7s} {'max err':>7s} {'PSNR':>7s} {'enc MP/s':>9s} {'dec MP/s':>9s} {'dec MP/s CPU':>12s}")
    for name, _, bound in settings:
        rs = results[name]
        bpp = float(np.mean([r["bits"] / (im.shape[0] * im.shape[1]) for r, im in zip(rs, images)]))
        mse = float(np.mean([r["mse"] for r in rs]))
        psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
        enc = pixels / 1e6 / sum(r["enc_wall"] for r in rs)
        dec = pixels / 1e6 / sum(r["dec_wall"] for r in rs)
        dec_cpu = pixels / 1e6 / sum(r["dec_cpu"] for r in rs)
        summary[name] = {"bpp": round(bpp, 4), "max_err": max(r["max_err"] for r in rs), "psnr": round(psnr, 3),
                         "enc_mp_s": round(enc, 4), "dec_mp_s": round(dec, 4), "dec_mp_s_cpu": round(dec_cpu, 4),
                         "enc_mp_s_cpu": round(pixels / 1e6 / sum(r["enc_cpu"] for r in rs), 4)}
        print(f"{name:52s} {bpp:7.3f} {summary[name]['max_err']:7d} {psnr:7.2f} {enc:9.3f} {dec:9.3f} {dec_cpu:12.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"images": [p.name for p in paths], "weights": args.weights,
                                        "summary": summary, "per_image": results}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
