"""BD-rate against JPEG 4:2:0 as a function of training steps: what more (CPU) training buys.

    PYTHONPATH=. python benchmarks/bench_training_curve.py --run-dir /work/train-runs/mbt-n64m128 \\
        [--images 8] [--qualities 1-8] [--out curve.json]

Every ``snapshot-step*.pt`` of a training run (kept by ``nicbeam train --snapshot-every N``) is exported to a
temporary weights file exactly as ``nicbeam train --export-only`` would, the codec codes the first
``--images`` Kodak images at every quality, and the BD-rate (PSNR, RGB) against ``jpeg`` 4:2:0 coded in the
same run is printed per snapshot. JPEG sweeps a wide quality range (5..95) so that the curves overlap even
for undertrained models. Kodak is only evaluated here, never trained on.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 75, 90, 95)


def rd_point(codec, images: list[np.ndarray]) -> tuple[float, float]:
    """Mean bpp (whole nicbeam stream) and mean per-image RGB PSNR of ``codec`` over ``images``."""
    bpp, psnr = [], []
    for im in images:
        stream = codec.encode(im)
        out = codec.decode(stream)
        mse = float(((out.astype(np.float64) - im) ** 2).mean())
        bpp.append(len(stream) * 8 / (im.shape[0] * im.shape[1]))
        psnr.append(10 * np.log10(255.0**2 / max(mse, 1e-10)))
    return float(np.mean(bpp)), float(np.mean(psnr))


def export_snapshot(run_dir: Path, snapshot: Path, out_dir: Path, name: str) -> Path:
    """Export one snapshot with the CLI (the same code path as shipped weights) and return the weights path."""
    cmd = [sys.executable, "-m", "nicbeam.pipelines.cli", "train", "--run-dir", str(run_dir), "--export-only",
           "--checkpoint", str(snapshot), "--export", name, "--export-dir", str(out_dir)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out_dir / f"{name}.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--qualities", default="1-8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--out", type=Path, default=None, help="also write the curve as JSON")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from nicbeam.codecs.registry import get_codec
    from nicbeam.metrics import bd_rate

    torch.set_num_threads(args.threads)
    lo, _, hi = args.qualities.partition("-")
    qualities = list(range(int(lo), int(hi or lo) + 1))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(args.kodak.glob("kodim*.png"))[: args.images]]
    config = json.loads((args.run_dir / "config.json").read_text())
    family, warm = config["family"], config["data"].get("init_from")

    jpeg = [rd_point(get_codec("jpeg", quality=q, subsampling="420"), images) for q in JPEG_QUALITIES]
    print(f"# {family} run {args.run_dir} (warm start: {warm or 'none'}); {len(images)} Kodak images, "
          f"qualities {qualities}, {args.threads} thread(s)")
    print(f"# jpeg 4:2:0 q{JPEG_QUALITIES[0]}..q{JPEG_QUALITIES[-1]}: {jpeg[0][0]:.3f}..{jpeg[-1][0]:.3f} bpp, "
          f"{jpeg[0][1]:.2f}..{jpeg[-1][1]:.2f} dB")
    print(f"{'step':>6} {'bpp range':>15} {'PSNR range':>15} {'BD-rate vs jpeg':>16}")
    snapshots = sorted(args.run_dir.glob("snapshot-step*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    # with --out, snapshots measured by an earlier run (same images and qualities) are reused, not re-coded
    done = {}
    if args.out and args.out.exists():
        old = json.loads(args.out.read_text())
        if old.get("images") == len(images) and old.get("qualities") == qualities:
            done = {c["step"]: c for c in old["curve"]}
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        for snap in snapshots:
            step = int(re.findall(r"\d+", snap.stem)[-1])
            if step in done:
                c = done[step]
                curve.append(c)
                print(f"{step:>6} {min(c['bpp']):6.3f}..{max(c['bpp']):6.3f} {min(c['psnr']):6.2f}..{max(c['psnr']):6.2f} "
                      f"{c['bd_rate_vs_jpeg420']:+15.1f}%  (from {args.out.name})")
                continue
            weights = export_snapshot(args.run_dir, snap, Path(tmp), f"{family}-step{step}")
            points = [rd_point(get_codec(family, quality=q, weights=weights, device="cpu"), images) for q in qualities]
            rates, psnrs = [p[0] for p in points], [p[1] for p in points]
            try:
                bd = bd_rate([p[0] for p in jpeg], [p[1] for p in jpeg], rates, psnrs)
            except ValueError as exc:  # e.g. no PSNR overlap with the JPEG curve
                print(f"# step {step}: no BD-rate ({exc})")
                bd = float("nan")
            curve.append({"step": step, "bpp": rates, "psnr": psnrs, "bd_rate_vs_jpeg420": bd})
            if args.out:  # after every snapshot, so an interrupted run keeps what it measured
                args.out.write_text(json.dumps({"family": family, "run_dir": str(args.run_dir), "warm_start": warm,
                                                "images": len(images), "qualities": qualities, "jpeg": jpeg,
                                                "curve": curve}, indent=1) + "\n")
            print(f"{step:>6} {min(rates):6.3f}..{max(rates):6.3f} {min(psnrs):6.2f}..{max(psnrs):6.2f} "
                  f"{bd:+15.1f}%", flush=True)


if __name__ == "__main__":
    main()
