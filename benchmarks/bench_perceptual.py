"""Cost of the perceptual metrics (LPIPS, NIMA) per image on the CPU, and how much they slow ``nicbeam evaluate``.

    PYTHONPATH=. python benchmarks/bench_perceptual.py [--images 4] [--threads 1] [--nets alex,vgg] [--repeat 3]

The weights are SEEDED RANDOM (``random_lpips_state`` / ``random_nima_state``, saved to a temporary folder):
the networks have the shapes of the real ones, so the time is the real cost, but the values mean nothing.

1. Per image (the first ``--images`` Kodak PNGs, each against its JPEG quality-50 reconstruction), median of
   ``--repeat`` runs, in process CPU time: the classical ``--metrics all`` set (PSNR, PSNR-Y, MS-SSIM, PSNR-HVS(-M): the baseline),
   LPIPS for one pair (both images through the trunk), LPIPS against a cached reference (what the job does
   for the 2nd..Nth setting of an image) and NIMA (one 224x224 forward).
2. ``nicbeam evaluate`` (CLI default runner, in-process, ``--torch_threads``) over the same images with
   ``jpeg:quality=30,50,75,90``: default metrics vs ``+ --metric lpips`` vs ``+ --metric lpips --metric nima``,
   alternating, best wall time and best process CPU time of ``--repeat`` (the in-process runner works in
   this process); ratios against the default run.

The script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KODAK = [ROOT.parent / "shared" / "data" / "kodak", ROOT / "samples" / "kodak"]


def kodak_files(count: int) -> list[Path]:
    for folder in KODAK:
        files = sorted(folder.glob("*.png"))
        if files:
            return files[:count]
    raise SystemExit("no Kodak PNGs found")


def median_ms(fn, repeat: int) -> float:
    """Median process CPU milliseconds of ``fn()`` (torch runs one thread here, so CPU time is the work done,
    and unlike wall time it hardly moves when other processes load the machine)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(1000.0 * (time.process_time() - start))
    return statistics.median(times)


def per_image(files: list[Path], weights: dict[str, Path], nets: list[str], repeat: int) -> None:
    import numpy as np
    from PIL import Image

    from nicbeam.metrics.perceptual import load_lpips, load_nima
    from nicbeam.transforms.evaluate import quality

    nima = load_nima([str(weights["nima"])])
    lpips = {net: load_lpips([str(weights[net])]) for net in nets}
    print("Per image, median process CPU ms:")
    print(f"{'image':<12} {'size':>9} {'classical':>10} " + " ".join(
        f"{'LPIPS-' + n + ' pair':>15} {'LPIPS-' + n + ' cached':>17}" for n in nets) + f" {'NIMA':>8}   (ms)")
    totals: dict[str, list[float]] = {}
    for path in files:
        original = np.asarray(Image.open(path).convert("RGB"))
        buffer = io.BytesIO()
        Image.fromarray(original).save(buffer, "JPEG", quality=50)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        row = {"classical": median_ms(lambda: quality(original, decoded, "all"), repeat)}
        for net, model in lpips.items():
            row[f"{net} pair"] = median_ms(lambda: model.distance(original, decoded), repeat)
            ref = model.feature_taps([original])
            row[f"{net} cached"] = median_ms(
                lambda: model.distance_from_features(ref, model.feature_taps([decoded])), repeat)
        row["nima"] = median_ms(lambda: nima.scores([decoded]), repeat)
        for key, value in row.items():
            totals.setdefault(key, []).append(value)
        h, w = original.shape[:2]
        print(f"{path.name:<12} {f'{w}x{h}':>9} {row['classical']:>10.0f} " + " ".join(
            f"{row[n + ' pair']:>15.0f} {row[n + ' cached']:>17.0f}" for n in nets) + f" {row['nima']:>8.0f}")
    mean = {k: statistics.mean(v) for k, v in totals.items()}
    print(f"{'mean':<12} {'':>9} {mean['classical']:>10.0f} " + " ".join(
        f"{mean[n + ' pair']:>15.0f} {mean[n + ' cached']:>17.0f}" for n in nets) + f" {mean['nima']:>8.0f}")
    for n in nets:
        print(f"LPIPS-{n} with a cached reference: {mean[n + ' cached'] / mean['classical']:.2f}x the classical "
              "metrics' time per (image, setting)")
    print(f"NIMA: {mean['nima'] / mean['classical']:.2f}x the classical metrics' time per (image, setting)")


def evaluate_runs(files: list[Path], weights: dict[str, Path], threads: int, repeat: int) -> None:
    from nicbeam.pipelines.cli import main

    work = Path(tempfile.mkdtemp(prefix="bench-perceptual-"))
    src = work / "in"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    variants = {
        "default (PSNR, MS-SSIM, PSNR-HVS)": [],
        "+ lpips": ["--metric", "lpips", "--lpips-weights", str(weights["alex"])],
        "+ lpips + nima": ["--metric", "lpips", "--lpips-weights", str(weights["alex"]),
                           "--metric", "nima", "--nima-weights", str(weights["nima"])],
    }
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    try:
        with redirect_stderr(io.StringIO()):  # warm-up, untimed: first-call imports and Beam start-up
            main(["evaluate", str(src), str(work / "warm-up"), "--codec", "jpeg:quality=50", "--no_report",
                  "--progress_interval", "0", *variants["+ lpips + nima"]])
        for round_ in range(repeat):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                out = work / f"out-{round_}-{len(best)}-{abs(hash(name))}"
                argv = ["evaluate", str(src), str(out), "--codec", "jpeg:quality=30,50,75,90", "--no_report",
                        "--progress_interval", "0", "--torch_threads", str(threads), *variants[name]]
                start, cpu = time.perf_counter(), time.process_time()
                with redirect_stderr(io.StringIO()):
                    code = main(argv)
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                if code != 0:
                    raise SystemExit(f"evaluate {name} failed with status {code}")
                best[name] = min(best.get(name, float("inf")), elapsed)
                best_cpu[name] = min(best_cpu.get(name, float("inf")), cpu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base, base_cpu = best["default (PSNR, MS-SSIM, PSNR-HVS)"], best_cpu["default (PSNR, MS-SSIM, PSNR-HVS)"]
    outcomes = len(files) * 4
    print(f"\nnicbeam evaluate, {len(files)} images x 4 jpeg settings = {outcomes} outcomes, "
          f"best of {repeat}, --torch_threads {threads}:")
    for name in best:
        seconds, cpu = best[name], best_cpu[name]
        print(f"  {name:<36} wall {seconds:7.2f} s ({seconds / base:5.2f}x)   CPU {cpu:7.2f} s "
              f"({cpu / base_cpu:5.2f}x, {1000 * cpu / outcomes:5.0f} ms/outcome)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--nets", default="alex", help="LPIPS trunks to time per image: alex, vgg or alex,vgg")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-job", action="store_true", help="only the per-image timings")
    args = parser.parse_args()

    import torch
    from safetensors.torch import save_file

    from nicbeam.metrics.perceptual import random_lpips_state, random_nima_state

    torch.set_num_threads(args.threads)
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    folder = Path(tempfile.mkdtemp(prefix="bench-perceptual-weights-"))
    weights = {"nima": folder / "nima.safetensors"}
    save_file(random_nima_state("mobilenet_v2", seed=0), str(weights["nima"]))
    for net in {*nets, "alex"}:
        weights[net] = folder / f"lpips_{net}.safetensors"
        save_file(random_lpips_state(net, seed=0), str(weights[net]))
    files = kodak_files(args.images)
    print(f"SEEDED RANDOM weights (timing only; values meaningless). torch {torch.__version__}, "
          f"{args.threads} thread(s), {len(files)} images from {files[0].parent}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    try:
        per_image(files, weights, nets, args.repeat)
        if not args.skip_job:
            evaluate_runs(files, weights, args.threads, args.repeat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nreproduce: PYTHONPATH=. python benchmarks/bench_perceptual.py --images {args.images} "
          f"--threads {args.threads} --nets {args.nets} --repeat {args.repeat}")


if __name__ == "__main__":
    main()
