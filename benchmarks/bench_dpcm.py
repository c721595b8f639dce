"""Lossless and near-lossless bpp of mlp-dpcm against PNG, WebP lossless, JPEG XL lossless and JPEG-LS on Kodak,
all measured in the same run, plus mlp-dpcm's encode / decode speed.

    .venv/bin/python benchmarks/bench_dpcm.py [--images ../shared/data/kodak] [--count 24] [--deltas 1,2,4]
        [--weights mlp-dpcm] [--tile 128] [--decode-threads 1,2] [--out benchmarks/results/bench_dpcm.json]
    # the same in shards (separate processes), then one summary over all of them:
    .venv/bin/python benchmarks/bench_dpcm.py --skip 0 --count 8 --out /tmp/s0.json   # ... --skip 8, --skip 16
    .venv/bin/python benchmarks/bench_dpcm.py --merge /tmp/s0.json /tmp/s1.json /tmp/s2.json --out results.json

Every stream is decoded and checked: lossless ones byte-exact, near-lossless ones within delta on every
sub-pixel (the script stops on a failure). bpp counts whole nicbeam streams (container header included) for
every codec. Speed: wall seconds and the process's CPU seconds (the machine is shared: CPU seconds are the
steadier figure), one process, BLAS on one thread; the table's mlp-dpcm rows run on one thread. The lossless
mlp-dpcm streams are decoded again with each of ``--decode-threads`` worker threads over their slices (wall
seconds: the figure to read on an otherwise idle machine).
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
    ("webp", {"lossless": True, "method": 6}),
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


def summarize(settings: list[tuple[str, int]], results: dict[str, list[dict]], pixels_per_image: list[int]) -> dict:
    pixels = sum(pixels_per_image)
    summary = {}
    print(f"\n{len(pixels_per_image)} images, {pixels / 1e6:.2f} MP; bpp = mean over images of bits / pixels")
    print(f"{'setting':48s} {'bpp':>7s} {'max err':>7s} {'PSNR':>7s} {'enc MP/s':>9s} {'dec MP/s':>9s} "
          f"{'enc MP/s CPU':>12s} {'dec MP/s CPU':>12s}")
    for name, bound in settings:
        rs = results[name]
        bpp = float(np.mean([r["bits"] / n for r, n in zip(rs, pixels_per_image)]))
        mse = float(np.mean([r["mse"] for r in rs]))
        psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
        speed = {k: pixels / 1e6 / sum(r[k] for r in rs) for k in ("enc_wall", "dec_wall", "enc_cpu", "dec_cpu")}
        summary[name] = {"bpp": round(bpp, 4), "max_err": max(r["max_err"] for r in rs), "bound": bound,
                         "psnr": round(psnr, 3) if mse else None,
                         **{f"{k}_mp_s": round(v, 4) for k, v in speed.items()}}
        print(f"{name:48s} {bpp:7.3f} {summary[name]['max_err']:7d} {psnr:7.2f} {speed['enc_wall']:9.3f} "
              f"{speed['dec_wall']:9.3f} {speed['enc_cpu']:12.3f} {speed['dec_cpu']:12.3f}")
    for key in sorted({k for rs in results.values() for r in rs for k in r if k.startswith("dec_wall_t")}):
        threads = key.removeprefix("dec_wall_t")
        for name, rs in results.items():
            if all(key in r for r in rs):
                wall = pixels / 1e6 / sum(r[key] for r in rs)
                cpu = pixels / 1e6 / sum(r[f"dec_cpu_t{threads}"] for r in rs)
                summary[name][f"dec_wall_t{threads}_mp_s"] = round(wall, 4)
                print(f"{name}: decode on {threads} thread(s) {wall:.3f} MP/s wall ({cpu:.3f} MP/s of CPU time)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--skip", type=int, default=0, help="leave out the first SKIP images (shards)")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--deltas", default="1,2,4")
    parser.add_argument("--weights", default="mlp-dpcm")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--decode-threads", default="1,2", help="decode the lossless mlp-dpcm streams again on these thread counts")
    parser.add_argument("--out", type=Path, default=None, help="write the per-image figures and means as JSON")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="summarise these shard outputs")
    args = parser.parse_args()
    if args.merge:
        shards = [json.loads(p.read_text()) for p in args.merge]
        settings = [(name, v["bound"]) for name, v in shards[0]["summary"].items()]
        results = {name: [r for sh in shards for r in sh["per_image"][name]] for name, _ in settings}
        pixels = [p for sh in shards for p in sh["pixels"]]
        images = [i for sh in shards for i in sh["images"]]
        weights = shards[0]["weights"]
    else:
        paths = sorted(args.images.glob("*.png"))[args.skip : args.skip + args.count]
        images = [p.name for p in paths]
        weights = args.weights
        deltas = [int(d) for d in args.deltas.split(",") if d]
        main_label = label("mlp-dpcm", {"tile": args.tile})
        codecs = [(main_label, get_codec("mlp-dpcm", weights=args.weights, tile=args.tile, threads=1), 0)]
        codecs += [(label(n, p), get_codec(n, **p), 0) for n, p in LOSSLESS]
        for d in deltas:
            codecs.append((label("mlp-dpcm", {"delta": d, "tile": args.tile}),
                           get_codec("mlp-dpcm", weights=args.weights, tile=args.tile, delta=d, threads=1), d))
            codecs.append((label("jpegls", {"near": d}), get_codec("jpegls", near=d), d))
        warm = np.random.default_rng(0).integers(0, 256, (40, 300, 3), dtype=np.uint8)  # numba load / compile
        for name, codec, bound in codecs:
            if name.startswith("mlp-dpcm"):
                run(codec, warm, bound)
        settings = [(name, bound) for name, _, bound in codecs]
        results = {name: [] for name, _ in settings}
        pixels = []
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            pixels.append(image.shape[0] * image.shape[1])
            for name, codec, bound in codecs:
                r = run(codec, image, bound)
                r["image"] = path.name
                results[name].append(r)
            stream = codecs[0][1].encode(image)
            for threads in [int(t) for t in args.decode_threads.split(",") if t]:
                decoder = get_codec("mlp-dpcm", weights=args.weights, threads=threads)
                t0, c0 = time.perf_counter(), time.process_time()
                if not np.array_equal(decoder.decode(stream), image):
                    raise SystemExit(f"mlp-dpcm on {threads} threads: not lossless")
                results[main_label][-1].update({f"dec_wall_t{threads}": time.perf_counter() - t0,
                                                f"dec_cpu_t{threads}": time.process_time() - c0})
            print(f"{path.name}: " + "  ".join(f"{n} {results[n][-1]['bits'] / pixels[-1]:.3f}" for n, _ in settings),
                  flush=True)
    summary = summarize(settings, results, pixels)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"images": images, "pixels": pixels, "weights": weights, "summary": summary,
                                        "per_image": results}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
